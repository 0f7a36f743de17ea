"""Searches of tuned studies driven in-process with a fake objective (no torch)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nnopt.config.studies import parse_config
from nnopt.search import halving, rounds
from nnopt.search.driver import plan_lines, rounds_done, run_search
from nnopt.store.runs import RunResult, read_run, write_run


def _config(**tune):
    block = {
        "params": {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}},
        "trials": 9, "sampler": "sobol", "seed": 3, "select": "best_val_accuracy",
        "seeds": [0], "confirm_seeds": 2, **tune,
    }  # fmt: skip
    raw = {
        "defaults": {"data": {"name": "blobs", "n_samples": 60}, "budget": {"epochs": 2}},
        "studies": [{"name": "opt", "grid": {"optimizer.name": ["sgd", "adam"]}, "tune": block}],
    }
    return parse_config(raw)


def objective(spec: dict) -> float:
    """Synthetic validation accuracy: best at lr 0.03 (sgd) / 0.003 (adam), grows with epochs."""
    best = 0.03 if spec["optimizer"]["name"] == "sgd" else 0.003
    distance = (math.log10(spec["optimizer"]["lr"]) - math.log10(best)) ** 2
    epochs = spec["budget"]["epochs"]
    return 0.9 - 0.05 * distance - 0.2 / epochs + 0.001 * spec["seed"]


def fake_train(items, calls=None):
    for item in items:
        value = objective(item["spec"])
        metrics = {"best_val_accuracy": value, "test_accuracy": value - 0.01,
                   "epochs": item["spec"]["budget"]["epochs"]}  # fmt: skip
        curve = [{"step": s, "epoch": float(s), "val_accuracy": value} for s in range(1, 3)]
        result = RunResult(status="ok", metrics=metrics, curve=curve)
        write_run(item["out"], result, run_id=item["run_id"], study=item["study"],
                  factors=item["factors"], spec=item["spec"])  # fmt: skip
        if calls is not None:
            calls.append(item["run_id"])


def _trials(folder: Path) -> pl.DataFrame:
    frame = pl.read_parquet(folder / "opt" / "trials.parquet")
    return frame.drop("round").sort("phase", "config_index", "trial", "seed", "rung", nulls_last=True)


def test_fixed_samplers_give_the_same_trials_for_the_same_seed(tmp_path):
    study = _config(sampler="random").studies[0]
    a = rounds.write_round(study, 0, tmp_path / "a", tmp_path / "runs")
    b = rounds.write_round(study, 0, tmp_path / "b", tmp_path / "runs")
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    other = _config(sampler="random", seed=4).studies[0]
    c = rounds.write_round(other, 0, tmp_path / "c", tmp_path / "runs")
    assert json.loads(c.read_text())["runs"] != json.loads(a.read_text())["runs"]


@pytest.mark.parametrize("sampler", ["random", "sobol", "halton", "grid", "tpe"])
def test_search_ends_with_confirmation_runs_on_fresh_seeds(tmp_path, sampler):
    study = _config(sampler=sampler, trials=8, batch=4).studies[0]
    run_search(study, tmp_path / "search", tmp_path / "runs", fake_train)
    trials = _trials(tmp_path / "search")
    confirm = trials.filter(pl.col("phase") == "confirm")
    assert sorted(confirm["seed"].unique()) == [1, 2]  # fresh: tuning used seed 0
    assert set(trials.filter(pl.col("phase") == "trial")["seed"]) == {0}
    assert confirm.height == 2 * 2 and set(confirm["status"]) == {"ok"}
    chosen = json.loads((tmp_path / "search" / "opt" / "chosen.json").read_text())
    by_config = {c["config"]: c for c in chosen["configs"]}
    sgd = trials.filter((pl.col("phase") == "trial") & (pl.col("config_index") == 0))
    assert by_config["optimizer.name=sgd"]["select"] == pytest.approx(sgd["select"].max())
    assert trials.filter(pl.col("phase") == "default").height == 2


def test_successive_halving_prunes_and_matches_a_reference(tmp_path):
    study = _config(trials=9, asha={"eta": 3, "min_epochs": 1, "max_epochs": 9}).studies[0]
    run_search(study, tmp_path / "search", tmp_path / "runs", fake_train)
    trials = _trials(tmp_path / "search").filter(pl.col("phase") == "trial")
    first = rounds.read_round(tmp_path / "search", "opt", 0)
    for config_index in (0, 1):
        lrs = {i["search"]["trial"]: i["spec"]["optimizer"]["lr"] for i in first["runs"]
               if i["search"]["config_index"] == config_index}  # fmt: skip
        spec_of = first["runs"][0 if config_index == 0 else 9]["spec"]
        expected = _reference_halving(lrs, spec_of, eta=3, budgets=[1, 3, 9])
        mine = trials.filter(pl.col("config_index") == config_index)
        for rung, survivors in enumerate(expected):
            got = mine.filter(pl.col("rung") == rung)["trial"].sort().to_list()
            assert got == survivors
        pruned = mine.filter(pl.col("status") == "pruned")
        assert pruned.height == 9 - 1  # all but the top rung's single trial
        for run_id in pruned["run_id"]:
            assert read_run(tmp_path / "runs" / "opt" / run_id)["status"] == "pruned"
            assert pl.read_parquet(tmp_path / "runs" / "opt" / run_id / "curve.parquet").height == 2
    assert sorted(trials["budget_epochs"].unique()) == [1, 3, 9]


def _reference_halving(lrs, spec, *, eta, budgets):
    """Plain successive halving, written independently: rung members per rung."""
    alive = sorted(lrs)
    out = []
    for budget in budgets:
        out.append(list(alive))
        score = {}
        for t in alive:
            s = json.loads(json.dumps(spec))
            s["optimizer"]["lr"], s["budget"]["epochs"], s["seed"] = lrs[t], budget, 0
            score[t] = objective(s)
        alive = sorted(sorted(alive, key=lambda t: (-score[t], t))[: max(1, len(alive) // eta)])
    return out


def _killed(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("sampler", ["sobol", "tpe"])
def test_killed_search_resumes_to_the_same_trials(tmp_path, sampler, monkeypatch):
    tune = {"sampler": sampler, "trials": 8, "batch": 2}
    if sampler == "sobol":
        tune["asha"] = {"eta": 2, "min_epochs": 1, "max_epochs": 4}
    study = _config(**tune).studies[0]
    run_search(study, tmp_path / "full", tmp_path / "runs1", fake_train)

    calls: list[str] = []
    run_search(study, tmp_path / "cut", tmp_path / "runs2", fake_train, stop_after_round=1)
    # A kill in the middle of round 2: its plan is written, half its runs trained.
    rounds.write_round(study, 2, tmp_path / "cut", tmp_path / "runs2")
    half = rounds.read_round(tmp_path / "cut", "opt", 2)["runs"]
    fake_train(half[: len(half) // 2])
    assert rounds_done(study, tmp_path / "cut") == 2
    run_search(study, tmp_path / "cut", tmp_path / "runs2",
               lambda items: fake_train(items, calls), stop_after_round=2)  # fmt: skip
    if sampler == "tpe":  # a kill while round 3 is planned: Optuna asked, no round file yet
        monkeypatch.setattr(rounds, "write_json_atomic", _killed)
        with pytest.raises(KeyboardInterrupt):
            rounds.write_round(study, 3, tmp_path / "cut", tmp_path / "runs2")
        monkeypatch.undo()
        assert not rounds.round_path(tmp_path / "cut", "opt", 3).exists()
    run_search(study, tmp_path / "cut", tmp_path / "runs2",
               lambda items: fake_train(items, calls))  # fmt: skip
    assert len(calls) == len(set(calls))  # nothing trained twice
    assert not set(calls) & {i["run_id"] for i in half[: len(half) // 2]}
    full, cut = _trials(tmp_path / "full"), _trials(tmp_path / "cut")
    assert full.drop("status").equals(cut.drop("status"))
    assert full["status"].to_list() == cut["status"].to_list()


def test_plan_lines_show_trials_planned_and_rounds_left(tmp_path):
    config = _config(asha={"eta": 3, "min_epochs": 1, "max_epochs": 9})
    study = config.studies[0]
    run_search(study, tmp_path / "s", tmp_path / "runs", fake_train, stop_after_round=0)
    (line,) = plan_lines(config, tmp_path / "s")
    assert "trial runs planned 18" in line and "rounds done 1/4, left 3" in line
    assert "halving rungs [1, 3, 9]" in line


def test_budget_dependent_schedule_is_retrained_per_rung(tmp_path):
    """Cosine decays to its end at each rung's own budget: every rung is a fresh full run."""
    config = _config(trials=4, asha={"eta": 2, "min_epochs": 1, "max_epochs": 4})
    study = config.studies[0]
    cosine = {**study.runs[0].spec.to_dict()}
    cosine["schedule"] = {**cosine["schedule"], "name": "cosine"}
    study = type(study)(**{**study.__dict__, "runs": tuple(
        r.__class__(r.study, r.spec.replace(schedule=r.spec.schedule.__class__(name="cosine")),
                    r.factors) for r in study.runs)})  # fmt: skip
    run_search(study, tmp_path / "s", tmp_path / "runs", fake_train)
    docs = [rounds.read_round(tmp_path / "s", "opt", r) for r in range(3)]
    by_trial: dict = {}
    for doc in docs:
        for item in doc["runs"]:
            assert item["spec"]["schedule"]["name"] == "cosine"
            by_trial.setdefault((item["search"]["config_index"], item["search"]["trial"]), []).append(
                (item["spec"]["budget"]["epochs"], item["run_id"]))
    promoted = [v for v in by_trial.values() if len(v) > 1]
    assert promoted
    for runs in promoted:  # distinct runs, each with its own total budget
        assert len({rid for _, rid in runs}) == len(runs)
        assert [e for e, _ in runs] == sorted(e for e, _ in runs)


def test_promote_ranks_failed_trials_last():
    keep, pruned = halving.promote([(0, None), (1, 0.5), (2, 0.7), (3, float("nan"))], 2, True)
    assert keep == [1, 2] and pruned == [0, 3]
    keep, _ = halving.promote([(0, 0.2), (1, 0.1)], 2, False)  # a loss: lower is better
    assert keep == [1]


def test_a_round_waits_for_the_previous_round(tmp_path):
    from nnopt.config.spec import SpecError

    study = _config(asha={"eta": 3, "min_epochs": 1, "max_epochs": 9}).studies[0]
    rounds.write_round(study, 0, tmp_path / "s", tmp_path / "runs")
    with pytest.raises(SpecError, match="not trained yet"):
        rounds.write_round(study, 1, tmp_path / "s", tmp_path / "runs")


def test_expected_best_of_k_equals_enumeration():
    import itertools

    from nnopt.report.search_figures import expected_best_of_k

    values = [0.3, 0.9, 0.5, 0.7]
    for k in (1, 2, 3):
        draws = list(itertools.product(values, repeat=k))  # every k-draw, equally likely
        maxima = [max(d) for d in draws]
        mean, sd = expected_best_of_k(values, [k])
        assert mean[0] == pytest.approx(sum(maxima) / len(maxima))
        assert sd[0] == pytest.approx(float(np.std(maxima)))
        low, _ = expected_best_of_k(values, [k], higher_is_better=False)
        assert low[0] == pytest.approx(sum(min(d) for d in draws) / len(draws))


def test_report_section_shows_a_finished_search_and_flags_edges(tmp_path):
    from nnopt.report.search_figures import search_section

    study = _config(sampler="sobol", trials=8,
                    params={"optimizer.lr": {"log_uniform": [1.0e-2, 1.0]}}).studies[0]  # fmt: skip
    assert search_section(study, tmp_path) == []  # nothing searched yet
    defaults = [{"study": "opt", "run_id": r.run_id, "spec": r.spec.to_dict(), "factors": {},
                 "out": tmp_path / "runs" / "opt" / r.run_id} for r in study.runs]  # fmt: skip
    fake_train(defaults)
    run_search(study, tmp_path / "search", tmp_path / "runs", fake_train)
    figures = {f.key: f for f in search_section(study, tmp_path)}
    assert list(figures) == ["search-best", "search-sensitivity", "search-expected", "search-chosen"]
    assert all(f.svg.startswith("<svg") for k, f in figures.items() if k != "search-chosen")
    table = figures["search-chosen"].svg
    # Adam's best rate (0.003) lies below this range: its choice sits at the low edge.
    assert table.count("edge of its range") == 1 and "at the low edge" in table
    assert "(n=2)" in table  # tuned: two confirmation seeds; default: the study's runs
    note = figures["search-chosen"].note
    assert "k = 8 for every configuration" in note and "DeepOBS" in note


def test_a_changed_tune_block_is_not_continued_from_old_rounds(tmp_path):
    from nnopt.config.spec import SpecError

    run_search(_config().studies[0], tmp_path / "s", tmp_path / "runs", fake_train,
               stop_after_round=0)  # fmt: skip
    with pytest.raises(SpecError, match="different tune block.*delete"):
        rounds.write_round(_config(trials=5).studies[0], 0, tmp_path / "s", tmp_path / "runs")


def test_aggregation_uses_the_confirmation_runs(tmp_path):
    from nnopt.analysis.aggregate import load_runs
    from nnopt.search.driver import with_confirmed_runs

    config = _config(trials=4)
    run_search(config.studies[0], tmp_path / "s", tmp_path / "runs", fake_train)
    runs = load_runs(with_confirmed_runs(config, tmp_path / "s"), tmp_path / "runs")
    assert sorted(runs["seed"].unique()) == [1, 2] and set(runs["status"]) == {"ok"}
    assert sorted(runs["config"].unique()) == ["optimizer.name=adam", "optimizer.name=sgd"]
    untouched = with_confirmed_runs(config, tmp_path / "elsewhere")
    assert untouched.studies[0].runs == config.studies[0].runs


def test_cli_plans_a_round_and_names_a_bad_study_in_one_line(tmp_path, capsys):
    from nnopt.cli.main import main

    config = _config()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.raw))
    common = ["--config", str(path), "--search-dir", str(tmp_path / "s"),
              "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    assert main(["search-round", *common, "--study", "opt", "--round", "0"]) == 0
    assert "opt round 0 (trial): 18 runs" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "s" / "opt" / "round-00.shard-0.json").read_text())) == 18
    assert main(["search-round", *common, "--study", "nope", "--round", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--study: no study 'nope'; tuned studies: opt" in err
    assert main(["search-round", *common, "--study", "opt", "--round", "1"]) == 2
    assert "not trained yet" in capsys.readouterr().err


def test_a_different_trial_budget_per_configuration_is_stated(tmp_path):
    from nnopt.report.search_figures import search_section

    study = _config(sampler="halton", trials=6,
                    trials_by_config={"optimizer.name=adam": 3}).studies[0]  # fmt: skip
    run_search(study, tmp_path / "search", tmp_path / "runs", fake_train)
    trials = _trials(tmp_path / "search").filter(pl.col("phase") == "trial")
    counts = dict(trials.group_by("config").len().iter_rows())
    assert counts == {"optimizer.name=sgd": 6, "optimizer.name=adam": 3}
    note = {f.key: f for f in search_section(study, tmp_path)}["search-chosen"].note
    assert "trial budgets k = 6 (optimizer.name=sgd), 3 (optimizer.name=adam)" in note


def test_the_plan_file_keeps_the_tune_block_and_the_search_key(tmp_path):
    from nnopt.plan.workflow import plan_document, write_plan
    from nnopt.store.plan_file import Plan

    config = _config(asha={"eta": 2, "min_epochs": 1, "max_epochs": 2},
                     params={"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]},
                             "model.activation": {"choice": ["relu", "tanh"]}})  # fmt: skip
    write_plan(tmp_path / "plan.json", plan_document(config, lambda data: data.name))
    study = Plan.load(tmp_path / "plan.json").config().studies[0]
    assert study.tune == config.studies[0].tune and study.tune.asha.budgets == (1, 2)
    assert rounds.search_key(study) == rounds.search_key(config.studies[0])
    assert hash(study.runs[0].spec)  # plug-in kwargs read back hashable (stacked cohorts)


def test_runs_table_holds_every_phase_and_compares_only_confirmation_runs(tmp_path):
    from nnopt.analysis.aggregate import aggregate, compared_runs
    from nnopt.search.driver import search_runs

    config = _config(trials=4, seeds=[0, 1], asha={"eta": 2, "min_epochs": 1, "max_epochs": 2})
    study = config.studies[0]
    run_search(study, tmp_path / "s", tmp_path / "runs", fake_train)
    fake_train([{"study": "opt", "factors": dict(r.factors), "spec": r.spec.to_dict(),
                 "out": str(tmp_path / "runs" / "opt" / r.run_id), "run_id": r.run_id}
                for r in study.runs])  # the study's own runs: phase default  # fmt: skip
    aggregate(config, tmp_path / "runs", tmp_path, {"opt": search_runs(study, tmp_path / "s")})
    runs = pl.read_parquet(tmp_path / "runs.parquet")
    counts = dict(runs.group_by("phase", "status").len().select(
        pl.concat_str("phase", "status", separator="/"), "len").iter_rows())  # fmt: skip
    # 4 trials x 2 tuning seeds x 2 configurations; rung 1 keeps 2 of 4, confirm: 2 seeds
    assert counts == {"trial/pruned": 8, "trial/ok": 16, "confirm/ok": 4, "default/ok": 2}
    assert set(compared_runs(runs)["seed"]) == {2, 3}  # fresh seeds, never the tuning ones
    summary = pl.read_parquet(tmp_path / "summary.parquet")
    assert set(summary["n"]) == {2} and set(summary["n_pruned"]) == {0}
    assert pl.read_parquet(tmp_path / "curves.parquet")["run_id"].n_unique() == runs.height
    untuned = compared_runs(runs.filter(pl.col("phase") != "confirm"))
    assert set(untuned["phase"]) == {"default"}  # before confirmation: the study's own runs


def test_search_verbs_read_the_study_from_the_plan(tmp_path, capsys):
    from nnopt.cli.main import main
    from nnopt.plan.workflow import plan_document, write_plan

    write_plan(tmp_path / "plan.json", plan_document(_config(), lambda data: data.name))
    common = ["--plan", str(tmp_path / "plan.json"), "--study", "opt",
              "--search-dir", str(tmp_path / "s"), "--runs-dir", str(tmp_path / "runs")]
    assert main(["search-round", *common, "--round", "0"]) == 0
    assert "opt round 0 (trial): 18 runs" in capsys.readouterr().out
    doc = rounds.read_round(tmp_path / "s", "opt", 0)
    assert doc["key"] == rounds.search_key(_config().studies[0])


def test_rounds_of_another_tune_block_stop_the_workflow_in_one_line(tmp_path):
    from nnopt.config.spec import SpecError
    from nnopt.search.driver import check_searches

    run_search(_config().studies[0], tmp_path / "s", tmp_path / "runs", fake_train,
               stop_after_round=0)  # fmt: skip
    check_searches(_config(), tmp_path / "s")  # the same block: continued, no error
    with pytest.raises(SpecError, match=r"round-00.json: planned for a different tune block"):
        check_searches(_config(trials=5), tmp_path / "s")


def test_own_ranges_per_configuration_end_with_the_sgd_adam_ratio_beside_deepobs(tmp_path):
    from nnopt.report.search_figures import search_section

    own = {"optimizer.name=sgd": {"optimizer.lr": {"log_uniform": [3.0e-3, 0.3]}},
           "optimizer.name=adam": {"optimizer.lr": {"log_uniform": [3.0e-4, 3.0e-2]},
                                   "regularization.weight_decay": {"log_uniform": [0.01, 1.0]}}}
    study = _config(sampler="sobol", trials=8, params=None, params_by_config=own).studies[0]
    run_search(study, tmp_path / "search", tmp_path / "runs", fake_train)
    trials = _trials(tmp_path / "search").filter(pl.col("phase") == "trial")
    decay = dict(trials.group_by("config").agg(pl.col("tune.regularization.weight_decay")
                                               .is_not_null().sum()).iter_rows())  # fmt: skip
    assert decay == {"optimizer.name=sgd": 0, "optimizer.name=adam": 8}
    chosen = json.loads((tmp_path / "search" / "opt" / "chosen.json").read_text())
    by = {c["config"]: c for c in chosen["configs"]}
    assert by["optimizer.name=adam"]["params"]["optimizer.lr"]["args"] == [3.0e-4, 3.0e-2]
    assert all(not c["at_edge"] for c in chosen["configs"])  # optima 0.03 / 0.003: inside
    sgd, adam = (by[f"optimizer.name={n}"]["values"]["optimizer.lr"] for n in ("sgd", "adam"))
    note = {f.key: f for f in search_section(study, tmp_path)}["search-chosen"].note
    assert f"SGD {sgd:.3g}, Adam {adam:.3g}, a ratio SGD / Adam of {sgd / adam:.0f}×" in note
    assert "DeepOBS (Schneider et al. 2019) reports 160–630×" in note


def test_a_rounds_trials_are_labelled_to_train_as_stacked_cohorts(tmp_path):
    from nnopt.plan.cohorts import cohort_key

    study = _config(sampler="sobol", trials=8, shards=2).studies[0]
    rounds.write_round(study, 0, tmp_path / "s", tmp_path / "r")
    for shard in range(2):
        items = json.loads(rounds.shard_path(tmp_path / "s", "opt", 0, shard).read_text())
        assert len(items) == 8  # 2 configurations x 8 trials, split over 2 shards
        labels = {}
        for item in items:
            labels.setdefault(item["search"]["config"], set()).add(item.get("cohort"))
        # one stacked cohort per configuration (same model and data; only the rate differs)
        assert all(len(v) == 1 and None not in v for v in labels.values())
        assert len(set().union(*labels.values())) == 2
        assert all(cohort_key(rounds.parse_spec(i["spec"])) is not None for i in items)
    alone = _config(sampler="sobol", trials=8)
    alone = alone.studies[0].__class__(**{**alone.studies[0].__dict__, "cohorts": False})
    rounds.write_round(alone, 0, tmp_path / "t", tmp_path / "r")
    items = json.loads(rounds.shard_path(tmp_path / "t", "opt", 0, 0).read_text())
    assert not any("cohort" in i for i in items)


def test_the_deepobs_ratio_is_named_only_where_optimizers_are_compared():
    from nnopt.report.search_figures import _rate_note

    def chosen(labels_rates):
        return {"configs": [{"config": k, "values": {"optimizer.lr": v}} for k, v in labels_rates]}

    batches = _rate_note(chosen([("budget.batch_size=16", 0.01), ("budget.batch_size=64", 0.02)]))
    assert "span 2× (budget.batch_size=64 / budget.batch_size=16)" in batches
    assert "DeepOBS" not in batches
    pair = _rate_note(chosen([("optimizer.name=sgd", 1.5), ("optimizer.name=adam", 0.005)]))
    assert "SGD 1.5, Adam 0.005, a ratio SGD / Adam of 300×" in pair and "160–630×" in pair
    other = _rate_note(chosen([("optimizer.name=sgd", 1.0), ("optimizer.name=rmsprop", 0.01)]))
    assert "span 100×" in other and "DeepOBS reports 160–630×" in other
