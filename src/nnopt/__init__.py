"""nnopt: declarative, reproducible neural-network optimization studies.

The public API is re-exported here; submodules that need torch are imported lazily so that
`import nnopt` stays cheap for the workflow and the report.
"""

from nnopt.config.spec import RunSpec, SpecError, load_spec, parse_spec
from nnopt.config.studies import Config, Run, Study, expand, load_config, parse_config

__version__ = "0.1.0"

# Name -> submodule for lazy exports: the torch-side ones import torch only when first used.
# (`nnopt.train` is the training package; its entry point is `nnopt.train.engine.train`.)
_LAZY = {
    "Hooks": "nnopt.train.engine",
    "Dataset": "nnopt.train.data",
    "load_dataset": "nnopt.train.data",
    "prepare_dataset": "nnopt.train.data",
    "build_model": "nnopt.train.models",
    "RunResult": "nnopt.store.runs",
    "read_run": "nnopt.store.runs",
    "write_run": "nnopt.store.runs",
    "is_finished": "nnopt.store.runs",
    "run_one": "nnopt.train.runner",
    "run_batch": "nnopt.train.runner",
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
