"""Plug-ins: import the user callables named in a spec, build them, check what they return.

See nnopt.config.plugins for the keys and how their source is found and hashed. Contracts:
    model.factory(input_shape: tuple[int, ...], n_classes: int, **model.kwargs) -> nn.Module
        whose forward maps a float32 batch (b, *input_shape) to logits (b, n_classes);
    data.loader(**data.kwargs) -> (x, y): x array-like (n, *sample_shape) of numbers, y (n,)
        integer class labels 0..K-1 (numpy arrays or torch tensors); nnopt subsamples
        (data.n_samples), splits (val/test fractions, split_seed) and standardizes;
    optimizer.factory(params: list[Parameter], lr: float, **optimizer.kwargs)
        -> torch.optim.Optimizer.
Every failure is a SpecError naming the key and the source path, never a traceback.
`check_plugins(spec)` runs all three on a dummy input (what `nnopt check` does).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from nnopt.config.plugins import file_sha256, locate_source, plugin_sections, split_target
from nnopt.config.spec import DataSpec, ModelSpec, OptimizerSpec, RunSpec, SpecError

__all__ = [
    "load_callable",
    "build_model_plugin",
    "load_data_plugin",
    "build_optimizer_plugin",
    "check_model_output",
    "plugin_provenance",
]


def _root(code_root: str | None) -> Path:
    return Path(code_root) if code_root else Path.cwd()


def _import(module: str, root: Path, source: Path) -> Any:
    """Import `module` with `root` first on sys.path. A cached module of another file (two
    study folders each with a models.py) or of an edited file is imported afresh."""
    digest = file_sha256(source)
    cached = sys.modules.get(module)
    if cached is not None:
        cached_file = Path(getattr(cached, "__file__", None) or "").resolve()
        if cached_file != source.resolve() or getattr(cached, "__nnopt_sha256__", None) != digest:
            del sys.modules[module]
    sys.path.insert(0, str(root))
    try:
        loaded = importlib.import_module(module)
    finally:
        sys.path.remove(str(root))
    loaded.__nnopt_sha256__ = digest
    return loaded


def load_callable(key: str, target: str, code_root: str | None) -> Callable:
    """The callable named by `target` ("module:name"); SpecError naming `key` and the path."""
    module, name = split_target(key, target)
    root = _root(code_root)
    source = locate_source(key, target, root)
    try:
        loaded = _import(module, root, source)
    except Exception as err:  # any error inside the user's module: one line, no traceback
        raise SpecError(f"{key}: importing {source} failed: {type(err).__name__}: {err}") from None
    if not hasattr(loaded, name):
        raise SpecError(f"{key}: {source} has no attribute {name!r}")
    obj = getattr(loaded, name)
    if not callable(obj):
        raise SpecError(f"{key}: {source}: {name!r} is a {type(obj).__name__}, not callable")
    return obj


def _call(key: str, target: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except SpecError:
        raise
    except (Exception, SystemExit) as err:  # the user's code failed (or called sys.exit)
        where = getattr(sys.modules.get(getattr(fn, "__module__", "")), "__file__", None)
        where = f" ({where})" if where else ""
        message = " ".join(str(err).split())
        raise SpecError(f"{key}: {target}{where} raised {type(err).__name__}: {message}") from None


def build_model_plugin(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    fn = load_callable("model.factory", spec.factory, spec.code_root)
    model = _call("model.factory", spec.factory, fn, tuple(input_shape), n_classes, **spec.kwargs)
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model.factory: {spec.factory} returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model


def check_model_output(model: nn.Module, factory: str, input_shape, n_classes: int) -> None:
    """Forward two zero samples in eval mode; the logits must be (2, n_classes)."""
    dummy = torch.zeros(2, *input_shape)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = _call("model.factory", factory, model, dummy)
    model.train(was_training)
    shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    if shape != (2, n_classes):
        raise SpecError(
            f"model.factory: {factory} maps a batch of shape {tuple(dummy.shape)} to {shape}; "
            f"expected logits of shape (2, {n_classes}) = (batch, n_classes)"
        )


def load_data_plugin(spec: DataSpec):
    """(x float32 (n, *shape), y int64 (n,), shape) from the user's loader, checked."""
    fn = load_callable("data.loader", spec.loader, spec.code_root)
    out = _call("data.loader", spec.loader, fn, **spec.kwargs)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise SpecError(
            f"data.loader: {spec.loader} returned {type(out).__name__}; expected a pair (x, y)"
        )
    x, y = (t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t) for t in out)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise SpecError(
            f"data.loader: {spec.loader} returned x of shape {x.shape} and y of shape {y.shape}; "
            "expected x (n, *sample_shape) and y (n,)"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise SpecError(f"data.loader: {spec.loader}: x must be finite numbers")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise SpecError(
            f"data.loader: {spec.loader}: y must be integer class labels 0..K-1, got {y.dtype}"
        )
    return x.astype(np.float32), y.astype(np.int64), tuple(int(s) for s in x.shape[1:])


def build_optimizer_plugin(params, spec: OptimizerSpec):
    fn = load_callable("optimizer.factory", spec.factory, spec.code_root)
    opt = _call("optimizer.factory", spec.factory, fn, list(params), lr=spec.lr, **spec.kwargs)
    if not isinstance(opt, torch.optim.Optimizer):
        raise SpecError(
            f"optimizer.factory: {spec.factory} returned {type(opt).__name__}, "
            "expected a torch.optim.Optimizer"
        )
    return opt


def plugin_provenance(spec: RunSpec) -> dict[str, Any]:
    """{"plugins": {section: {target, path, sha256}}} for the run record, or {}."""
    used = plugin_sections(spec)
    if not used:
        return {}
    info = {}
    for section, part, target in used:
        path = locate_source(section, target, _root(part.code_root))
        info[section] = {"target": target, "path": str(path), "sha256": part.source_sha256}
    return {"plugins": info}
