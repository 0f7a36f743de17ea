"""Rules a study must meet beyond its fields: labels unique per value, a baseline that picks
one configuration, and a run count within the cap, known before any spec is built.

Used by `nnopt.config.studies.parse_config`; `format_value` is how configuration labels print
a factor value (`nnopt.config.studies.config_label`, and the analysis keys by those labels).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from nnopt.config.spec import SpecError, did_you_mean, short_repr

__all__ = [
    "format_value",
    "refuse_label_collision",
    "refuse_bad_baseline",
    "planned_runs",
    "refuse_too_many",
    "refuse_too_many_in_all",
]


def format_value(value: Any) -> str:
    """A factor value as configuration labels print it (6 significant digits for floats)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def refuse_label_collision(path: str, label: str, first: Mapping, factors: Mapping) -> None:
    """Tables, statistics and claims key configurations by label: two configurations that
    print alike (0.1 and 0.1000000001 at 6 digits) would be pooled as one with n doubled."""
    for key, value in factors.items():
        other = first.get(key)
        if format_value(other) == format_value(value) and (type(other), other) != (type(value), value):
            raise SpecError(
                f"{path}: factor {key} values {other!r} and {value!r} both print as "
                f"'{format_value(value)}' and would be pooled as one configuration; allowed: values "
                "that differ in their first 6 significant digits"
            )


def refuse_bad_baseline(study: Any, runs: Sequence[Any]) -> None:
    """The baseline must pick exactly one configuration (analysis compares against it)."""
    if not study.baseline:
        return
    path = f"studies.{study.name}.baseline"
    configs = {r.config: dict(r.factors) for r in runs}
    for key, value in study.baseline.items():
        values = list(dict.fromkeys(format_value(f[key]) for f in configs.values() if key in f))
        if format_value(value) not in values:
            raise SpecError(
                f"{path}.{key}: {value!r} is not one of the study's values; allowed: "
                + ", ".join(values) + did_you_mean(format_value(value), values)
            )
    matches = [
        label for label, f in configs.items()
        if all(format_value(f.get(k)) == format_value(v) for k, v in study.baseline.items())
    ]  # fmt: skip
    if not matches:
        raise SpecError(
            f"{path}: {short_repr(dict(study.baseline))} matches no configuration; "
            f"configurations: {short_repr(list(configs))}"
        )
    if len(matches) > 1:
        free = [k for k in study.factor_keys if k not in study.baseline]
        raise SpecError(
            f"{path}: {short_repr(dict(study.baseline))} matches {len(matches)} configurations "
            f"({short_repr(matches)}); allowed: a value for each of {', '.join(free)} too"
        )


def planned_runs(study: Any) -> int:
    """Configurations × seeds from the factor lengths alone, before any spec is built."""
    n_random = 1
    if isinstance(study.random, Mapping):
        n = study.random.get("n")
        n_random = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1
    n_zip = min((len(v) for v in study.zip.values()), default=1)
    return math.prod(len(v) for v in study.grid.values()) * n_zip * n_random * len(study.seeds)


def refuse_too_many(study: Any, cap: int) -> None:
    planned = planned_runs(study)
    if planned > cap:
        raise SpecError(
            f"studies.{study.name}: expands to {planned} runs, more than max_runs_per_study "
            f"({cap}); raise the cap or shrink the factors"
        )


def refuse_too_many_in_all(studies: Sequence[Any]) -> None:
    """The whole config's run count (studies × problems × configurations × seeds) within the
    `config.runs` limit, from the factor lengths alone: 300 problems of 2000 runs each would
    otherwise be expanded (minutes) before anything says no."""
    from nnopt.config.limits import check_size

    total = sum(planned_runs(s) for s in studies)
    try:
        check_size("config", total, key="config.runs")
    except SpecError as err:
        raise SpecError(f"studies: {len(studies)} studies expand to {total} runs in all; "
                        f"{str(err).split(': ', 1)[1]}") from None  # fmt: skip
