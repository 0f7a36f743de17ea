"""The typed run spec: what one training run is, parsed and validated at the edge.

A `RunSpec` is a frozen tree of small dataclasses, one per concern (data, model, init,
optimizer, schedule, regularization, budget, evaluation, device, checkpoint) plus the seed.
`parse_spec` turns a plain mapping (YAML/JSON) into one, or raises `SpecError` naming the
dotted key path and what is allowed. The canonical dict hashes to a stable `run_id`.
See docs/contract.md §1 for the table of every field.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from nnopt.config.errors import SpecError, did_you_mean, short_repr
from nnopt.config.limits import MAX_SEED, MAX_SPLIT_SEED, check_size

__all__ = [
    "SpecError",
    "DataSpec",
    "ModelSpec",
    "InitSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "RegularizationSpec",
    "BudgetSpec",
    "EvaluationSpec",
    "DeviceSpec",
    "CheckpointSpec",
    "Kwargs",
    "RunSpec",
    "parse_spec",
    "load_spec",
    "merge",
    "did_you_mean",
    "short_repr",
    "DATASETS",
    "MODEL_KINDS",
    "ACTIVATIONS",
    "INITS",
    "OPTIMIZERS",
    "SCHEDULES",
    "DEVICES",
    "PRECISIONS",
    "PARTITIONS",
    "HEADS",
]

# Registry names live here (not in the torch-side registries) so that validation needs no
# torch import; tests check that each torch-side registry has exactly these keys.
DATASETS = ("mnist1d", "digits", "spirals", "blobs", "table", "torchvision", "python")
MODEL_KINDS = ("mlp", "cnn1d", "cnn2d", "python")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "elu")
INITS = (
    "default",
    "zero",
    "constant",
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
)
OPTIMIZERS = (
    "sgd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "adagrad",
    "rmsprop",
    "adadelta",
    "nadam",
    "radam",
    "adamax",
    "asgd",
    "adafactor",
    "muon",
    "lion",
    "schedule_free_adamw",
    "python",
)
SCHEDULES = (
    "constant", "step", "multistep", "exponential", "cosine", "plateau",
    "wsd", "linear", "one_cycle", "cosine_restarts", "polynomial",
)  # fmt: skip
DEVICES = ("cpu", "cuda", "auto")
PARTITIONS = ("standard", "pooled")
HEADS = ("pool", "flatten")
PRECISIONS = ("fp32", "bf16", "fp16")


# --- field checks: each returns the parsed value or raises SpecError(path: ...) ----------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _one_of(*allowed: str) -> Callable[[str, Any], str]:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise SpecError(
                f"{path}: unknown value {short_repr(value)}; allowed: {', '.join(allowed)}"
                + did_you_mean(value, allowed)
            )
        return value

    return check


def _number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Callable[[str, Any], Any]:
    def describe() -> str:
        kind = "an integer" if integer else "a number"
        parts = []
        shown = (lambda v: str(v)) if integer else (lambda v: f"{v:g}")  # 2**63-1 exactly
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {shown(lo)}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {shown(hi)}")
        text = kind + (" " + " and ".join(parts) if parts else "")
        return text + (" or null" if optional else "")

    def check(path: str, value: Any) -> Any:
        if value is None and optional:
            return None
        # bool is an int subclass in Python; `epochs: true` must still be an error.
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            raise SpecError(
                f"{path}: expected {describe()}, got {short_repr(value)} ({_type_name(value)})"
                + _yaml_number_hint(value)
            )
        if not math.isfinite(value):
            raise SpecError(f"{path}: expected {describe()}, got {short_repr(value)}")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise SpecError(f"{path}: {short_repr(value)} is out of range; expected {describe()}")
        if integer:
            check_size(path, value)
        return value if integer else float(value)

    return check


def _yaml_number_hint(value: Any) -> str:
    """YAML 1.1 (PyYAML) reads `1e-3` as text; say so when a string looks like a number."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return "; YAML reads this as text: write a number such as 1.0e-3 (with a dot) or 0.001"


def _boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected true or false, got {short_repr(value)} ({_type_name(value)})")
    return value


def _text(optional: bool = True) -> Callable[[str, Any], Any]:
    def check(path: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise SpecError(f"{path}: expected a non-empty string, got {short_repr(value)}")
        return value

    return check


def _int_list(path: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value
    ):
        raise SpecError(f"{path}: expected a list of positive integers, got {short_repr(value)}")
    if list(value) != sorted(set(value)):
        raise SpecError(f"{path}: expected strictly increasing epochs, got {short_repr(list(value))}")
    return tuple(value)


def _int_tuple(lo: int) -> Callable[[str, Any], tuple[int, ...]]:
    """A list of integers >= lo, in any order (per-layer settings)."""

    def check(path: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < lo for v in value
        ):
            raise SpecError(
                f"{path}: expected a list of integers >= {lo} (one per layer), "
                f"got {short_repr(value)}"
            )
        return tuple(value)

    return check

class Kwargs(dict):
    """A plug-in's keyword arguments: a read-only, hashable dict (specs are frozen keys)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True, default=str))

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("spec kwargs are read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only


def _kwargs(path: str, value: Any) -> Kwargs:
    if value is None:
        return Kwargs()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"{path}: expected a mapping of keyword arguments, got {short_repr(value)}")
    try:  # plain YAML data only: the values must survive the canonical JSON of run_id
        return Kwargs(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError):
        raise SpecError(
            f"{path}: values must be plain numbers, strings, lists or mappings"
        ) from None


def _target(path: str, value: Any) -> str | None:
    if value is None:
        return None
    from nnopt.config.plugins import split_target

    split_target(path, value)
    return value


def _checked(check: Callable[[str, Any], Any], default: Any, *, hashed: bool = True) -> Any:
    """A dataclass field whose parse-time check lives in its metadata; `hashed=False` keeps
    it out of run_id (where a run executes, not what it computes)."""
    return field(default=default, metadata={"check": check, "hashed": hashed})


def _hashed_dict(section: Any) -> dict[str, Any]:
    return {
        f.name: getattr(section, f.name) for f in fields(section) if f.metadata.get("hashed", True)
    }


# --- the sections -----------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    name: str = _checked(_one_of(*DATASETS), "mnist1d")
    path: str | None = _checked(_text(), None)
    label_column: str = _checked(_text(optional=False), "label")
    torchvision_name: str | None = _checked(_text(), None)
    n_samples: int | None = _checked(_number(30, integer=True, optional=True), None)
    noise: float = _checked(_number(0), 0.1)
    n_classes: int = _checked(_number(2, integer=True), 3)
    n_features: int = _checked(_number(2, integer=True), 2)
    val_fraction: float = _checked(_number(0, 1, hi_open=True), 0.15)
    test_fraction: float = _checked(_number(0, 1, lo_open=True, hi_open=True), 0.15)
    split_seed: int = _checked(_number(0, MAX_SPLIT_SEED, integer=True), 0)
    standardize: bool = _checked(_boolean, True)
    # standard: the dataset's published train/test partition where it has one (mnist1d's
    # 4000/1000, torchvision's train/test files), validation carved from train by
    # val_fraction (test_fraction unused); pooled: pool everything and re-split by fractions.
    partition: str = _checked(_one_of(*PARTITIONS), "standard")
    # name: python (nnopt.config.plugins): "module:callable" returning (x, y), kwargs, hash.
    loader: str | None = _checked(_target, None)
    kwargs: Kwargs = _checked(_kwargs, Kwargs())
    source_sha256: str | None = _checked(_text(), None)
    code_root: str | None = _checked(_text(), None, hashed=False)  # absolute; parse fills it
    # Filled by parse_spec (nnopt.config.fingerprint): the file's content hash or the
    # generator's version, so run_id changes with the data. Left unset in a config.
    fingerprint: str | None = _checked(_text(), None)


@dataclass(frozen=True)
class ModelSpec:
    kind: str = _checked(_one_of(*MODEL_KINDS), "mlp")
    depth: int = _checked(_number(0, integer=True), 2)
    width: int = _checked(_number(1, integer=True), 128)
    activation: str = _checked(_one_of(*ACTIVATIONS), "relu")
    dropout: float = _checked(_number(0, 1, hi_open=True), 0.0)
    batch_norm: bool = _checked(_boolean, False)
    kernel_size: int = _checked(_number(1, integer=True), 5)
    # cnn, per conv layer (empty: `depth` layers of `width` channels, `kernel_size`, stride 1,
    # 'same' padding); the lists that are given must have one entry per layer.
    channels: tuple[int, ...] = _checked(_int_tuple(1), ())
    kernel_sizes: tuple[int, ...] = _checked(_int_tuple(1), ())
    strides: tuple[int, ...] = _checked(_int_tuple(1), ())
    paddings: tuple[int, ...] = _checked(_int_tuple(0), ())
    head: str = _checked(_one_of(*HEADS), "pool")  # cnn: adaptive average pool or flatten
    residual: bool = _checked(_boolean, False)  # mlp: x + block(x) for hidden blocks after the first
    # kind: python (nnopt.config.plugins): "module:callable" building an nn.Module.
    factory: str | None = _checked(_target, None)
    kwargs: Kwargs = _checked(_kwargs, Kwargs())
    source_sha256: str | None = _checked(_text(), None)
    code_root: str | None = _checked(_text(), None, hashed=False)  # absolute; parse fills it


@dataclass(frozen=True)
class InitSpec:
    name: str = _checked(_one_of(*INITS), "default")
    std: float = _checked(_number(0, lo_open=True), 0.01)
    bound: float = _checked(_number(0, lo_open=True), 0.05)
    value: float = _checked(_number(), 0.0)
    gain: float | None = _checked(_number(0, lo_open=True, optional=True), None)


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = _checked(_one_of(*OPTIMIZERS), "adam")
    lr: float = _checked(_number(0, lo_open=True), 0.001)
    momentum: float = _checked(_number(0, 1, hi_open=True), 0.9)
    beta1: float = _checked(_number(0, 1, hi_open=True), 0.9)
    beta2: float = _checked(_number(0, 1, hi_open=True), 0.999)
    eps: float = _checked(_number(0, lo_open=True), 1e-8)
    alpha: float = _checked(_number(0, 1, lo_open=True, hi_open=True), 0.99)
    rho: float = _checked(_number(0, 1, lo_open=True, hi_open=True), 0.9)
    # name: python (nnopt.config.plugins): "module:callable", its kwargs, the source hash.
    factory: str | None = _checked(_target, None)
    kwargs: Kwargs = _checked(_kwargs, Kwargs())
    source_sha256: str | None = _checked(_text(), None)
    code_root: str | None = _checked(_text(), None, hashed=False)  # absolute; parse fills it


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = _checked(_one_of(*SCHEDULES), "constant")
    warmup_epochs: float = _checked(_number(0), 0.0)
    step_size: int = _checked(_number(1, integer=True), 10)
    milestones: tuple[int, ...] = _checked(_int_list, ())
    gamma: float = _checked(_number(0, 1, lo_open=True), 0.1)
    min_lr: float = _checked(_number(0), 0.0)
    patience: int = _checked(_number(0, integer=True), 5)
    factor: float = _checked(_number(0, 1, lo_open=True, hi_open=True), 0.5)
    decay_fraction: float = _checked(_number(0, 1, lo_open=True), 0.2)  # wsd
    pct_start: float = _checked(_number(0, 1, lo_open=True, hi_open=True), 0.3)  # one_cycle
    restart_epochs: int = _checked(_number(1, integer=True), 10)  # cosine_restarts
    t_mult: int = _checked(_number(1, integer=True), 1)  # cosine_restarts
    power: float = _checked(_number(0, lo_open=True), 1.0)  # polynomial


@dataclass(frozen=True)
class RegularizationSpec:
    l1: float = _checked(_number(0), 0.0)
    l2: float = _checked(_number(0), 0.0)
    weight_decay: float = _checked(_number(0), 0.0)
    grad_clip: float | None = _checked(_number(0, lo_open=True, optional=True), None)
    early_stopping_patience: int | None = _checked(_number(1, integer=True, optional=True), None)


@dataclass(frozen=True)
class BudgetSpec:
    epochs: int | None = _checked(_number(1, integer=True, optional=True), 20)
    steps: int | None = _checked(_number(1, integer=True, optional=True), None)
    batch_size: int = _checked(_number(1, integer=True), 64)


@dataclass(frozen=True)
class EvaluationSpec:
    every_epochs: float | None = _checked(_number(0, lo_open=True, optional=True), 1.0)
    every_steps: int | None = _checked(_number(1, integer=True, optional=True), None)
    target_val_accuracy: float | None = _checked(
        _number(0, 1, lo_open=True, optional=True), None
    )
    target_train_loss: float | None = _checked(_number(0, lo_open=True, optional=True), None)
    max_train_eval_samples: int = _checked(_number(1, integer=True), 4096)


@dataclass(frozen=True)
class DeviceSpec:
    device: str = _checked(_one_of(*DEVICES), "cpu")
    precision: str = _checked(_one_of(*PRECISIONS), "fp32")
    tf32: bool = _checked(_boolean, False)
    threads: int = _checked(_number(1, integer=True), 1)
    world_size: int = _checked(_number(1, integer=True), 1)
    deterministic: bool = _checked(_boolean, True)


@dataclass(frozen=True)
class CheckpointSpec:
    every_epochs: int | None = _checked(_number(1, integer=True, optional=True), None)
    every_seconds: float | None = _checked(_number(0, lo_open=True, optional=True), None)
    # Flat weights at every evaluation into the run directory (snapshots.pt), for the
    # landscape job; set for the runs of `landscape: true` studies.
    snapshots: bool = _checked(_boolean, False)


_SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelSpec,
    "init": InitSpec,
    "optimizer": OptimizerSpec,
    "schedule": ScheduleSpec,
    "regularization": RegularizationSpec,
    "budget": BudgetSpec,
    "evaluation": EvaluationSpec,
    "device": DeviceSpec,
    "checkpoint": CheckpointSpec,
}
# Sections that describe how a run is executed, not what it computes: left out of run_id.
# (A plug-in's identity is its source hash, not the folder it was found in.)
_NOT_HASHED = ("checkpoint",)


@dataclass(frozen=True)
class RunSpec:
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    init: InitSpec = field(default_factory=InitSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    regularization: RegularizationSpec = field(default_factory=RegularizationSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    device: DeviceSpec = field(default_factory=DeviceSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: every field, defaults filled in, tuples as lists."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @functools.cached_property  # frozen, so computed once; a study expands thousands
    def run_id(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_HASHED}
        canonical = {k: _hashed_dict(v) if k in _SECTIONS else v for k, v in values.items()}
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)


# --- parsing ------------------------------------------------------------------------------


def _unknown_key(path: str, key: Any, allowed: list[str]) -> SpecError:
    where = f"{path}.{key}" if path else str(key)
    return SpecError(
        f"{where}: unknown key; allowed: {', '.join(allowed)}" + did_you_mean(key, allowed)
    )


# Pairs of which exactly one is set: giving the second alone switches the first off.
_EXCLUSIVE = {"budget": ("epochs", "steps"), "evaluation": ("every_epochs", "every_steps")}


def _parse_section(cls: type, path: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping of settings, got {short_repr(raw)}")
    first, second = _EXCLUSIVE.get(path, (None, None))
    if second in raw and raw[second] is not None and first not in raw:
        raw = {**raw, first: None}
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise _unknown_key(path, key, list(known))
        values[key] = known[key].metadata["check"](f"{path}.{key}", value)
    return cls(**values)


def _check_consistency(spec: RunSpec, file_root: Path | None) -> None:
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


def parse_spec(
    raw: Mapping[str, Any], *, file_root: Path | None = None, code_root: Path | None = None
) -> RunSpec:
    """Validate a plain mapping into a RunSpec; raise SpecError naming the key on error.

    `file_root` resolves relative data paths (defaults to the working directory). Plug-in
    modules are found in the section's `code_root`, else the `code_root` argument, else
    `file_root`, else the working directory; their source hashes are filled in
    (nnopt.config.plugins).
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"spec: expected a mapping of sections, got {short_repr(raw)}")
    allowed = [*_SECTIONS, "seed"]
    sections = {}
    for key, value in raw.items():
        if key == "seed":
            sections["seed"] = _number(0, MAX_SEED, integer=True)("seed", value)
        elif key in _SECTIONS:
            sections[key] = _parse_section(_SECTIONS[key], key, value)
        else:
            raise _unknown_key("", key, allowed)
    spec = RunSpec(**sections)
    _check_consistency(spec, file_root)
    if spec.data.fingerprint is None:  # a spec from a plan keeps the one it was planned with
        from nnopt.config.fingerprint import data_fingerprint

        found = data_fingerprint(spec.data.name, spec.data.path, file_root)
        spec = spec.replace(data=dataclasses.replace(spec.data, fingerprint=found))
    return _with_sources(spec, code_root or file_root)


def _check_plugin_keys(spec: RunSpec) -> None:
    """A plug-in key is required by its switch value and refused without it."""
    from nnopt.config.plugins import PLUGIN_KEYS

    for section, (switch, code_key) in PLUGIN_KEYS.items():
        part = getattr(spec, section)
        on = getattr(part, switch) == "python"
        if on and getattr(part, code_key) is None:
            raise SpecError(
                f"{section}.{code_key}: required for {section}.{switch} 'python' "
                "(e.g. 'models:my_net', a module beside the config)"
            )
        for key in (code_key, "kwargs", "source_sha256", "code_root"):
            if not on and getattr(part, key):
                raise SpecError(
                    f"{section}.{key}: only read when {section}.{switch} is 'python', "
                    f"not {getattr(part, switch)!r}"
                )


def _with_sources(spec: RunSpec, default_root: Path | None) -> RunSpec:
    """Fill each plug-in section's code_root and source_sha256 (its module found there)."""
    from nnopt.config.plugins import file_sha256, locate_source, plugin_sections

    _check_plugin_keys(spec)
    used = plugin_sections(spec)
    if not used:
        return spec
    changes: dict[str, Any] = {}
    for section, part, target in used:
        root = Path(part.code_root or default_root or Path.cwd()).resolve()
        code_key = "loader" if section == "data" else "factory"
        source = locate_source(f"{section}.{code_key}", target, root)
        digest = file_sha256(source)
        if part.source_sha256 is not None and part.source_sha256 != digest:
            raise SpecError(
                f"{section}.source_sha256: {source} changed since this spec was written "
                f"(sha256 {part.source_sha256[:12]}..., now {digest[:12]}...); plan the runs again"
            )
        changes[section] = dataclasses.replace(part, source_sha256=digest, code_root=str(root))
    return spec.replace(**changes)


def load_spec(path: str | Path) -> RunSpec:
    """Read a YAML or JSON spec file (safe loader) and parse it."""
    import yaml  # lazy: keeps `import nnopt.config.spec` cheap

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read spec file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid YAML: nested too deeply") from None
    return parse_spec(raw or {})


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two nested mappings; values in `override` win, nested dicts merge."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
