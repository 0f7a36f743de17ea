"""nnopt: declarative, reproducible neural-network optimization studies.

The public API is re-exported here; submodules that need torch are imported lazily so that
`import nnopt` stays cheap for the workflow and the report.
"""

from nnopt.spec import RunSpec, SpecError, load_spec, parse_spec
from nnopt.studies import Config, Run, Study, expand, load_config, parse_config

__version__ = "0.1.0"

# Name -> submodule for lazy exports: `nnopt.train` imports torch only when first used.
_LAZY = {
    "train": "nnopt.engine",
    "Hooks": "nnopt.engine",
    "Dataset": "nnopt.data",
    "load_dataset": "nnopt.data",
    "prepare_dataset": "nnopt.data",
    "build_model": "nnopt.models",
    "RunResult": "nnopt.results",
    "read_run": "nnopt.results",
    "write_run": "nnopt.results",
    "is_finished": "nnopt.results",
    "run_one": "nnopt.runner",
    "run_batch": "nnopt.runner",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnopt' has no attribute {name!r}")


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
    *_LAZY,
]
