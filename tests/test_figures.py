"""nnopt.figures: SVG output, escaping, consistent colours, bands, the extra-section hook."""

import re

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from fixtures.make_runs import SMALL_CONFIG, make_runs
from nnopt import aggregate as ag
from nnopt import figures
from nnopt.studies import parse_config


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


def test_extra_sections_registry_feeds_the_study(world, tmp_path):
    config, *_ = world
    seen = []

    def landscape(study, results_dir):
        seen.append((study.name, results_dir))
        return [figures.Figure("landscape", "Loss landscape", "<svg></svg>")] if study.name == "activation" else []

    figures.register_extra_section("test-landscape", landscape)
    try:
        out = figures.extra_sections(config.study("activation"), tmp_path)
        none = figures.extra_sections(config.study("hyperparameter_grid"), tmp_path)
    finally:
        figures.EXTRA_SECTIONS.pop("test-landscape")
    assert [f.key for f in out] == ["landscape"] and none == []
    assert seen[0] == ("activation", tmp_path)
