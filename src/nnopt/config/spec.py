"""The typed run spec: what one training run is, parsed and validated at the edge.

A `RunSpec` is a frozen tree of small dataclasses, one per concern (data, model, init,
optimizer, schedule, regularization, budget, evaluation, device, checkpoint) plus the seed.
`parse_spec` turns a plain mapping (YAML/JSON) into one, or raises `SpecError` naming the
dotted key path and what is allowed. The canonical dict hashes to a stable `run_id`.
See docs/contract.md §1 for the table of every field; the field checks live in
`nnopt.config.fields`, the rules spanning fields in `nnopt.config.consistency`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.consistency import check_consistency, with_sources
from nnopt.config.errors import SpecError, did_you_mean, short_repr
from nnopt.config.fields import (
    Kwargs,
    boolean,
    checked,
    epoch_list,
    hashed_dict,
    int_tuple,
    number,
    one_of,
    plugin_fields,
    text,
)
from nnopt.config.limits import MAX_SEED, MAX_SPLIT_SEED

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


# Plug-in fields (nnopt.config.fields.plugin_fields; nnopt.config.plugins): name: python
# reads `loader`, a "module:callable" returning (x, y), with its kwargs.
@dataclass(frozen=True)
@plugin_fields("loader", before="fingerprint")
class DataSpec:
    name: str = checked(one_of(*DATASETS), "mnist1d")
    path: str | None = checked(text(), None)
    label_column: str = checked(text(optional=False), "label")
    torchvision_name: str | None = checked(text(), None)
    n_samples: int | None = checked(number(30, integer=True, optional=True), None)
    noise: float = checked(number(0), 0.1)
    n_classes: int = checked(number(2, integer=True), 3)
    n_features: int = checked(number(2, integer=True), 2)
    val_fraction: float = checked(number(0, 1, hi_open=True), 0.15)
    test_fraction: float = checked(number(0, 1, lo_open=True, hi_open=True), 0.15)
    split_seed: int = checked(number(0, MAX_SPLIT_SEED, integer=True), 0)
    standardize: bool = checked(boolean, True)
    # standard: the dataset's published train/test partition where it has one (mnist1d's
    # 4000/1000, torchvision's train/test files), validation carved from train by
    # val_fraction (test_fraction unused); pooled: pool everything and re-split by fractions.
    partition: str = checked(one_of(*PARTITIONS), "standard")
    # Filled by parse_spec (nnopt.config.fingerprint): the file's content hash or the
    # generator's version, so run_id changes with the data. Left unset in a config.
    fingerprint: str | None = checked(text(), None)


# Plug-in fields: kind: python reads `factory`, a "module:callable" building an nn.Module.
@dataclass(frozen=True)
@plugin_fields("factory")
class ModelSpec:
    kind: str = checked(one_of(*MODEL_KINDS), "mlp")
    depth: int = checked(number(0, integer=True), 2)
    width: int = checked(number(1, integer=True), 128)
    activation: str = checked(one_of(*ACTIVATIONS), "relu")
    dropout: float = checked(number(0, 1, hi_open=True), 0.0)
    batch_norm: bool = checked(boolean, False)
    kernel_size: int = checked(number(1, integer=True), 5)
    # cnn, per conv layer (empty: `depth` layers of `width` channels, `kernel_size`, stride 1,
    # 'same' padding); the lists that are given must have one entry per layer.
    channels: tuple[int, ...] = checked(int_tuple(1), ())
    kernel_sizes: tuple[int, ...] = checked(int_tuple(1), ())
    strides: tuple[int, ...] = checked(int_tuple(1), ())
    paddings: tuple[int, ...] = checked(int_tuple(0), ())
    head: str = checked(one_of(*HEADS), "pool")  # cnn: adaptive average pool or flatten
    residual: bool = checked(boolean, False)  # mlp: x + block(x) for hidden blocks after the first


@dataclass(frozen=True)
class InitSpec:
    name: str = checked(one_of(*INITS), "default")
    std: float = checked(number(0, lo_open=True), 0.01)
    bound: float = checked(number(0, lo_open=True), 0.05)
    value: float = checked(number(), 0.0)
    gain: float | None = checked(number(0, lo_open=True, optional=True), None)


# Plug-in fields: name: python reads `factory`, a "module:callable" building an optimizer.
@dataclass(frozen=True)
@plugin_fields("factory")
class OptimizerSpec:
    name: str = checked(one_of(*OPTIMIZERS), "adam")
    lr: float = checked(number(0, lo_open=True), 0.001)
    momentum: float = checked(number(0, 1, hi_open=True), 0.9)
    beta1: float = checked(number(0, 1, hi_open=True), 0.9)
    beta2: float = checked(number(0, 1, hi_open=True), 0.999)
    eps: float = checked(number(0, lo_open=True), 1e-8)
    alpha: float = checked(number(0, 1, lo_open=True, hi_open=True), 0.99)
    rho: float = checked(number(0, 1, lo_open=True, hi_open=True), 0.9)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = checked(one_of(*SCHEDULES), "constant")
    warmup_epochs: float = checked(number(0), 0.0)
    step_size: int = checked(number(1, integer=True), 10)
    milestones: tuple[int, ...] = checked(epoch_list, ())
    gamma: float = checked(number(0, 1, lo_open=True), 0.1)
    min_lr: float = checked(number(0), 0.0)
    patience: int = checked(number(0, integer=True), 5)
    factor: float = checked(number(0, 1, lo_open=True, hi_open=True), 0.5)
    decay_fraction: float = checked(number(0, 1, lo_open=True), 0.2)  # wsd
    pct_start: float = checked(number(0, 1, lo_open=True, hi_open=True), 0.3)  # one_cycle
    restart_epochs: int = checked(number(1, integer=True), 10)  # cosine_restarts
    t_mult: int = checked(number(1, integer=True), 1)  # cosine_restarts
    power: float = checked(number(0, lo_open=True), 1.0)  # polynomial


@dataclass(frozen=True)
class RegularizationSpec:
    l1: float = checked(number(0), 0.0)
    l2: float = checked(number(0), 0.0)
    weight_decay: float = checked(number(0), 0.0)
    grad_clip: float | None = checked(number(0, lo_open=True, optional=True), None)
    early_stopping_patience: int | None = checked(number(1, integer=True, optional=True), None)


@dataclass(frozen=True)
class BudgetSpec:
    epochs: int | None = checked(number(1, integer=True, optional=True), 20)
    steps: int | None = checked(number(1, integer=True, optional=True), None)
    batch_size: int = checked(number(1, integer=True), 64)


@dataclass(frozen=True)
class EvaluationSpec:
    every_epochs: float | None = checked(number(0, lo_open=True, optional=True), 1.0)
    every_steps: int | None = checked(number(1, integer=True, optional=True), None)
    target_val_accuracy: float | None = checked(
        number(0, 1, lo_open=True, optional=True), None
    )
    target_train_loss: float | None = checked(number(0, lo_open=True, optional=True), None)
    max_train_eval_samples: int = checked(number(1, integer=True), 4096)


@dataclass(frozen=True)
class DeviceSpec:
    device: str = checked(one_of(*DEVICES), "cpu")
    precision: str = checked(one_of(*PRECISIONS), "fp32")
    tf32: bool = checked(boolean, False)
    threads: int = checked(number(1, integer=True), 1)
    world_size: int = checked(number(1, integer=True), 1)
    deterministic: bool = checked(boolean, True)


@dataclass(frozen=True)
class CheckpointSpec:
    every_epochs: int | None = checked(number(1, integer=True, optional=True), None)
    every_seconds: float | None = checked(number(0, lo_open=True, optional=True), None)
    # Flat weights at every evaluation into the run directory (snapshots.pt), for the
    # landscape job; set for the runs of `landscape: true` studies.
    snapshots: bool = checked(boolean, False)


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
        canonical = {k: hashed_dict(v) if k in _SECTIONS else v for k, v in values.items()}
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
            sections["seed"] = number(0, MAX_SEED, integer=True)("seed", value)
        elif key in _SECTIONS:
            sections[key] = _parse_section(_SECTIONS[key], key, value)
        else:
            raise _unknown_key("", key, allowed)
    spec = RunSpec(**sections)
    check_consistency(spec, file_root)
    if spec.data.fingerprint is None:  # a spec from a plan keeps the one it was planned with
        from nnopt.config.fingerprint import data_fingerprint

        found = data_fingerprint(spec.data.name, spec.data.path, file_root)
        spec = spec.replace(data=dataclasses.replace(spec.data, fingerprint=found))
    return with_sources(spec, code_root or file_root)





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
