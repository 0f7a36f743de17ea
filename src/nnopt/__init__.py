"""nnopt: declarative, reproducible neural-network optimization studies.

The public API is re-exported here; submodules that need torch are imported lazily so that
`import nnopt` stays cheap for the workflow and the report.
"""

from nnopt.spec import RunSpec, SpecError, load_spec, parse_spec
from nnopt.studies import Config, Run, Study, expand, load_config, parse_config

__version__ = "0.1.0"

__all__ = [
    "RunSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "Config",
    "Run",
    "Study",
    "expand",
    "load_config",
    "parse_config",
    "__version__",
]
