"""Pre-flight of plug-ins: import and build each on its real data shape (for `nnopt check`).

Apart from nnopt.train.plugins because it needs the data and model builders, which in turn
call the plug-in loaders there.
"""

from __future__ import annotations

from nnopt.config.plugins import plugin_sections
from nnopt.config.spec import RunSpec
from nnopt.train.data import load_dataset
from nnopt.train.models import build_model
from nnopt.train.plugins import build_optimizer_plugin, check_model_output

__all__ = ["check_plugins"]


def check_plugins(spec: RunSpec) -> None:
    """Import and build every plug-in of `spec` on its real data shape; SpecError if any fails."""
    if not plugin_sections(spec):
        return
    ds = load_dataset(spec.data)
    model = build_model(spec.model, ds.input_shape, ds.n_classes)
    if spec.model.kind == "python":
        check_model_output(model, spec.model.factory, ds.input_shape, ds.n_classes)
    if spec.optimizer.name == "python":
        build_optimizer_plugin(model.parameters(), spec.optimizer)


