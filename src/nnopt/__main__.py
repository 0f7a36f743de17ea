"""`python -m nnopt ...` is the `nnopt` command."""

import sys

from nnopt.cli import main

sys.exit(main())
