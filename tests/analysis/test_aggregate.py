"""nnopt.analysis.aggregate on fixture run directories: tables, statuses, hand-computed statistics."""

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from fixtures.make_runs import SMALL_CONFIG, make_runs
from nnopt import cli
from nnopt.analysis import aggregate as ag
from nnopt.config.studies import parse_config


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    config = parse_config(SMALL_CONFIG)
    runs = config.study("activation").runs  # 3 configs x 4 seeds, sigmoid first
    statuses = {runs[0].run_id: "diverged", runs[1].run_id: "failed"}
    means = {("activation", "model.activation=relu"): {"steps_to_target": 400.0},
             ("activation", "model.activation=tanh"): {"steps_to_target": 2000.0}}
    make_runs(config, root / "runs", statuses=statuses, skip=(runs[2].run_id,), means=means)
    (root / "config.json").write_text(json.dumps(SMALL_CONFIG))
    assert cli.main(["aggregate", "--config", str(root / "config.json"), "--runs", str(root / "runs"),
                    "--out", str(root)]) == 0
    frames = {n: pl.read_parquet(root / f"{n}.parquet")
              for n in ("runs", "curves", "summary", "comparisons")}
    return root, config, frames


def _ok_values(root, study, label, metric):
    out = []
    for path in sorted((root / "runs" / study).glob("*/metrics.json")):
        doc = json.loads(path.read_text())
        factors = ", ".join(f"{k}={v}" for k, v in doc["factors"].items())
        if factors == label and doc["status"] == "ok":
            out.append(doc["metrics"][metric])
    return np.array(out)


def _seeded_values(root, study, label, metric) -> dict:
    """{seed: value} of a configuration's ok runs."""
    out = {}
    for path in sorted((root / "runs" / study).glob("*/metrics.json")):
        doc = json.loads(path.read_text())
        factors = ", ".join(f"{k}={v}" for k, v in doc["factors"].items())
        if factors == label and doc["status"] == "ok":
            out[doc["seed"]] = doc["metrics"][metric]
    return out


def test_unmatched_seeds_fall_back_to_welch(tables):
    _, _, f = tables
    # activation: the baseline sigmoid lost a run (failed) and one is missing; relu has all
    row = f["comparisons"].filter((pl.col("study") == "activation")
                                  & (pl.col("metric") == "test_accuracy")
                                  & (pl.col("config") == "model.activation=relu")).row(
        0, named=True)
    assert row["test"] == "welch" and row["n"] > row["n_base"]


def test_runs_table_has_every_planned_run_with_its_status(tables):
    _, config, f = tables
    runs = f["runs"]
    assert runs.height == len(config.runs)
    counts = dict(runs.group_by("status").len().iter_rows())
    assert counts == {"ok": 21, "diverged": 1, "failed": 1, "missing": 1}
    for col in ("study", "run_id", "seed", "status", "model.activation", "optimizer.lr",
                "test_accuracy", "steps_to_target", "train_time_s", "device", "world_size"):
        assert col in runs.columns
    failed = runs.filter(pl.col("status") == "failed")
    assert "out of <memory>" in failed["error"][0]
    ok = runs.filter(pl.col("status") == "ok")
    assert ok["cpu_count"].to_list() == [2] * ok.height  # from each run's provenance


def test_summary_matches_hand_computation(tables):
    root, _, f = tables
    label = "model.activation=relu"
    row = f["summary"].filter((pl.col("config") == label)
                              & (pl.col("metric") == "test_accuracy")).row(0, named=True)
    values = _ok_values(root, "activation", label, "test_accuracy")
    assert row["n"] == 4 and row["n_ok"] == 4 and row["n_used"] == 4
    assert row["mean"] == pytest.approx(values.sum() / 4)
    sd = math.sqrt(((values - values.mean()) ** 2).sum() / 3)
    assert row["std"] == pytest.approx(sd)
    low, high = sps.t.interval(0.95, 3, loc=values.mean(), scale=sd / 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row["median"] == pytest.approx(np.median(values))
    assert row["model.activation"] == "relu"


def test_failed_diverged_and_missing_runs_are_counted_by_the_declared_rule(tables):
    root, _, f = tables
    row = f["summary"].filter((pl.col("config") == "model.activation=sigmoid")
                              & (pl.col("metric") == "test_accuracy")).row(0, named=True)
    assert (row["n"], row["n_ok"], row["n_diverged"], row["n_failed"], row["n_missing"]) == (
        4, 1, 1, 1, 1)
    # the diverged run counts as chance accuracy (1/10 on mnist1d); failed/missing are not used
    assert row["n_used"] == 2
    only = _ok_values(root, "activation", "model.activation=sigmoid", "test_accuracy")
    assert row["mean"] == pytest.approx((only[0] + 0.1) / 2)
    # a metric a diverged run never measured leaves it out: n_used < n, shown
    loss = f["summary"].filter((pl.col("config") == "model.activation=sigmoid")
                               & (pl.col("metric") == "final_train_loss")).row(0, named=True)
    assert loss["n_used"] == 1 and loss["ci_low"] is None  # one value: no interval


def test_a_run_that_never_left_chance_is_stalled_and_counted(tmp_path):
    config = parse_config(SMALL_CONFIG)
    relu = [r for r in config.study("activation").runs if r.config.endswith("relu")]
    means = {("activation", "model.activation=relu"): {"test_accuracy": 0.5}}
    make_runs(config, tmp_path, means=means, sd=0.001)
    doc_path = tmp_path / "activation" / relu[0].run_id / "metrics.json"
    doc = json.loads(doc_path.read_text())
    doc["metrics"].update(best_val_accuracy=0.12, test_accuracy=0.11)  # chance 0.10 + 0.02
    doc_path.write_text(json.dumps(doc))
    runs = ag.load_runs(config, tmp_path)
    status = runs.filter(pl.col("run_id") == relu[0].run_id)["status"][0]
    assert status == "stalled" and set(runs["status"]) == {"ok", "stalled"}
    summary = ag.summarize(runs, config)
    row = summary.filter((pl.col("config") == "model.activation=relu")
                         & (pl.col("metric") == "test_accuracy")).row(0, named=True)
    assert row["n_stalled"] == 1 and row["n_used"] == 4  # counted with its measured accuracy
    assert row["mean"] == pytest.approx((0.11 + 3 * 0.5) / 4, abs=0.003)


def test_chance_classes_from_the_data_spec():
    from nnopt.config.spec import parse_spec

    assert ag.chance_classes(parse_spec({"data": {"name": "mnist1d"}})) == 10
    assert ag.chance_classes(parse_spec({"data": {"name": "blobs", "n_classes": 4}})) == 4


def test_censored_time_to_target_reports_reached_counts_and_no_mean(tables):
    _, _, f = tables
    s = f["summary"].filter(pl.col("metric") == "steps_to_target")
    tanh = s.filter(pl.col("config") == "model.activation=tanh").row(0, named=True)
    relu = s.filter(pl.col("config") == "model.activation=relu").row(0, named=True)
    assert tanh["n_reached"] == 0 and tanh["mean"] is None and tanh["median"] == math.inf
    assert relu["n_reached"] == 4 and relu["mean"] is not None
    c = f["comparisons"].filter((pl.col("metric") == "steps_to_target")
                                & (pl.col("config") == "model.activation=tanh")).row(0, named=True)
    assert c["test"] == "mannwhitney"
    # sigmoid: the diverged run counts as never reached (+inf), the ok one as its value.
    sig = s.filter(pl.col("config") == "model.activation=sigmoid").row(0, named=True)
    assert sig["n_used"] == 2


def test_comparisons_against_baseline_equal_scipy_and_holm(tables):
    root, _, f = tables
    comp = f["comparisons"].filter(pl.col("study") == "hyperparameter_grid")
    base = comp["baseline"][0]
    assert base == "optimizer.lr=0.01, budget.batch_size=16"  # no baseline: first config
    row = comp.filter(pl.col("config") == "optimizer.lr=0.001, budget.batch_size=64").row(
        0, named=True)
    a = _seeded_values(root, "hyperparameter_grid", row["config"], "test_accuracy")
    b = _seeded_values(root, "hyperparameter_grid", base, "test_accuracy")
    assert sorted(a) == sorted(b)  # the same seeds: compared seed by seed
    seeds = sorted(a)
    ref = sps.ttest_rel([a[k] for k in seeds], [b[k] for k in seeds])
    assert row["test"] == "paired_t" and row["p"] == pytest.approx(ref.pvalue)
    low, high = ref.confidence_interval()
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((low, high))
    ps = comp.filter(~pl.col("is_baseline"))["p"].to_numpy()
    m = len(ps)
    order = np.argsort(ps)
    expected = np.maximum.accumulate(ps[order] * (m - np.arange(m))).clip(max=1)
    np.testing.assert_allclose(np.sort(comp.filter(~pl.col("is_baseline"))["p_holm"]),
                               np.sort(expected))
    assert set(comp["rank"].drop_nulls()) <= {1, 2, 3, 4}


def test_curves_have_one_row_per_run_and_eval_point(tables):
    _, _, f = tables
    curves = f["curves"]
    n_with_curve = f["runs"].filter(pl.col("status").is_in(["ok", "diverged"])).height
    assert curves.height == n_with_curve * 10
    assert curves.schema["layer_grad_norms"] == pl.List(pl.Float64)


def test_study_frame_types_factor_columns_per_study(tables):
    _, config, f = tables
    grid = ag.study_frame(f["runs"], config.study("hyperparameter_grid"))
    assert grid.schema["optimizer.lr"] == pl.Float64
    assert grid.schema["budget.batch_size"] == pl.Int64
    assert sorted(set(grid["budget.batch_size"])) == [16, 64]


def test_bad_config_exits_2_with_message(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"studies": [{"name": "x", "bogus": 1}]}))
    assert cli.main(["aggregate", "--config", str(tmp_path / "c.json"), "--runs", str(tmp_path),
                    "--out", str(tmp_path)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_vectorized_summary_equals_stats_describe_for_every_group(tables):
    root, config, f = tables
    from nnopt.analysis import stats

    runs = f["runs"]
    for row in f["summary"].iter_rows(named=True):
        part = runs.filter((pl.col("config") == row["config"]) & (pl.col("study") == row["study"]))
        keep, diverged_as = ag.counted(row["metric"])
        part = part.filter(pl.col("status").is_in(keep))
        vals = part[row["metric"]].to_numpy().astype(float)
        if diverged_as == "chance":  # the declared rule: a diverged run = chance accuracy
            diverged = (part["status"] == "diverged").to_numpy()
            vals = np.where(diverged, 1 / part["n_classes"].to_numpy(), vals)
        if row["censored"]:  # never reached = +inf where a target was set
            has_target = part["target_val_accuracy"].is_not_null().to_numpy()
            vals = np.where(np.isnan(vals) & has_target, np.inf, vals)
        d = stats.describe(vals)
        got = [row[k] for k in ("mean", "std", "ci_low", "ci_high", "median", "q25", "q75")]
        want = [d.mean, d.std, d.ci_low, d.ci_high, d.median, d.q25, d.q75]
        np.testing.assert_allclose([np.nan if g is None else g for g in got], want, rtol=1e-12)
        assert row["ci_method"] == d.ci_method and row["n_used"] == d.n


def test_time_to_target_without_a_target_is_not_measured_rather_than_never_reached(tables):
    _, _, f = tables
    row = f["summary"].filter((pl.col("study") == "hyperparameter_grid")
                              & (pl.col("metric") == "steps_to_target")).row(0, named=True)
    assert row["n_used"] == 0 and row["n_reached"] is None and row["median"] is None


def test_study_frame_types_a_factor_mixing_int_and_float(tmp_path):
    # a sweep such as dropout [0, 0.1] holds an int and a float: one Float64 column
    config = parse_config({**SMALL_CONFIG, "studies": [
        {"name": "drop", "grid": {"model.dropout": [0, 0.1, 0.3]}, "metrics": ["test_accuracy"]}]})
    make_runs(config, tmp_path)
    frame = ag.study_frame(ag.load_runs(config, tmp_path), config.study("drop"))
    assert frame.schema["model.dropout"] == pl.Float64
    assert sorted(set(frame["model.dropout"])) == [0.0, 0.1, 0.3]
    assert frame["model.dropout"].null_count() == 0
