"""The `tune:` block: one-line errors naming the key, fresh seeds, and the samplers' points."""

from __future__ import annotations

import numpy as np
import pytest

from nnopt.config.spec import SpecError
from nnopt.config.studies import parse_config
from nnopt.config.tune import Distribution, parse_tune
from nnopt.search.samplers import fixed_trials, grid_trials, unit_points

_GOOD = {"params": {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}}, "trials": 8}


def _study(tune, **study):
    return {
        "defaults": {"data": {"name": "blobs", "n_samples": 60}, "budget": {"epochs": 2}},
        "studies": [{"name": "s", "grid": {"optimizer.name": ["sgd", "adam"]}, "tune": tune, **study}],
    }


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"params": {"optimizer.lr": {"choice": []}}}, "tune.params.optimizer.lr.choice", "empty range"),
        ({"params": {"optimizer.lr": {"uniform": [0.1, 0.1]}}}, "tune.params.optimizer.lr.uniform", "lo < hi"),
        ({"params": {"optimizer.lr": {"log_uniform": [0.0, 1.0]}}}, "log_uniform", "0 < lo"),
        ({"params": {"optimizer.lr": {"log_unifrom": [0.1, 1.0]}}}, "tune.params.optimizer.lr", "did you mean 'log_uniform'"),
        ({"params": {}}, "tune.params", "non-empty"),
        ({"trials": 0}, "tune.trials", ">= 1"),
        ({"sampler": "bayes"}, "tune.sampler", "allowed: grid, random, sobol, halton, lhs, tpe"),
        ({"params": {"optimizer.name": {"choice": ["sgd"]}}}, "tune.params.optimizer.name", "also varies"),
        ({"select": "test_accuracy"}, "tune.select", "test metric"),
        ({"select": "train_time_s"}, "tune.select", "not a validation metric"),
        ({"seeds": [0, 1], "confirm_seeds": [1, 2]}, "tune.confirm_seeds", "seed 1 is also a tuning seed"),
        ({"asha": {"eta": 3, "min_epochs": 9, "max_epochs": 3}}, "tune.asha", "must be <"),
        ({"asha": {"eta": 1, "min_epochs": 1, "max_epochs": 3}}, "tune.asha.eta", ">= 2"),
        ({"sampler": "tpe", "asha": {"min_epochs": 1, "max_epochs": 3}}, "tune.asha", "tpe"),
        ({"trials_by_config": {"optimizer.name=sdg": 4}}, "trials_by_config.optimizer.name=sdg", "did you mean"),
        ({"params": {"optimizer.lrr": {"log_uniform": [0.1, 1.0]}}}, "tune.params.optimizer.lrr", "unknown key"),
        ({"params": {"model.width": {"int_uniform": [0.5, 3]}}}, "int_uniform", "integers"),
        ({"budget": 3}, "tune.budget", "unknown key"),
    ],
)
def test_bad_tune_block_is_one_line_naming_the_key(change, key, words):
    with pytest.raises(SpecError) as err:
        parse_config(_study({**_GOOD, **change}))
    message = str(err.value)
    assert "\n" not in message and f"studies.s.{key}" in message or key in message
    assert key in message and words in message


def test_confirmation_seeds_are_fresh():
    tune = parse_tune("t", {**_GOOD, "seeds": [0, 2], "confirm_seeds": 3})
    assert tune.confirm_seeds == (1, 3, 4)
    assert not set(tune.confirm_seeds) & set(tune.seeds)


def test_a_good_block_parses_with_its_defaults():
    study = parse_config(_study(_GOOD)).studies[0]
    assert study.tune.sampler == "random" and study.tune.select == "best_val_accuracy"
    assert study.tune.higher_is_better and study.tune.trials_for("optimizer.name=sgd") == 8
    loss = parse_tune("t", {**_GOOD, "select": "final_val_loss"})
    assert not loss.higher_is_better


@pytest.mark.parametrize("sampler", ["random", "sobol", "halton", "lhs"])
def test_sampler_points_are_reproducible_and_in_range(sampler):
    tune = parse_tune("t", {**_GOOD, "sampler": sampler, "seed": 5, "trials": 16,
                            "params": {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]},
                                       "model.width": {"int_uniform": [8, 64]},
                                       "model.activation": {"choice": ["relu", "tanh"]}}})  # fmt: skip
    a, b = fixed_trials(tune, 16), fixed_trials(tune, 16)
    assert a == b
    assert all(1e-4 <= t["optimizer.lr"] <= 1.0 and 8 <= t["model.width"] <= 64 for t in a)
    assert all(isinstance(t["model.width"], int) for t in a)
    assert {t["model.activation"] for t in a} == {"relu", "tanh"}


def test_sobol_and_halton_points_are_balanced():
    sobol = unit_points("sobol", 16, 3, seed=1)
    for column in sobol.T:  # every 1-D projection: one point per 1/16 cell
        assert sorted(np.floor(column * 16).astype(int)) == list(range(16))
    halton = unit_points("halton", 16, 2, seed=1)
    for column, base in zip(halton.T, (2, 3)):  # base-b digits: cells of 1/b fill evenly
        counts = np.bincount(np.floor(column * base).astype(int), minlength=base)
        assert counts.max() - counts.min() <= 1
    rand = unit_points("random", 16, 3, seed=1)
    from scipy.stats import qmc

    assert qmc.discrepancy(sobol) < qmc.discrepancy(rand)


def test_grid_uses_cell_midpoints_never_the_edges():
    points = grid_trials({"lr": Distribution("log_uniform", (1e-4, 1.0)),
                          "act": Distribution("choice", ("relu", "tanh"))}, 8)  # fmt: skip
    assert len(points) == 8
    lrs = sorted({p["lr"] for p in points})
    assert lrs == pytest.approx([10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])


_OWN = {
    "trials": 8, "sampler": "sobol",
    "params_by_config": {
        "optimizer.name=sgd": {"optimizer.lr": {"log_uniform": [0.1, 10.0]}},
        "optimizer.name=adam": {"optimizer.lr": {"log_uniform": [1.0e-3, 0.1]},
                                "regularization.weight_decay": {"log_uniform": [0.01, 1.0]}},
    },
}  # fmt: skip


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"params_by_config": {"optimizer.name=sdg": {"optimizer.lr": {"log_uniform": [0.1, 1.0]}}}},
         "tune.params_by_config.optimizer.name=sdg", "did you mean"),
        ({"params_by_config": {"optimizer.name=sgd": {"optimizer.lr": {"log_uniform": [0.1, 1.0]}}}},
         "tune.params_by_config", "configuration optimizer.name=adam tunes nothing"),
        ({"params_by_config": {"optimizer.name=sgd": {"optimizer.name": {"choice": ["adam"]}},
                               "optimizer.name=adam": {"optimizer.lr": {"log_uniform": [0.1, 1.0]}}}},
         "tune.params_by_config.optimizer.name=sgd.optimizer.name", "also varies"),
        ({"params_by_config": {"optimizer.name=sgd": {"optimizer.lr": {"log_uniform": [1.0, 0.1]}},
                               "optimizer.name=adam": {}}},
         "tune.params_by_config.optimizer.name=sgd.optimizer.lr.log_uniform", "lo < hi"),
        ({"params_by_config": [1]}, "tune.params_by_config", "expected a mapping"),
    ],
)  # fmt: skip
def test_bad_per_configuration_ranges_are_one_line_naming_the_key(change, key, words):
    with pytest.raises(SpecError) as err:
        parse_config(_study({**_OWN, **change}))
    message = str(err.value)
    assert "\n" not in message and f"studies.s.{key}" in message and words in message


def test_each_configuration_searches_its_own_ranges(tmp_path):
    from nnopt.config.tune import tune_from_record
    from nnopt.search.rounds import write_round
    import dataclasses
    import json

    study = parse_config(_study({**_OWN, "params": {"model.width": {"int_uniform": [8, 16]}}})).studies[0]
    tune = study.tune
    assert set(tune.params_for("optimizer.name=sgd")) == {"model.width", "optimizer.lr"}
    assert set(tune.all_params) == {"model.width", "optimizer.lr", "regularization.weight_decay"}
    assert tune_from_record(json.loads(json.dumps(dataclasses.asdict(tune)))) == tune
    runs = json.loads(write_round(study, 0, tmp_path / "s", tmp_path / "r").read_text())["runs"]
    by = {name: [r["spec"] for r in runs if r["spec"]["optimizer"]["name"] == name] for name in ("sgd", "adam")}
    assert len(by["sgd"]) == len(by["adam"]) == 8
    lr = {name: sorted(s["optimizer"]["lr"] for s in specs) for name, specs in by.items()}
    assert 0.1 <= lr["sgd"][0] and lr["sgd"][-1] <= 10.0 and lr["adam"][-1] <= 0.1
    # one Sobol point per eighth of each configuration's own log range
    cells = sorted(int(np.log(v / 0.1) / np.log(100.0) * 8) for v in lr["sgd"])
    assert cells == list(range(8))
    decay = {name: {s["regularization"]["weight_decay"] for s in specs} for name, specs in by.items()}
    assert decay["sgd"] == {0.0} and len(decay["adam"]) == 8 and min(decay["adam"]) >= 0.01


def test_lhs_puts_one_trial_at_the_centre_of_each_cell_of_every_range():
    from nnopt.search.summary import at_edge

    points = unit_points("lhs", 8, 2, seed=3)
    for column in points.T:  # every 1-D projection: the 8 cell midpoints, never an edge
        assert sorted(column) == pytest.approx([(i + 0.5) / 8 for i in range(8)])
    assert not np.array_equal(points, unit_points("lhs", 8, 2, seed=4))  # the pairing is seeded
    assert np.array_equal(points, unit_points("lhs", 8, 2, seed=3))
    lr = Distribution("log_uniform", (1e-3, 1e-1))
    # the edge warning: the outermost of k cells (here 1/8 of the log range), at least 5 %
    assert at_edge(lr, 10**-2.9, trials=8) == "low" and at_edge(lr, 10**-1.1, trials=8) == "high"
    assert at_edge(lr, 10**-2.7, trials=8) is None and at_edge(lr, 10**-2.85, trials=100) is None
    assert at_edge(lr, 10**-2.95, trials=100) == "low"
