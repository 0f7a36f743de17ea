"""A study's `tune:` block: what to tune, how to search, how to select and confirm (no torch).

Every compared configuration of the study (its grid/zip configurations) gets its own search
over the same hyperparameter ranges with the same trial budget k (unless `trials_by_config`
says otherwise). Trials run on the tuning seeds and are ranked by a *validation* metric; the
best trial's values are then rerun on fresh confirmation seeds, disjoint from the tuning
seeds, and only those confirmation runs feed comparisons and claims. See docs/search.md.

    tune:
      params:
        optimizer.lr: {log_uniform: [1.0e-4, 1.0]}
        regularization.weight_decay: {log_uniform: [1.0e-6, 1.0e-2]}
      trials: 16
      sampler: sobol          # grid | random | sobol | halton | lhs | tpe
      seed: 0                 # sampler seed
      select: best_val_accuracy
      seeds: [0]              # tuning seeds
      confirm_seeds: 3        # a count (first free seeds) or a list, disjoint from `seeds`
      asha: {eta: 3, min_epochs: 2, max_epochs: 18}   # optional successive halving
      params_by_config:       # optional: ranges of named configurations (override or add)
        optimizer.name=sgd: {optimizer.lr: {log_uniform: [0.1, 10.0]}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from nnopt.config.metrics import METRIC_NAMES, metric_info
from nnopt.config.spec import SpecError, did_you_mean, short_repr

__all__ = ["Distribution", "AshaSpec", "TuneSpec", "parse_tune", "tune_from_record", "check_tuned_keys", "SAMPLERS", "KINDS", "VAL_METRICS"]

SAMPLERS = ("grid", "random", "sobol", "halton", "lhs", "tpe")
KINDS = ("log_uniform", "uniform", "int_uniform", "choice")
# Selection must never look at the test split: only metrics measured on validation.
VAL_METRICS = tuple(m for m in METRIC_NAMES if "val" in m and "test" not in m)
_KEYS = ("params", "params_by_config", "trials", "trials_by_config", "sampler", "seed",
         "select", "seeds", "confirm_seeds", "asha", "batch", "shards")  # fmt: skip
_ASHA_KEYS = ("eta", "min_epochs", "max_epochs")


@dataclass(frozen=True)
class Distribution:
    """One tuned hyperparameter's range; `from_unit` maps u in [0, 1) onto it."""

    kind: str  # one of KINDS
    args: tuple[Any, ...]  # (lo, hi) or the choice values

    @property
    def log(self) -> bool:
        return self.kind == "log_uniform"

    def from_unit(self, u: float) -> Any:
        import math

        if self.kind == "choice":
            return self.args[min(int(u * len(self.args)), len(self.args) - 1)]
        lo, hi = self.args
        if self.kind == "int_uniform":
            return int(min(lo + int(u * (hi - lo + 1)), hi))
        if self.kind == "uniform":
            return float(lo + (hi - lo) * u)
        return float(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u))

    def levels(self, n: int) -> list[Any]:
        """n grid levels: every choice / integer, else cell midpoints (never the range edges)."""
        if self.kind == "choice":
            return list(self.args)
        if self.kind == "int_uniform" and n >= self.args[1] - self.args[0] + 1:
            return list(range(self.args[0], self.args[1] + 1))
        return list(dict.fromkeys(self.from_unit((i + 0.5) / n) for i in range(n)))


@dataclass(frozen=True)
class AshaSpec:
    """Successive halving over epochs: rung i trains survivors for min_epochs * eta**i."""

    eta: int
    min_epochs: int
    max_epochs: int

    @property
    def budgets(self) -> tuple[int, ...]:
        out, b = [], self.min_epochs
        while b < self.max_epochs:
            out.append(b)
            b *= self.eta
        return tuple(out) + (self.max_epochs,)


@dataclass(frozen=True)
class TuneSpec:
    params: Mapping[str, Distribution]
    trials: int
    sampler: str
    seed: int
    select: str
    seeds: tuple[int, ...]
    confirm_seeds: tuple[int, ...]
    asha: AshaSpec | None = None
    batch: int = 4  # tpe: trials asked per round (the parallelism of a round)
    shards: int = 1  # training jobs per round
    trials_by_config: Mapping[str, int] = field(default_factory=dict)
    # configuration label -> its own ranges: they replace the shared range of the same key
    # or add a key only that configuration has (AdamW's weight decay beside SGD's lr)
    params_by_config: Mapping[str, Mapping[str, Distribution]] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return metric_info(self.select).higher_is_better

    def trials_for(self, label: str) -> int:
        return self.trials_by_config.get(label, self.trials)

    def params_for(self, label: str) -> dict[str, Distribution]:
        """The ranges configuration `label` searches: the shared ones, then its own."""
        return {**self.params, **self.params_by_config.get(label, {})}

    @property
    def all_params(self) -> dict[str, Distribution]:
        """Every tuned key of any configuration (the first range given for it)."""
        out = dict(self.params)
        for own in self.params_by_config.values():
            out.update({k: d for k, d in own.items() if k not in out})
        return out


def _positive_int(path: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise SpecError(f"{path}: expected an integer >= {lo}, got {short_repr(value)}")
    return value


def _bounded_int(path: str, value: Any, key: str, lo: int = 1) -> int:
    """An integer >= lo within the size limit `key` (nnopt.config.limits: named, overridable)."""
    from nnopt.config.limits import check_size

    value = _positive_int(path, value, lo)
    check_size(path, value, key)
    return value


def _distribution(path: str, raw: Any) -> Distribution:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        got = next(iter(raw)) if isinstance(raw, Mapping) and len(raw) == 1 else raw
        raise SpecError(
            f"{path}: expected one of {{log_uniform: [lo, hi]}}, {{uniform: [lo, hi]}}, "
            f"{{int_uniform: [lo, hi]}}, {{choice: [values]}}; got {short_repr(raw)}"
            + did_you_mean(got, KINDS)
        )
    kind, arg = next(iter(raw.items()))
    where = f"{path}.{kind}"
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SpecError(f"{where}: empty range; expected a non-empty list of values")
        if len({repr(v) for v in arg}) != len(arg):
            raise SpecError(f"{where}: a value repeats in {short_repr(arg)}")
        return Distribution(kind, tuple(arg))
    integer = kind == "int_uniform"
    number = int if integer else (int, float)
    if not isinstance(arg, list) or len(arg) != 2 or not all(
        isinstance(v, number) and not isinstance(v, bool) for v in arg
    ):
        what = "integers" if integer else "numbers"
        raise SpecError(f"{where}: expected [lo, hi] ({what}), got {short_repr(arg)}")
    lo, hi = arg
    if not lo < hi:
        raise SpecError(f"{where}: empty range {short_repr(arg)}; expected lo < hi")
    if kind == "log_uniform" and lo <= 0:
        raise SpecError(f"{where}: a log range needs 0 < lo < hi, got {short_repr(arg)}")
    return Distribution(kind, (lo, hi) if integer else (float(lo), float(hi)))


def _params(path: str, raw: Any, varied: tuple[str, ...]) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError(f"{path}: expected a non-empty mapping of spec keys to ranges")
    out = {}
    for key, dist in raw.items():
        if key in varied:
            raise SpecError(
                f"{path}.{key}: the study also varies this key (grid/zip/random); "
                "tune it or compare it, not both"
            )
        if key == "seed" or str(key).startswith("label."):
            raise SpecError(f"{path}.{key}: not a tunable hyperparameter")
        out[str(key)] = _distribution(f"{path}.{key}", dist)
    return out


def _seed_list(path: str, value: Any) -> tuple[int, ...]:
    from nnopt.config.limits import MAX_SEED

    if isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED for v in value
    ) and len(set(value)) == len(value):  # fmt: skip
        return tuple(value)
    raise SpecError(f"{path}: expected a non-empty list of distinct seeds from 0 to {MAX_SEED}, "
                    f"got {short_repr(value)}")  # fmt: skip


def _confirm_seeds(path: str, value: Any, tuning: tuple[int, ...]) -> tuple[int, ...]:
    """A count picks the first seeds not used for tuning; a list must not share any."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = _bounded_int(path, value, "tune.confirm_seeds")
        fresh = [s for s in range(count + len(tuning)) if s not in tuning]
        return tuple(fresh[:count])
    seeds = _seed_list(path, value)
    shared = sorted(set(seeds) & set(tuning))
    if shared:
        raise SpecError(
            f"{path}: seed {shared[0]} is also a tuning seed; confirmation seeds must be fresh "
            "(disjoint from tune.seeds)"
        )
    return seeds


def _asha(path: str, raw: Any, varied: tuple[str, ...], params: Mapping) -> AshaSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping with {', '.join(_ASHA_KEYS)}")
    for key in raw:
        if key not in _ASHA_KEYS:
            raise SpecError(f"{path}.{key}: unknown key; allowed: {', '.join(_ASHA_KEYS)}")
    eta = _positive_int(f"{path}.eta", raw.get("eta", 3), lo=2)
    lo = _positive_int(f"{path}.min_epochs", raw.get("min_epochs"))
    hi = _bounded_int(f"{path}.max_epochs", raw.get("max_epochs"), "budget.epochs")
    if lo >= hi:
        raise SpecError(f"{path}: min_epochs ({lo}) must be < max_epochs ({hi})")
    for key in ("budget.epochs", "budget.steps"):
        if key in varied or key in params:
            raise SpecError(f"{path}: the study varies or tunes {key}, which ASHA sets per rung")
    return AshaSpec(eta, lo, hi)


def parse_tune(
    path: str,
    raw: Any,
    *,
    varied: tuple[str, ...] = (),
    config_labels: tuple[str, ...] = (),
) -> TuneSpec:
    """Validate a `tune:` block; `varied` are the study's own factor keys."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping with params, trials, sampler, select, ...")
    for key in raw:
        if key not in _KEYS:
            raise SpecError(f"{path}.{key}: unknown key; allowed: {', '.join(_KEYS)}" + did_you_mean(key, _KEYS))
    by_params = _params_by_config(path, raw.get("params_by_config"), varied, config_labels)
    shared = raw.get("params")
    params = {} if shared is None and by_params else _params(f"{path}.params", shared, varied)
    _each_config_tunes(path, params, by_params, config_labels)
    trials = _bounded_int(f"{path}.trials", raw.get("trials"), "tune.trials")
    sampler = raw.get("sampler", "random")
    if sampler not in SAMPLERS:
        raise SpecError(
            f"{path}.sampler: unknown sampler {short_repr(sampler)}; allowed: {', '.join(SAMPLERS)}"
            + did_you_mean(sampler, SAMPLERS)
        )
    from nnopt.config.limits import MAX_SEED

    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"{path}.seed: expected an integer from 0 to {MAX_SEED}, got "
                        f"{short_repr(seed)}")  # fmt: skip
    select = raw.get("select", "best_val_accuracy")
    if select not in VAL_METRICS:
        why = " is a test metric: select on validation" if "test" in str(select) else " is not a validation metric"
        raise SpecError(f"{path}.select: {short_repr(select)}{why}; allowed: {', '.join(VAL_METRICS)}")
    seeds = _seed_list(f"{path}.seeds", raw.get("seeds", [0]))
    confirm = _confirm_seeds(f"{path}.confirm_seeds", raw.get("confirm_seeds", 3), seeds)
    every_key = {key for own in (params, *by_params.values()) for key in own}
    asha = _asha(f"{path}.asha", raw.get("asha"), varied, every_key)
    if asha is not None and sampler == "tpe":
        raise SpecError(f"{path}.asha: not combined with sampler tpe; use grid, random, sobol, halton or lhs")
    by_config = _by_config(f"{path}.trials_by_config", raw.get("trials_by_config"), config_labels)
    for label, k in by_config.items():
        _bounded_int(f"{path}.trials_by_config.{label}", k, "tune.trials")
    return TuneSpec(
        params=params, trials=trials, sampler=sampler, seed=seed, select=select, seeds=seeds,
        confirm_seeds=confirm, asha=asha,
        batch=_bounded_int(f"{path}.batch", raw.get("batch", 4), "tune.batch"),
        shards=_bounded_int(f"{path}.shards", raw.get("shards", 1), "tune.shards"),
        trials_by_config={str(k): v for k, v in by_config.items()}, params_by_config=by_params,
    )  # fmt: skip


def _by_config(path: str, raw: Any, config_labels: tuple[str, ...]) -> Mapping[str, Any]:
    """A mapping keyed by configuration labels of the study (checked when they are known)."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping of configuration label to a value")
    for label in raw:
        if config_labels and label not in config_labels:
            raise SpecError(
                f"{path}.{label}: not a configuration of this study; "
                f"configurations: {', '.join(config_labels)}" + did_you_mean(label, config_labels)
            )
    return raw


def _params_by_config(path: str, raw: Any, varied: tuple[str, ...],
                      config_labels: tuple[str, ...]) -> dict[str, dict[str, Distribution]]:  # fmt: skip
    where = f"{path}.params_by_config"
    return {str(label): _params(f"{where}.{label}", own, varied)
            for label, own in _by_config(where, raw, config_labels).items()}  # fmt: skip


def _each_config_tunes(path: str, params: Mapping, by_params: Mapping,
                       config_labels: tuple[str, ...]) -> None:  # fmt: skip
    for label in config_labels:
        if not params and label not in by_params:
            raise SpecError(
                f"{path}.params_by_config: configuration {label} tunes nothing; give it "
                "ranges here or shared ones under params"
            )


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def tune_from_record(record: Mapping[str, Any] | None) -> TuneSpec | None:
    """A TuneSpec from its plain-data form (dataclasses.asdict, as the plan file stores it):
    the block was validated when the plan was made, so nothing is checked again."""
    if record is None or isinstance(record, TuneSpec):
        return record
    params = _distributions(record["params"])
    asha = record.get("asha")
    return TuneSpec(
        params=params, trials=int(record["trials"]), sampler=record["sampler"],
        seed=int(record["seed"]), select=record["select"], seeds=tuple(record["seeds"]),
        confirm_seeds=tuple(record["confirm_seeds"]),
        asha=None if asha is None else AshaSpec(**asha), batch=int(record.get("batch", 4)),
        shards=int(record.get("shards", 1)),
        trials_by_config=dict(record.get("trials_by_config") or {}),
        params_by_config={label: _distributions(own) for label, own in
                          (record.get("params_by_config") or {}).items()},
    )  # fmt: skip


def _distributions(record: Mapping[str, Any]) -> dict[str, Distribution]:
    return {k: Distribution(d["kind"], _tuples(d["args"])) for k, d in record.items()}


def check_tuned_keys(path: str, tune: TuneSpec, spec: Mapping[str, Any]) -> None:
    """Each tuned key, set to a value of its range in `spec` (a run spec dict), must parse."""
    from nnopt.config.spec import parse_spec

    for key, dist in tune.all_params.items():
        tree: dict[str, Any] = dict(spec)
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[leaf] = dist.from_unit(0.5)
        try:
            parse_spec(tree)
        except SpecError as err:
            raise SpecError(f"{path}.params.{key}: {err}") from None
