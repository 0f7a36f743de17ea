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

import functools
import hashlib
import io
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from nnopt.analysis import stats  # noqa: E402
from nnopt.analysis.aggregate import format_value  # noqa: E402
from nnopt.config.metrics import metric_info  # noqa: E402
from nnopt.config.studies import Study  # noqa: E402

__all__ = [
    "Figure",
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
MAX_POINTS = 40  # configurations per point plot
_STYLE = {
    "svg.fonttype": "none", "svg.hashsalt": "nnopt", "font.size": 8, "axes.titlesize": 9,
    "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 72,
    "font.family": "DejaVu Sans",
}
_COLOURS = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors


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


# --- helpers ----------------------------------------------------------------------------------


def palette(labels) -> dict[str, tuple]:
    return {label: c for label, c in zip(labels, itertools.cycle(_COLOURS))}


def _tex_safe(text: str) -> str:
    """Matplotlib parses $...$ as math; config values are data, so escape the dollars."""
    return str(text).replace("$", r"\$")


# Configuration labels live in nnopt.analysis.labels (the claims use them too); re-exported here.
from nnopt.analysis.labels import display_label, label_title, pretty_key, short_labels  # noqa: E402


_DECIMALS = re.compile(r"(\.\d{2})\d+")


def _short_numbers(match: re.Match) -> str:
    return _DECIMALS.sub(r"\1", match.group(0))


def to_svg(fig) -> str:
    """The figure as compact inline SVG markup with ids made unique to this figure."""
    buf = io.StringIO()
    with plt.rc_context(_STYLE):  # svg.fonttype and hashsalt are read at save time
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'<g id="[^"]*"', "<g", text)  # group ids are never referenced
    # Coordinates to 0.01 pt (path data and x/y only: labels such as 0.0001 stay intact).
    text = re.sub(r' (?:d|x|y|width|height)="[^"]*"', _short_numbers, text)
    text = re.sub(r"\s*\n\s*", " ", text)
    prefix = "f" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    # Several SVGs share one HTML document: matplotlib's ids (clip paths) must not collide.
    text = re.sub(r'id="([^"]+)"', rf'id="{prefix}\1"', text)
    return text.replace("url(#", f"url(#{prefix}").replace('href="#', f'href="#{prefix}')


def _new(width: float = 6.3, height: float = 2.6, ncols: int = 1):
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _styled(fn):
    """Build the figure inside the report's style: titles, axis labels, legends and colour bars
    read rcParams when they are created, so a style applied only at save time (to_svg) would
    reach the tick labels alone and leave titles and legends at matplotlib's larger defaults."""
    @functools.wraps(fn)
    def styled(*args, **kwargs):
        with plt.rc_context(_STYLE):
            return fn(*args, **kwargs)
    return styled


def _log_if_decades(ax, values, axis: str = "y") -> None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0])
    if len(v) and v.max() / v.min() > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


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


@_styled
def learning_curves(bands: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                    colours: Mapping[str, tuple], legend_title: str = "") -> str | None:
    """Train loss and validation accuracy per epoch, mean with a 95% CI band across seeds."""
    if bands.height == 0:
        return None
    fig, (left, right) = _new(ncols=2)
    shown = [c for c in order if c in set(bands["config"])][:MAX_LINES]
    for config in shown:
        part = bands.filter(pl.col("config") == config)
        x = part["epoch"].to_numpy()
        for ax, col, scale in ((left, "train_loss", 1), (right, "val_accuracy", 100)):
            if f"{col}_mean" not in part.columns:
                continue
            y = part[f"{col}_mean"].to_numpy() * scale
            ax.plot(x, y, color=colours[config], lw=1.2, label=_tex_safe(labels[config]))
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
        _log_if_decades(left, bands["train_loss_mean"].to_list())
    right.set(xlabel="Epoch", ylabel="Accuracy (%)",
              title="Validation accuracy (train: dashed)")
    handles, names = left.get_legend_handles_labels()
    # Below both panels, so that no curve is hidden behind it.
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
               ncols=min(4, len(names)), title=_tex_safe(legend_title) or None)
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
        _log_if_decades(ax, xs, axis="x")
    what = "median, IQR" if info.censored else "mean, 95% CI"
    ax.set_xlabel(info.axis_label)
    ax.set_title(f"{info.label}\n({what})", fontsize=8)  # two lines: panels sit side by side
    ax.set_ylim(-0.6, len(shown) - 0.4)


@_styled
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
    fig, axes = _new(height=1.0 + 0.2 * len(shown), ncols=len(metrics))
    for ax, metric in zip(axes, metrics):
        _points_panel(ax, summary, metric, shown, colours)
    axes[0].set_yticks(range(len(shown)), [_tex_safe(labels[c]) for c in reversed(shown)])
    axes[0].set_ylabel(_tex_safe(ylabel))
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


@_styled
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
    fig, (ax,) = _new(width=4.2, height=min(7.0, 0.9 + 0.3 * grid.shape[0]))
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
        set_ticks(list(ticks), [_tex_safe(labels_[i]) for i in ticks])
    over = "median" if info.censored else "mean"
    ax.set(ylabel=_tex_safe(study.columns.get(keys[0], pretty_key(keys[0]))),
           xlabel=_tex_safe(study.columns.get(keys[1], pretty_key(keys[1]))),
           title=f"{info.axis_label}, {over} over seeds")
    bar = fig.colorbar(im, ax=ax, label=info.axis_label, shrink=0.9)
    bar.solids.set_rasterized(False)  # matplotlib rasterizes the colour ramp by default
    return to_svg(fig)


# --- study-specific figures -------------------------------------------------------------------


def _metric_rows(summary: pl.DataFrame, metric: str) -> dict[str, dict]:
    return {r["config"]: r for r in summary.filter(pl.col("metric") == metric).iter_rows(named=True)}


@_styled
def generalization_gap(summary: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                       colours: Mapping[str, tuple], xlabel: str = "") -> str | None:
    """Final train accuracy beside test accuracy per configuration (dropout's trade-off)."""
    train, test = (_metric_rows(summary, m) for m in ("final_train_accuracy", "test_accuracy"))
    shown = [c for c in order if c in train and c in test][:MAX_POINTS]
    if not shown:
        return None
    fig, (ax,) = _new(height=2.4)
    x = np.arange(len(shown))
    for offset, rows, name, alpha in ((-0.2, train, "train", 0.45), (0.2, test, "test", 1.0)):
        means = [(rows[c]["mean"] or np.nan) * 100 for c in shown]
        err = [[(rows[c]["mean"] or 0) * 100 - (rows[c]["ci_low"] or rows[c]["mean"] or 0) * 100
                for c in shown],
               [(rows[c]["ci_high"] or rows[c]["mean"] or 0) * 100 - (rows[c]["mean"] or 0) * 100
                for c in shown]]
        ax.bar(x + offset, means, 0.38, yerr=err, capsize=2, label=name, alpha=alpha,
               color=[colours[c] for c in shown])
    finite = [v for c in shown for v in ((train[c]["mean"] or np.nan), (test[c]["mean"] or np.nan))
              if np.isfinite(v)]
    if finite:
        ax.set_ylim(max(0, min(finite) * 100 - 5), min(100, max(finite) * 100 + 2))
    ax.set_xticks(x, [_tex_safe(labels[c]) for c in shown])
    ax.set_xlabel(_tex_safe(xlabel) or "Configuration")
    ax.set(ylabel="Accuracy (%)", title="Train (light) vs test (dark) accuracy: the generalization gap")
    return to_svg(fig)


def _times_by_workers(summary: pl.DataFrame) -> dict[int, dict] | None:
    """Workers → the training-time summary row; None without a 1-worker time to compare with."""
    key = "device.world_size"
    rows = _metric_rows(summary, "train_time_s")
    by_w = {int(r[key]): r for r in rows.values() if r.get(key) not in (None, "")}
    if 1 not in by_w or len(by_w) < 2 or by_w[1]["mean"] is None:
        return None
    return by_w


def _plural(n, word: str) -> str:
    return f"{n} {word}" if str(n) == "1" else f"{n} {word}s"


def _measured_on(machine: Mapping[str, Any]) -> str:
    """'x86_64, 2 CPU cores, 1 thread per worker' from what the runs recorded; a value the
    runs did not record (older results have no cpu_count) is left out."""
    parts = [str(machine.get("device_name") or "this machine")]
    if machine.get("cpu_count"):
        parts.append(_plural(machine["cpu_count"], "CPU core"))
    if machine.get("threads"):
        parts.append(f"{_plural(machine['threads'], 'thread')} per worker")
    return ", ".join(parts)


def speedup_note(summary: pl.DataFrame, machine: Mapping[str, Any] | None = None) -> str:
    """The speed-up figure in words: where it was measured, each worker count's time against
    one worker, and why a machine without a core per worker shows no speed-up ('' without a
    1-worker time)."""
    by_w = _times_by_workers(summary)
    if by_w is None:
        return ""
    t1 = by_w[1]["mean"]
    steps, speedups = [], []
    for w in sorted(by_w)[1:]:
        tw = by_w[w]["mean"]
        if not tw:
            continue
        speedups.append(t1 / tw)
        steps.append(f"{w} workers took {tw / t1:.1f}× the 1-worker time (speed-up "
                     f"{t1 / tw:.2f}×, efficiency {100 * t1 / tw / w:.0f} %)")
    if not steps:
        return ""
    note = f"Measured on {_measured_on(machine or {})}: " + "; ".join(steps) + "."
    if max(speedups) < 1:
        note += (" With more workers than cores, or tiny per-step compute, the all-reduce costs "
                 "more than the split saves, so no speed-up is possible on this machine; real "
                 "speed-ups need a core or GPU per worker and enough compute per step.")
    return note


@_styled
def speedup(summary: pl.DataFrame, study: Study) -> str | None:
    """Training-time speed-up over one worker against the number of workers, with the ideal."""
    by_w = _times_by_workers(summary)
    if by_w is None:
        return None
    ws = sorted(by_w)
    t1 = by_w[1]["mean"]
    sp = [t1 / by_w[w]["mean"] if by_w[w]["mean"] else np.nan for w in ws]
    # Bars from the interval of each time (the 1-worker mean held fixed).
    lo = [t1 / by_w[w]["ci_high"] if by_w[w]["ci_high"] else s for w, s in zip(ws, sp)]
    hi = [t1 / by_w[w]["ci_low"] if by_w[w]["ci_low"] else s for w, s in zip(ws, sp)]
    fig, (ax,) = _new(width=4.0, height=2.6)
    ax.plot(ws, ws, "--", color="grey", lw=1, label="ideal (linear)")
    ax.errorbar(ws, sp, yerr=[np.subtract(sp, lo), np.subtract(hi, sp)], fmt="o-",
                color=_COLOURS[0], capsize=2, label="measured")
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.set(xlabel="Workers (data-parallel processes)", ylabel="Speed-up (×)",
           title="Speed-up of training time vs workers")
    ax.legend(frameon=False)
    return to_svg(fig)


@_styled
def optimizer_memory(summary: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                     colours: Mapping[str, tuple]) -> str | None:
    """Optimizer-state memory per configuration (bytes the optimizer keeps beside weights)."""
    rows = _metric_rows(summary, "optimizer_state_bytes")
    shown = [c for c in order if c in rows and rows[c]["mean"] is not None][:MAX_POINTS]
    if not shown:
        return None
    info = metric_info("optimizer_state_bytes")
    fig, (ax,) = _new(height=0.6 + 0.22 * len(shown))
    y = np.arange(len(shown))[::-1]
    ax.barh(y, [rows[c]["mean"] * info.scale for c in shown], color=[colours[c] for c in shown])
    ax.set_yticks(y, [_tex_safe(labels[c]) for c in shown])
    ax.set(xlabel=info.axis_label, title="Optimizer state memory")
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


@_styled
def forest_plot(rows: Sequence[Mapping[str, Any]], margin: float | None = None,
                xlabel: str = "effect") -> str | None:
    """A claim's per-problem effects with their 95% CIs (one row per problem, coloured by its
    verdict), zero and the ±margin band of no relevant difference; rows: problem, effect,
    ci_low, ci_high, verdict. None when no problem has a finite effect."""
    shown = [r for r in rows if r.get("effect") is not None and np.isfinite(r["effect"])]
    if not shown:
        return None
    fig, (ax,) = _new(width=4.8, height=0.7 + 0.3 * len(shown))
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
    ax.set_yticks(y, [_tex_safe(f"{r['problem']} ({r.get('verdict', '')})") for r in shown])
    ax.set(xlabel=_tex_safe(xlabel), title="Effect per problem (95% CI)")
    return to_svg(fig)
