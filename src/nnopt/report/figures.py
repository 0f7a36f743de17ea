"""Figures for the report: matplotlib (Agg) → small inline SVG strings, from summary tables.

Every function takes already-aggregated frames (summary rows, curve bands), never raw runs,
so figure cost does not grow with seeds; lines per figure are capped (`MAX_LINES`). Colours
come from one palette per study keyed by configuration, so a configuration has the same
colour in every figure. Text stays text in the SVG (svg.fonttype none) to keep files small.

Extra per-study sections (e.g. loss landscapes) are `SectionFn`s, `(study, results_dir) ->
list[Figure]`, handed to the report by its caller (the `nnopt report` verb); the report shows
what each returns under the study, and skips a section whose function returns []. No
registry: this package never imports the layers that provide sections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from nnopt.analysis import stats
from nnopt.analysis.labels import display_label, label_title, pretty_key, short_labels
from nnopt.config.metrics import metric_info
from nnopt.config.study_rules import format_value
from nnopt.config.studies import Study
from nnopt.report.plotting import (
    log_if_decades,
    new_figure,
    palette,
    styled,
    tex_safe,
    to_svg,
)
from nnopt.report.study_figures import (
    MAX_POINTS,
    generalization_gap,
    optimizer_memory,
    speedup,
    speedup_note,
)

__all__ = [
    "Figure",
    "MAX_POINTS",
    "MAX_LINES",
    "SectionFn",
    "extra_sections",
    "palette",
    "short_labels",
    "display_label",
    "label_title",
    "pretty_key",
    "speedup_note",
    "curve_bands",
    "learning_curves",
    "metric_points",
    "heatmap",
    "generalization_gap",
    "speedup",
    "optimizer_memory",
    "study_figures",
    "forest_plot",
    "to_svg",
]

MAX_LINES = 8  # learning-curve lines per panel
@dataclass(frozen=True)
class Figure:
    key: str  # stable id within a study, e.g. "curves"
    title: str
    svg: str  # inline <svg> markup (trusted: produced here or by a registered section)
    caption: str = ""  # above the figure: what it shows
    note: str = ""  # under the figure: what the reader should take from it


# --- extra per-study sections ----------------------------------------------------------------

SectionFn = Callable[[Study, Path], "list[Figure]"]


def extra_sections(study: Study, results_dir: Path, sections: Sequence[SectionFn]) -> list[Figure]:
    """What each section function has for `study`, in order (a function returns [] for none)."""
    out: list[Figure] = []
    for fn in sections:
        out.extend(fn(study, Path(results_dir)) or [])
    return out


# --- learning curves ---------------------------------------------------------------------------


def curve_bands(curves: pl.DataFrame, study: str, run_ids=None,
                columns=("train_loss", "val_accuracy", "train_accuracy")) -> pl.DataFrame:
    """Mean and 95% t-interval across seeds per (config, step): the band a curve figure draws.
    `run_ids` limits it to some runs (the report passes the ok ones, as in its tables)."""
    present = [c for c in columns if c in curves.columns]
    keep = pl.col("run_id").is_in(list(run_ids)) if run_ids is not None else pl.lit(True)
    bands = (
        curves.lazy()
        .filter((pl.col("study") == study) & keep)
        .group_by("config", "step")
        .agg(pl.col("epoch").mean(),
             *[pl.col(c).mean().alias(f"{c}_mean") for c in present],
             *[pl.col(c).std().alias(f"{c}_std") for c in present],
             *[pl.col(c).count().alias(f"{c}_n") for c in present])
        .sort("config", "step")
        .collect()
    )
    for c in present:
        low, high = stats.t_interval(bands[f"{c}_mean"], bands[f"{c}_std"], bands[f"{c}_n"])
        bands = bands.with_columns(pl.Series(f"{c}_low", low), pl.Series(f"{c}_high", high))
    return bands


@styled
def learning_curves(bands: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                    colours: Mapping[str, tuple], legend_title: str = "") -> str | None:
    """Train loss and validation accuracy per epoch, mean with a 95% CI band across seeds."""
    if bands.height == 0:
        return None
    fig, (left, right) = new_figure(ncols=2)
    shown = [c for c in order if c in set(bands["config"])][:MAX_LINES]
    for config in shown:
        part = bands.filter(pl.col("config") == config)
        x = part["epoch"].to_numpy()
        for ax, col, scale in ((left, "train_loss", 1), (right, "val_accuracy", 100)):
            if f"{col}_mean" not in part.columns:
                continue
            y = part[f"{col}_mean"].to_numpy() * scale
            ax.plot(x, y, color=colours[config], lw=1.2, label=tex_safe(labels[config]))
            lo, hi = (part[f"{col}_{k}"].to_numpy() * scale for k in ("low", "high"))
            # With 2-3 seeds a t band can leave the possible range; draw only the possible.
            lowest = np.nanmin(y) if np.isfinite(y).any() else 0.0
            floor, ceil = (0.0, 100.0) if col == "val_accuracy" else (0.5 * lowest, np.inf)
            lo, hi = np.clip(lo, floor, ceil), np.clip(hi, floor, ceil)
            ax.fill_between(x, lo, hi, color=colours[config], alpha=0.15, lw=0)
        if "train_accuracy_mean" in part.columns:  # train beside validation: the gap shows
            right.plot(x, part["train_accuracy_mean"].to_numpy() * 100, color=colours[config],
                       lw=0.8, ls="--")
    left.set(xlabel="Epoch", ylabel="Train loss", title="Training loss")
    if "train_loss_mean" in bands.columns:
        log_if_decades(left, bands["train_loss_mean"].to_list())
    right.set(xlabel="Epoch", ylabel="Accuracy (%)",
              title="Validation accuracy (train: dashed)")
    handles, names = left.get_legend_handles_labels()
    # Below both panels, so that no curve is hidden behind it.
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
               ncols=min(4, len(names)), title=tex_safe(legend_title) or None)
    fig.tight_layout()
    return to_svg(fig)


# --- one metric across configurations ----------------------------------------------------------


def _points_panel(ax, part: pl.DataFrame, metric: str, shown: list[str],
                  colours: Mapping[str, tuple]) -> None:
    """One panel: each configuration's mean with its 95% CI (censored: median and IQR)."""
    info = metric_info(metric)
    rows = {r["config"]: r for r in part.filter(pl.col("metric") == metric).iter_rows(named=True)}
    centre_key, lo_key, hi_key = (("median", "q25", "q75") if info.censored
                                  else ("mean", "ci_low", "ci_high"))
    xs, ys, los, his, cols = [], [], [], [], []
    for y, config in enumerate(reversed(shown)):
        r = rows.get(config)
        centre = r[centre_key] if r else None
        if centre is None or not np.isfinite(centre):
            ax.annotate("not reached" if info.censored else "no data", (0.01, y),
                        xycoords=("axes fraction", "data"), fontsize=6, va="center")
            continue
        lo, hi = (r[k] if r[k] is not None and np.isfinite(r[k]) else centre
                  for k in (lo_key, hi_key))
        xs.append(centre * info.scale)
        los.append(max(0.0, (centre - lo) * info.scale))
        his.append(max(0.0, (hi - centre) * info.scale))
        ys.append(y)
        cols.append(colours[config])
    if xs:  # a few collections however many points (errorbar makes artists per point)
        xs, los, his = np.array(xs), np.array(los), np.array(his)
        ax.hlines(ys, xs - los, xs + his, colors=cols, lw=1)
        for ends in (xs - los, xs + his):
            ax.scatter(ends, ys, c=cols, marker="|", s=20, lw=1)
        ax.scatter(xs, ys, c=cols, s=16, zorder=3)
        log_if_decades(ax, xs, axis="x")
    what = "median, IQR" if info.censored else "mean, 95% CI"
    ax.set_xlabel(info.axis_label)
    ax.set_title(f"{info.label}\n({what})", fontsize=8)  # two lines: panels sit side by side
    ax.set_ylim(-0.6, len(shown) - 0.4)


@styled
def metric_points(summary: pl.DataFrame, metrics, order: list[str],
                  labels: Mapping[str, str], colours: Mapping[str, tuple],
                  ylabel: str = "") -> str | None:
    """The compared metrics side by side, one panel each, configurations on a shared y axis
    (labels are laid out once, which is most of a figure's cost)."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    present = set(summary["config"])
    shown = [c for c in order if c in present][:MAX_POINTS]
    if not shown or not metrics:
        return None
    fig, axes = new_figure(height=1.0 + 0.2 * len(shown), ncols=len(metrics))
    for ax, metric in zip(axes, metrics):
        _points_panel(ax, summary, metric, shown, colours)
    axes[0].set_yticks(range(len(shown)), [tex_safe(labels[c]) for c in reversed(shown)])
    axes[0].set_ylabel(tex_safe(ylabel))
    for ax in axes[1:]:
        ax.set_yticks(range(len(shown)), [""] * len(shown))
    return to_svg(fig)


def _text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (by luminance: a reversed colour map puts light
    colours at low values, so the normalized value alone picks the wrong ink)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _heatmap_grid(part: pl.DataFrame, keys: list[str], fmt: dict, metric: str):
    """(values, not_reached): the cell values (mean, or median for time-to-target) and the
    cells whose median run never reached the target."""
    info = metric_info(metric)
    centre = "median" if info.censored else "mean"
    shape = (len(fmt[keys[0]]), len(fmt[keys[1]]))
    grid, not_reached = np.full(shape, np.nan), np.zeros(shape, dtype=bool)
    for r in part.iter_rows(named=True):
        cell = fmt[keys[0]].index(r[keys[0]]), fmt[keys[1]].index(r[keys[1]])
        value = r[centre]
        if value is not None and math.isfinite(value):
            grid[cell] = value * info.scale
        elif info.censored and r["n_used"]:
            not_reached[cell] = True
    return grid, not_reached


@styled
def heatmap(summary: pl.DataFrame, study: Study, metric: str) -> str | None:
    """Two-factor grids (e.g. learning rate × batch size): mean of `metric` per cell (median
    for time-to-target, whose runs that never reach the target are censored)."""
    keys = list(study.grid)
    if len(study.factor_keys) != 2 or len(keys) != 2:
        return None
    info = metric_info(metric)
    part = summary.filter(pl.col("metric") == metric)
    if part.height == 0:
        return None
    values = {k: sorted({v for r in study.runs for kk, v in r.factors if kk == k},
                        key=lambda v: (isinstance(v, str), v)) for k in keys}
    fmt = {k: [format_value(v) for v in values[k]] for k in keys}
    grid, not_reached = _heatmap_grid(part, keys, fmt, metric)
    fig, (ax,) = new_figure(width=4.2, height=min(7.0, 0.9 + 0.3 * grid.shape[0]))
    ax.set_facecolor("#eeeeee")  # cells without a value are grey, not blank paper
    cmap = "viridis" if info.higher_is_better else "viridis_r"
    # pcolormesh draws vector cells (imshow would embed a raster image in the SVG).
    im = ax.pcolormesh(np.arange(grid.shape[1] + 1) - 0.5, np.arange(grid.shape[0] + 1) - 0.5,
                       np.ma.masked_invalid(grid), cmap=cmap)
    ax.invert_yaxis()
    if grid.size <= 100:  # numbers in the cells while they stay readable
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.{info.digits}f}", ha="center", va="center", fontsize=6,
                        color=_text_colour(im.cmap(im.norm(v))))
            elif not_reached[i, j]:
                ax.text(j, i, "not reached", ha="center", va="center", fontsize=6,
                        color="#333333")
    for axis, labels_, set_ticks in ((0, fmt[keys[0]], ax.set_yticks),
                                     (1, fmt[keys[1]], ax.set_xticks)):
        step = max(1, math.ceil(len(labels_) / 20))  # at most ~20 readable tick labels
        ticks = range(0, len(labels_), step)
        set_ticks(list(ticks), [tex_safe(labels_[i]) for i in ticks])
    over = "median" if info.censored else "mean"
    ax.set(ylabel=tex_safe(study.columns.get(keys[0], pretty_key(keys[0]))),
           xlabel=tex_safe(study.columns.get(keys[1], pretty_key(keys[1]))),
           title=f"{info.axis_label}, {over} over seeds")
    bar = fig.colorbar(im, ax=ax, label=info.axis_label, shrink=0.9)
    bar.solids.set_rasterized(False)  # matplotlib rasterizes the colour ramp by default
    return to_svg(fig)


def study_figures(study: Study, summary: pl.DataFrame, bands: pl.DataFrame,
                  order: list[str], curve_order: list[str] | None = None,
                  machine: Mapping[str, Any] | None = None) -> list[Figure]:
    """All standard figures of one study (summary and bands already filtered to it).
    `order` lists configurations for point plots (and fixes colours); `curve_order` the
    ones whose learning curves are drawn (default: `order`); `machine` (device_name, cpu_count,
    threads of the study's runs) is what the speed-up caption says it was measured on."""
    all_configs = summary["config"].unique(maintain_order=True).to_list()
    labels, colours = short_labels(summary, study), palette(all_configs)
    labels = {c: labels.get(c, c) for c in all_configs}
    keys = study.factor_keys
    title = label_title(study)
    memory_bars = "optimizer.name" in keys or "optimizer_state_bytes" in study.metrics
    figs = [Figure("curves", "Learning curves",
                   learning_curves(bands, curve_order or order, labels, colours, title),
                   f"Mean over the ok runs' seeds with a 95% CI band; at most {MAX_LINES} "
                   "configurations (best first by the primary metric when there are more).")]
    point_metrics = [m for m in study.metrics
                     if not (memory_bars and m == "optimizer_state_bytes")]  # bars below
    for i in range(0, len(point_metrics), 3):  # at most three panels side by side
        chunk = point_metrics[i:i + 3]
        figs.append(Figure(f"points-{i // 3}", "Compared metrics",
                           metric_points(summary, chunk, order, labels, colours, title),
                           "Each configuration's mean with its 95% CI over seeds "
                           "(time-to-target: median and interquartile range)."))
    figs.append(Figure("heatmap", "Two-factor grid", heatmap(summary, study, study.metrics[0])))
    if "model.dropout" in keys:
        figs.append(Figure("gap", "Generalization gap",
                           generalization_gap(summary, order, labels, colours, title)))
    if "device.world_size" in keys:
        figs.append(Figure("speedup", "Speed-up vs workers", speedup(summary, study),
                           "Dashed: ideal linear speed-up.", speedup_note(summary, machine)))
    if memory_bars:
        figs.append(Figure("memory", "Optimizer-state memory",
                           optimizer_memory(summary, order, labels, colours)))
    return [f for f in figs if f.svg]


# --- claims -----------------------------------------------------------------------------------

_VERDICT_COLOURS = {"supported": "#1f7a3a", "contradicted": "#b3261e", "equivalent": "#2f5f8f",
                    "underpowered": "#8a6d00", "inconclusive": "#5f6770"}


@styled
def forest_plot(rows: Sequence[Mapping[str, Any]], margin: float | None = None,
                xlabel: str = "effect") -> str | None:
    """A claim's per-problem effects with their 95% CIs (one row per problem, coloured by its
    verdict), zero and the ±margin band of no relevant difference; rows: problem, effect,
    ci_low, ci_high, verdict. None when no problem has a finite effect."""
    shown = [r for r in rows if r.get("effect") is not None and np.isfinite(r["effect"])]
    if not shown:
        return None
    fig, (ax,) = new_figure(width=4.8, height=0.7 + 0.3 * len(shown))
    y = np.arange(len(shown))[::-1]
    if margin is not None and np.isfinite(margin) and margin > 0:
        ax.axvspan(-margin, margin, color="#d5d9de", alpha=0.6, lw=0, label="±margin")
    ax.axvline(0, color="#5f6770", lw=0.8)
    for yi, r in zip(y, shown):
        colour = _VERDICT_COLOURS.get(r.get("verdict"), "#5f6770")
        low, high = r.get("ci_low"), r.get("ci_high")
        if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
            ax.plot([low, high], [yi, yi], color=colour, lw=1.6)
        ax.plot([r["effect"]], [yi], "s", color=colour, ms=5)
    ax.set_yticks(y, [tex_safe(f"{r['problem']} ({r.get('verdict', '')})") for r in shown])
    ax.set(xlabel=tex_safe(xlabel), title="Effect per problem (95% CI)")
    return to_svg(fig)
