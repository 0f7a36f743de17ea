"""Trial samplers: grid, seeded random, quasi-random Sobol/Halton and a centred Latin
hypercube (scipy.stats.qmc), and TPE.

The first five are fixed by the tune block and the sampler seed: `fixed_trials(tune, k)`
returns the same k value sets every time. TPE (Optuna's ask-and-tell) depends on the results
of earlier trials; `tpe_ask` keeps its history in an Optuna JournalStorage file, and seeds
its sampler from (sampler seed, trial number) so a resumed search asks what an
uninterrupted one would have asked.
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nnopt.config.tune import Distribution, TuneSpec

__all__ = ["fixed_trials", "grid_trials", "unit_points", "tpe_ask"]


def unit_points(sampler: str, n: int, dims: int, seed: int) -> np.ndarray:
    """n points in [0, 1)^dims: i.i.d. uniform or a scrambled low-discrepancy sequence."""
    from scipy.stats import qmc

    if sampler == "random":
        return np.random.default_rng(seed).random((n, dims))
    if sampler == "lhs":  # cell centres: each 1-D projection is the n midpoints, evenly spaced
        optimization = "random-cd" if dims > 1 else None  # a seeded, space-filling pairing
        return qmc.LatinHypercube(dims, scramble=False, optimization=optimization, rng=seed).random(n)
    engine = qmc.Sobol(dims, scramble=True, seed=seed) if sampler == "sobol" else qmc.Halton(
        dims, scramble=True, seed=seed
    )
    with warnings.catch_warnings():  # Sobol's balance holds exactly at powers of 2 only
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(n)


def grid_trials(params: Mapping[str, Distribution], k: int) -> list[dict[str, Any]]:
    """The largest full grid with at most k points (choices keep all their values).

    Numeric ranges share the remaining budget evenly: m levels each, the largest m with
    prod(levels) <= k. Fewer than k trials may result; the report shows the real count.
    """
    fixed = {key: d.levels(0) for key, d in params.items() if d.kind == "choice"}
    numeric = [key for key in params if key not in fixed]
    base = math.prod(len(v) for v in fixed.values())
    m = 1
    while numeric and base * (m + 1) ** len(numeric) <= k:
        m += 1
    levels = {key: fixed.get(key) or params[key].levels(m) for key in params}
    combos = [dict(zip(levels, combo)) for combo in itertools.product(*levels.values())]
    return combos[:k]


def fixed_trials(
    tune: TuneSpec, k: int, params: Mapping[str, Distribution] | None = None
) -> list[dict[str, Any]]:
    """k value sets for the grid, random, sobol, halton or lhs sampler (not tpe), over `params`
    (one configuration's ranges, `tune.params_for(label)`; default: the shared ones)."""
    params = tune.params if params is None else params
    if tune.sampler == "grid":
        return grid_trials(params, k)
    dists = list(params.items())
    points = unit_points(tune.sampler, k, len(dists), tune.seed)
    return [{key: d.from_unit(float(u)) for (key, d), u in zip(dists, row)} for row in points]


def _optuna_distribution(d: Distribution):
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if d.kind == "choice":
        return CategoricalDistribution(list(d.args))
    if d.kind == "int_uniform":
        return IntDistribution(*d.args)
    return FloatDistribution(*d.args, log=d.log)


def _open_study(journal: Path, name: str, higher_is_better: bool):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    direction = "maximize" if higher_is_better else "minimize"
    return optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True
    )


def tpe_ask(
    journal: Path,
    name: str,
    tune: TuneSpec,
    results: Mapping[int, float | None],
    n_new: int,
    recorded: Sequence[int],
    params: Mapping[str, Distribution] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Tell Optuna the finished trials' `results` (trial number -> value, None = failed),
    then return n_new (trial number, values) to run next.

    `recorded` are the trial numbers already written to a round file; a running trial not
    among them was asked by a search killed before it wrote its round: it is handed out
    again (same history, same seed: the same values an uninterrupted search would get).
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler
    from optuna.trial import TrialState

    study = _open_study(journal, name, tune.higher_is_better)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in results:
            value = results[trial.number]
            ok = value is not None and math.isfinite(value)
            study.tell(trial.number, value if ok else None,
                       state=TrialState.COMPLETE if ok else TrialState.FAIL)  # fmt: skip
    out = [
        (t.number, dict(t.params))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.number not in recorded and t.number not in results
    ][:n_new]
    params = tune.params if params is None else params  # this configuration's ranges
    dists = {key: _optuna_distribution(d) for key, d in params.items()}
    startup = max(2, min(10, tune.trials // 3))  # random trials before TPE models anything
    while len(out) < n_new:
        number = len(study.get_trials(deepcopy=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ExperimentalWarning)
            study.sampler = TPESampler(
                seed=tune.seed * 100_003 + number, n_startup_trials=startup, constant_liar=True
            )
        with warnings.catch_warnings():  # constant_liar is marked experimental in Optuna
            warnings.simplefilter("ignore", category=ExperimentalWarning)
            trial = study.ask(dists)
        out.append((trial.number, dict(trial.params)))
    return out
