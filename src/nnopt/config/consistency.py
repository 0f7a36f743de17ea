"""Rules of a run spec that span fields, and the plug-in sources it names.

`check_consistency` refuses combinations that no single field check can see (fractions that
sum past 1, a cnn2d on flat data, fp16 on cpu); `with_sources` fills each plug-in section's
code_root and source hash. Both take a parsed `RunSpec` (nnopt.config.spec) and raise
SpecError naming the keys involved.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nnopt.config.errors import SpecError

# nnopt.config.spec imports this module, so the spec types are only named here (no cycle).
RunSpec = ModelSpec = Any

__all__ = ["check_consistency", "with_sources"]


def check_consistency(spec: RunSpec, file_root: Path | None) -> None:
    """Rules that span fields; each message names the keys involved."""
    d, b, e = spec.data, spec.budget, spec.evaluation
    if d.val_fraction + d.test_fraction >= 1:
        raise SpecError(
            "data.val_fraction + data.test_fraction: must be < 1 "
            f"(got {d.val_fraction} + {d.test_fraction})"
        )
    if (b.epochs is None) == (b.steps is None):
        raise SpecError("budget: set exactly one of budget.epochs and budget.steps")
    if (e.every_epochs is None) == (e.every_steps is None):
        raise SpecError(
            "evaluation: set exactly one of evaluation.every_epochs and evaluation.every_steps"
        )
    if d.name in ("table", "torchvision") and d.path is None:
        raise SpecError(f"data.path: required for data.name '{d.name}' (a file or folder)")
    if d.name == "torchvision" and d.torchvision_name is None:
        raise SpecError("data.torchvision_name: required for data.name 'torchvision' (e.g. MNIST)")
    if d.path is not None and "\0" in d.path:  # no file has such a name; keep it off the terminal
        raise SpecError(f"data.path: a path cannot hold a NUL byte, got {d.path!r}")
    if d.path is not None and d.name in ("table", "torchvision"):
        path = Path(d.path) if file_root is None else file_root / d.path
        if not path.exists():
            raise SpecError(f"data.path: file or folder not found: {path}")
        if d.name == "table" and path.suffix.lower() not in (".csv", ".parquet"):
            raise SpecError(f"data.path: {path} must end in .csv or .parquet")
    if spec.regularization.early_stopping_patience is not None and d.val_fraction == 0:
        raise SpecError(
            "regularization.early_stopping_patience: needs validation data "
            "(data.val_fraction > 0)"
        )
    if spec.schedule.name == "one_cycle" and spec.schedule.warmup_epochs > 0:
        raise SpecError(
            "schedule.warmup_epochs: 'one_cycle' has its own warm-up (schedule.pct_start); "
            "set warmup_epochs to 0"
        )
    if spec.schedule.name == "plateau" and d.val_fraction == 0:
        raise SpecError("schedule.name: 'plateau' needs validation data (data.val_fraction > 0)")
    dev = spec.device
    if dev.precision == "fp16" and dev.device == "cpu":
        raise SpecError("device.precision: 'fp16' needs device 'cuda' or 'auto'; use bf16 on cpu")
    _check_data_model(spec)
    if dev.world_size > 1 and b.batch_size % dev.world_size:
        raise SpecError(
            f"budget.batch_size: {b.batch_size} must be divisible by device.world_size "
            f"{dev.world_size} (the batch size is global)"
        )


def _check_data_model(spec: RunSpec) -> None:
    """Options that are silently ignored or fail only inside the job: refuse them here."""
    d, m = spec.data, spec.model
    # A path with a generated dataset would silently train on that dataset, not the file.
    if d.path is not None and d.name not in ("table", "torchvision"):
        raise SpecError(
            f"data.path: only read when data.name is table or torchvision, not {d.name!r}; "
            "set data.name: table for a .csv/.parquet file"
        )
    if d.torchvision_name is not None and d.name != "torchvision":
        raise SpecError(
            f"data.torchvision_name: only read when data.name is torchvision, not {d.name!r}"
        )
    # Only torchvision sets have (channels, height, width) samples; the others are flat.
    if m.kind == "cnn2d" and d.name not in ("torchvision", "python"):
        raise SpecError(
            f"model.kind: 'cnn2d' needs image data (data.name: torchvision), not {d.name!r}; "
            "allowed here: mlp, cnn1d"
        )
    if m.kind == "cnn1d" and d.name == "torchvision":
        raise SpecError("model.kind: 'cnn1d' needs 1-D samples; allowed for images: mlp, cnn2d")
    if m.kind != "mlp":
        _check_conv_layers(m)
    if m.residual and m.kind != "mlp":
        raise SpecError(f"model.residual: only for model.kind 'mlp', not {m.kind!r}")
    if m.residual and m.depth < 2:
        raise SpecError(
            f"model.residual: needs model.depth >= 2 (skips join hidden blocks after the "
            f"first), got depth {m.depth}"
        )


def _check_conv_layers(m: ModelSpec) -> None:
    """Per-layer conv lists: one entry per layer; 'same' padding needs odd kernels."""
    layers = len(m.channels) or m.depth
    for key in ("kernel_sizes", "strides", "paddings"):
        given = getattr(m, key)
        if given and len(given) != layers:
            raise SpecError(
                f"model.{key}: {len(given)} entries for {layers} conv layers "
                f"({'model.channels' if m.channels else 'model.depth'}); give one per layer"
            )
    if not m.paddings:  # 'same' padding
        for k in m.kernel_sizes or (m.kernel_size,):
            if k % 2 == 0:
                raise SpecError(
                    f"model.kernel_size: must be odd for 'same' padding, got {k}; "
                    "give model.paddings to use even kernels"
                )



def _check_plugin_keys(spec: RunSpec) -> None:
    """A plug-in key is required by its switch value and refused without it."""
    from nnopt.config.fields import plugin_field_names
    from nnopt.config.plugins import PLUGIN_KEYS

    for section, (switch, code_key) in PLUGIN_KEYS.items():
        part = getattr(spec, section)
        on = getattr(part, switch) == "python"
        if on and getattr(part, code_key) is None:
            raise SpecError(
                f"{section}.{code_key}: required for {section}.{switch} 'python' "
                "(e.g. 'models:my_net', a module beside the config)"
            )
        for key in plugin_field_names(code_key):
            if not on and getattr(part, key):
                raise SpecError(
                    f"{section}.{key}: only read when {section}.{switch} is 'python', "
                    f"not {getattr(part, switch)!r}"
                )


def with_sources(spec: RunSpec, default_root: Path | None) -> RunSpec:
    """Fill each plug-in section's code_root and source_sha256 (its module found there)."""
    from nnopt.config.plugins import PLUGIN_KEYS, file_sha256, locate_source, plugin_sections

    _check_plugin_keys(spec)
    used = plugin_sections(spec)
    if not used:
        return spec
    changes: dict[str, Any] = {}
    for section, part, target in used:
        root = Path(part.code_root or default_root or Path.cwd()).resolve()
        code_key = PLUGIN_KEYS[section][1]
        source = locate_source(f"{section}.{code_key}", target, root)
        digest = file_sha256(source)
        if part.source_sha256 is not None and part.source_sha256 != digest:
            raise SpecError(
                f"{section}.source_sha256: {source} changed since this spec was written "
                f"(sha256 {part.source_sha256[:12]}..., now {digest[:12]}...); plan the runs again"
            )
        changes[section] = dataclasses.replace(part, source_sha256=digest, code_root=str(root))
    return spec.replace(**changes)

