"""`python -m nnopt ...` is the `nnopt` command."""

import sys

from nnopt.cli.main import main

sys.exit(main())
