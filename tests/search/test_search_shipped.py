"""The shipped config's tuned studies (issue 15.5): they parse, and their first round plans
the same trial budget for every compared configuration, each on its own range around the
optimum measured on MNIST-1D, with confirmation seeds disjoint from the tuning seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nnopt.config.studies import load_config
from nnopt.search.rounds import round_count, targets, write_round
from nnopt.search.summary import at_edge

ROOT = Path(__file__).resolve().parents[2]
# Best learning rates measured on MNIST-1D (MLP 100x100, 30 epochs; docs/search.md)
MEASURED_LR = {"sgd": 1.0, "adagrad": 0.2, "rmsprop": 0.02, "adam": 0.03, "adamw": 0.03,
               "momentum": 0.1, "nesterov": 0.1}  # fmt: skip
TUNED = {"optimizers__mnist1d_mlp": 5, "gradient_descent__mnist1d_mlp": 8, "hyperparameter_grid": 5}


@pytest.fixture(scope="module")
def shipped():
    return {s.name: s for s in load_config(ROOT / "config" / "config.yaml").studies}


def _log_position(dist, value) -> float:
    lo, hi = dist.args
    return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))


@pytest.mark.parametrize("name", sorted(TUNED))
def test_shipped_tuned_study_plans_equal_budgets_on_fresh_confirmation_seeds(shipped, name, tmp_path):
    study = shipped[name]
    tune = study.tune
    assert tune is not None and tune.sampler == "lhs" and round_count(study) == 2
    assert "val" in tune.select and "test" not in tune.select
    assert len(tune.confirm_seeds) >= TUNED[name]  # the claims' power lives here
    assert not set(tune.confirm_seeds) & set(tune.seeds)
    labels = [t.label for t in targets(study)]
    assert {tune.trials_for(label) for label in labels} == {tune.trials}  # the same budget
    doc = json.loads(write_round(study, 0, tmp_path / "search", tmp_path / "runs").read_text())
    runs = doc["runs"]
    assert len(runs) == tune.trials * len(tune.seeds) * len(labels)
    assert {r["search"]["seed"] for r in runs} == set(tune.seeds)
    for label in labels:
        own = [r for r in runs if r["search"]["config"] == label]
        assert len({json.dumps(r["search"]["values"], sort_keys=True) for r in own}) == tune.trials
        lr = tune.params_for(label)["optimizer.lr"]
        assert lr.log and lr.args[1] / lr.args[0] >= 30  # a wide log range, not a 3-point sweep
        assert all(lr.args[0] <= r["spec"]["optimizer"]["lr"] <= lr.args[1] for r in own)


@pytest.mark.parametrize("name", ["optimizers__mnist1d_mlp", "gradient_descent__mnist1d_mlp"])
def test_each_optimizer_range_holds_its_measured_optimum_well_inside(shipped, name):
    tune = shipped[name].tune
    for target in targets(shipped[name]):
        optimizer = target.factors["optimizer.name"]
        lr = tune.params_for(target.label)["optimizer.lr"]
        u = _log_position(lr, MEASURED_LR[optimizer])
        assert 0.25 <= u <= 0.75, (optimizer, u)
        # the trial nearest the optimum is not one the report's edge warning would flag
        assert at_edge(lr, MEASURED_LR[optimizer], tune.trials_for(target.label)) is None


def test_only_adamw_tunes_its_weight_decay(shipped):
    tune = shipped["optimizers__mnist1d_mlp"].tune
    decays = {label: "regularization.weight_decay" in tune.params_for(label)
              for label in (t.label for t in targets(shipped["optimizers__mnist1d_mlp"]))}  # fmt: skip
    assert decays == {f"optimizer.name={n}": n == "adamw"
                      for n in ("sgd", "adagrad", "rmsprop", "adam", "adamw")}  # fmt: skip
    assert 0.25 <= _log_position(tune.params_for("optimizer.name=adamw")["regularization.weight_decay"], 0.1) <= 0.75
