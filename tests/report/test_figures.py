"""nnopt.report.figures: SVG output, escaping, consistent colours, bands, the extra-section hook."""

import re

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from fixtures.make_runs import SMALL_CONFIG, make_runs
from nnopt.analysis import aggregate as ag
from nnopt.report import figures
from nnopt.config.studies import parse_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("figs")
    config = parse_config(SMALL_CONFIG)
    make_runs(config, root / "runs")
    runs = ag.load_runs(config, root / "runs")
    summary = ag.summarize(runs, config)
    return config, runs, summary, ag.load_curves(runs, root / "runs")


def _colour_hex(rgb):
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb[:3])


def test_point_plot_is_compact_svg_with_text_and_escaped_labels(world):
    config, _, summary, _ = world
    study = config.study("activation")
    part = summary.filter(pl.col("study") == "activation")
    order = part["config"].unique(maintain_order=True).to_list()
    labels = {c: f"<script>{i}</script> $x$" for i, c in enumerate(order)}
    svg = figures.metric_points(part, ["test_accuracy"], order, labels, figures.palette(order))
    assert svg.startswith("<svg") and "<metadata" not in svg
    assert "<script>" not in svg and "&lt;script&gt;0&lt;/script&gt;" in svg
    assert "<text" in svg  # fonttype none: labels stay text, the file stays small
    assert len(svg) < 40_000
    ids = re.findall(r'id="([^"]+)"', svg)
    assert ids and len({i.split("-")[0] for i in ids}) == 1  # one prefix per figure
    assert study.name == "activation"


def test_colours_are_consistent_across_figures(world):
    config, runs, summary, curves = world
    study = config.study("activation")
    part = summary.filter(pl.col("study") == "activation")
    order = part["config"].unique(maintain_order=True).to_list()
    bands = figures.curve_bands(curves, "activation")
    figs = {f.key: f.svg for f in figures.study_figures(study, part, bands, order)}
    relu = _colour_hex(figures.palette(order)["model.activation=relu"])
    assert relu in figs["curves"] and relu in figs["points-0"]


def test_curve_band_is_mean_and_t_interval_over_seeds(world):
    _, _, _, curves = world
    bands = figures.curve_bands(curves, "activation")
    label = "model.activation=tanh"
    step = int(curves.filter(pl.col("config") == label)["step"].max())
    vals = curves.filter((pl.col("config") == label) & (pl.col("step") == step))["val_accuracy"]
    row = bands.filter((pl.col("config") == label) & (pl.col("step") == step)).row(0, named=True)
    v = vals.to_numpy()
    low, high = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=v.std(ddof=1) / np.sqrt(len(v)))
    assert row["val_accuracy_mean"] == pytest.approx(v.mean())
    assert (row["val_accuracy_low"], row["val_accuracy_high"]) == pytest.approx((low, high))


def test_heatmap_only_for_two_factor_grids(world):
    config, _, summary, _ = world
    grid = summary.filter(pl.col("study") == "hyperparameter_grid")
    svg = figures.heatmap(grid, config.study("hyperparameter_grid"), "test_accuracy")
    assert svg is not None and "<image" not in svg  # vector cells, no embedded raster
    one = summary.filter(pl.col("study") == "activation")
    assert figures.heatmap(one, config.study("activation"), "test_accuracy") is None


def test_extra_sections_feed_the_study(world, tmp_path):
    config, *_ = world
    seen = []

    def landscape(study, results_dir):
        seen.append((study.name, results_dir))
        return [figures.Figure("landscape", "Loss landscape", "<svg></svg>")] if study.name == "activation" else []

    out = figures.extra_sections(config.study("activation"), tmp_path, [landscape])
    none = figures.extra_sections(config.study("hyperparameter_grid"), tmp_path, [landscape])
    assert [f.key for f in out] == ["landscape"] and none == []
    assert seen[0] == ("activation", tmp_path)


# --- display labels: one function for every table, sentence and figure -----------------------


def _labels(study_raw):
    study = parse_config({"seeds": 1, "studies": [study_raw]}).studies[0]
    frame = pl.DataFrame({"config": [r.config for r in study.runs]})  # labels need only config
    return study, figures.short_labels(frame, study)


def test_a_label_study_is_named_by_its_labels_alone():
    study, labels = _labels({
        "name": "sched", "rows": "label.schedule",
        "zip": {"label.schedule": ["constant", "step"], "schedule.name": ["constant", "step"],
                "schedule.gamma": [0.5, 0.5], "schedule.warmup_epochs": [0, 0]}})
    assert sorted(labels.values()) == ["constant", "step"]
    assert all("schedule.name=" in config for config in labels)  # table keys stay machine labels
    assert figures.label_title(study) == "Schedule"


def test_a_one_factor_study_is_named_by_the_value():
    study, labels = _labels({"name": "act", "grid": {"model.activation": ["relu", "tanh"]}})
    assert labels == {"model.activation=relu": "relu", "model.activation=tanh": "tanh"}
    assert figures.label_title(study) == "Activation"


@pytest.mark.parametrize("raw, expected", [
    ({"zip": {"optimizer.lr": [0.1, 0.003], "optimizer.name": ["sgd", "adam"]},
      "rows": "optimizer.name"}, {"sgd, lr=0.1", "adam, lr=0.003"}),
    ({"grid": {"init.name": ["xavier_uniform"], "model.activation": ["tanh", "relu"]},
      "rows": "init.name"}, {"xavier_uniform, activation=tanh", "xavier_uniform, activation=relu"}),
    # A bare 'true' or '16' does not say what it is: the rows factor keeps its key.
    ({"grid": {"model.batch_norm": [False, True], "model.depth": [4]}, "rows": "model.batch_norm"},
     {"batch_norm=false, depth=4", "batch_norm=true, depth=4"}),
    ({"grid": {"budget.batch_size": [16], "optimizer.lr": [0.01]}}, {"batch_size=16, lr=0.01"}),
])
def test_several_factors_put_the_rows_value_first_then_short_keys(raw, expected):
    study, labels = _labels({"name": "s", **raw})
    assert set(labels.values()) == expected
    assert figures.label_title(study) == ""


def test_labels_fall_back_to_frame_columns_then_to_the_machine_label():
    study = parse_config({"seeds": 1, "studies": [
        {"name": "act", "grid": {"model.activation": ["relu"]}}]}).studies[0]
    frame = pl.DataFrame({"config": ["model.activation=elu", "old"],
                          "model.activation": ["elu", None]})
    assert figures.short_labels(frame, study) == {"model.activation=elu": "elu", "old": "old"}


# --- heatmap of a time-to-target metric ---------------------------------------------------------


def _grid_summary(study, metric, cells):
    """Summary rows of a 2 × 2 grid: cells maps (lr, batch) → (median, n_reached) of 3 runs."""
    rows = []
    for r in study.runs:
        f = dict(r.factors)
        median, reached = cells[(f["optimizer.lr"], f["budget.batch_size"])]
        rows.append({"config": r.config, "optimizer.lr": ag.format_value(f["optimizer.lr"]),
                     "budget.batch_size": ag.format_value(f["budget.batch_size"]),
                     "metric": metric, "n_used": 3, "n_reached": reached, "median": median,
                     "mean": None if reached < 3 else median})
    return pl.DataFrame(rows).unique("config", maintain_order=True)


def test_heatmap_of_a_censored_metric_shows_medians_and_says_not_reached():
    study = parse_config({"seeds": 1, "studies": [{"name": "g", "grid": {
        "optimizer.lr": [0.1, 0.01], "budget.batch_size": [16, 64]}}]}).studies[0]
    cells = {(0.1, 16): (4.0, 3), (0.1, 64): (6.0, 2), (0.01, 16): (float("inf"), 1),
             (0.01, 64): (float("inf"), 0)}
    svg = figures.heatmap(_grid_summary(study, "epochs_to_target", cells), study,
                          "epochs_to_target")
    assert "median over seeds" in svg and "mean over seeds" not in svg
    assert svg.count("not reached") == 2  # the two cells whose median run never got there
    assert "6.0" in svg  # a median although one run of three never reached the target
    assert "Learning rate" in svg and "Batch size" in svg  # readable axes, not spec paths


def test_heatmap_of_an_ordinary_metric_says_mean():
    study = parse_config({"seeds": 1, "studies": [{"name": "g", "grid": {
        "optimizer.lr": [0.1, 0.01], "budget.batch_size": [16, 64]}}]}).studies[0]
    cells = {k: (0.5, 3) for k in [(0.1, 16), (0.1, 64), (0.01, 16), (0.01, 64)]}
    svg = figures.heatmap(_grid_summary(study, "final_train_loss", cells), study,
                          "final_train_loss")
    assert "mean over seeds" in svg and "not reached" not in svg


# --- the data-parallel speed-up in words --------------------------------------------------------


def _parallel_summary(times):
    return pl.DataFrame([{"config": f"device.world_size={w}", "device.world_size": str(w),
                          "metric": "train_time_s", "mean": t, "ci_low": t, "ci_high": t}
                         for w, t in times.items()])


def test_speedup_note_says_what_it_measured_on_and_why_there_is_no_speedup():
    summary = _parallel_summary({1: 0.14, 2: 0.98, 4: 4.41})
    note = figures.speedup_note(summary, {"device_name": "x86_64", "cpu_count": 2, "threads": 1})
    assert note.startswith("Measured on x86_64, 2 CPU cores, 1 thread per worker: 2 workers "
                           "took 7.0× the 1-worker time (speed-up 0.14×, efficiency 7 %); "
                           "4 workers took 31.5×")
    assert "no speed-up is possible on this machine" in note
    assert "a core or GPU per worker" in note


def test_speedup_note_without_a_core_count_leaves_it_out():
    summary = _parallel_summary({1: 0.14, 2: 0.98})
    note = figures.speedup_note(summary, {"device_name": "x86_64", "cpu_count": None,
                                          "threads": 1})
    assert note.startswith("Measured on x86_64, 1 thread per worker: 2 workers took 7.0×")
    assert "CPU core" not in note


def test_speedup_note_of_a_real_speedup_does_not_explain_it_away():
    note = figures.speedup_note(_parallel_summary({1: 1.0, 2: 0.625, 4: 0.3125}),
                                {"device_name": "NVIDIA A100", "threads": 4})
    assert note.startswith("Measured on NVIDIA A100, 4 threads per worker: 2 workers took 0.6× "
                           "the 1-worker time (speed-up 1.60×, efficiency 80 %)")
    assert "no speed-up is possible" not in note
    assert figures.speedup_note(_parallel_summary({2: 1.0, 4: 0.5})) == ""  # no 1-worker time


def test_speedup_figure_carries_the_note_under_it():
    study = parse_config({"seeds": 1, "studies": [
        {"name": "p", "grid": {"device.world_size": [1, 2]}}]}).studies[0]
    summary = _parallel_summary({1: 0.14, 2: 0.98})
    figs = {f.key: f for f in figures.study_figures(
        study, summary, pl.DataFrame(), ["device.world_size=1", "device.world_size=2"],
        machine={"device_name": "x86_64", "cpu_count": 2, "threads": 1})}
    assert figs["speedup"].caption == "Dashed: ideal linear speed-up."
    assert figs["speedup"].note.startswith("Measured on x86_64, 2 CPU cores")
