"""The factors of a study: grid, zip and random lists, and the configurations they make.

`configurations` crosses a study's grid with its zipped lists and its random draws (one
sampler seeded once, so the same config gives the same samples); `set_path` writes one
dotted factor key into a partial spec; `config_label` names a configuration for tables.
"""

from __future__ import annotations

import itertools
import math
import random as _random
from typing import Any, Mapping

from nnopt.config.errors import SpecError, short_repr
from nnopt.config.limits import MAX_SEED
from nnopt.config.study_rules import format_value as _fmt

__all__ = [
    "config_label", "configurations", "factor_lists", "random_configs", "seed_list", "set_path",
]

_DISTRIBUTIONS = ("log_uniform", "uniform", "choice")


def config_label(factors: Mapping[str, Any]) -> str:
    """A stable, readable label of one configuration: 'a.b=1, c.d=relu'."""
    if not factors:
        return "base"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in factors.items())


def set_path(tree: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `tree` with `dotted` (e.g. 'optimizer.lr' or 'seed') set to `value`."""
    head, _, rest = dotted.partition(".")
    out = dict(tree)
    if not rest:
        out[head] = value
    else:
        child = out.get(head) or {}
        out[head] = set_path(child if isinstance(child, Mapping) else {}, rest, value)
    return out


def factor_lists(path: str, raw: Any) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping of spec keys to lists of values")
    out = {}
    for key, values in raw.items():
        if not isinstance(values, list):
            raise SpecError(f"{path}.{key}: expected a list of values, got {short_repr(values)}")
        if not values:
            raise SpecError(f"{path}.{key}: empty list; a factor needs at least one value")
        out[str(key)] = tuple(values)
    return out


def _sample(path: str, dist: Any, rng: _random.Random) -> Any:
    if not isinstance(dist, Mapping) or len(dist) != 1 or next(iter(dist)) not in _DISTRIBUTIONS:
        raise SpecError(
            f"{path}: expected one of {{log_uniform: [lo, hi]}}, {{uniform: [lo, hi]}}, "
            f"{{choice: [values]}}; got {short_repr(dist)}"
        )
    kind, arg = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SpecError(f"{path}.choice: expected a non-empty list, got {short_repr(arg)}")
        return rng.choice(arg)
    if (
        not isinstance(arg, list)
        or len(arg) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)
        or not arg[0] < arg[1]
        or (kind == "log_uniform" and arg[0] <= 0)
    ):
        allowed = "0 < lo < hi" if kind == "log_uniform" else "lo < hi"
        raise SpecError(f"{path}.{kind}: expected [lo, hi] with {allowed}, got {short_repr(arg)}")
    lo, hi = arg
    if kind == "uniform":
        draw = lo + (hi - lo) * rng.random()
    else:
        draw = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * rng.random())
    # Rounded to the 6 significant digits labels print (config_label): two draws that print
    # alike are then the same value (one configuration, its repeat dropped), never two
    # configurations pooled under one label.
    return float(_fmt(draw))


def random_configs(path: str, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return [{}]
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping with n, seed and params")
    unknown = set(raw) - {"n", "seed", "params"}
    if unknown:
        key = sorted(unknown)[0]
        raise SpecError(f"{path}.{key}: unknown key; allowed: n, seed, params")
    n, seed, params = raw.get("n"), raw.get("seed", 0), raw.get("params")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"{path}.n: expected an integer >= 1, got {short_repr(n)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        # Python's Random(-s) draws what Random(s) draws: a sign is no other sample.
        raise SpecError(f"{path}.seed: expected an integer from 0 to {MAX_SEED}, got "
                        f"{short_repr(seed)}")  # fmt: skip
    if not isinstance(params, Mapping) or not params:
        raise SpecError(f"{path}.params: expected a non-empty mapping of spec keys to distributions")
    # One sampler seeded once: the same config gives the same samples, so the DAG is stable.
    rng = _random.Random(seed)
    return [
        {key: _sample(f"{path}.params.{key}", dist, rng) for key, dist in params.items()}
        for _ in range(n)
    ]


def configurations(study_path: str, grid: Mapping, zipped: Mapping, rnd: Any) -> list[dict]:
    grid_part = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise SpecError(f"{study_path}.zip: lists must have equal lengths (got {sizes})")
    zip_part = [dict(zip(zipped, combo)) for combo in zip(*zipped.values())] or [{}]
    random_part = random_configs(f"{study_path}.random", rnd)
    return [{**g, **z, **r} for g in grid_part for z in zip_part for r in random_part]


def seed_list(path: str, value: Any, cap: int) -> tuple[int, ...]:
    """Seeds 0..n-1 for a count n, else the list; never more than `cap` (checked first)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if (is_int and value > cap) or (isinstance(value, list) and len(value) > cap):
        count = value if is_int else len(value)
        raise SpecError(
            f"{path}: {count} seeds is more than max_runs_per_study ({cap}); allowed: "
            f"at most {cap} seeds (raise max_runs_per_study if you truly mean it)"
        )
    if is_int and value >= 1:
        return tuple(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED for v in value)
        and len(set(value)) == len(value)
    ):
        return tuple(value)
    raise SpecError(
        f"{path}: expected a positive number of seeds or a list of distinct seeds from 0 to "
        f"{MAX_SEED}, got {short_repr(value)}"
    )
