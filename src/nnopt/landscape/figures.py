"""Landscape and gradient-health figures (matplotlib → SVG text) and tables; no torch.

* `contour_svg`: one run's loss surface on the random filter-normalized plane and on the
  PCA plane of its weight snapshots, with the optimization path drawn on the PCA plane.
* `interpolation_svg`: train/val loss along θ(α) = (1-α)·θ_init + α·θ_final, one line per
  configuration (Goodfellow et al. 2015).
* `gradient_heatmap_svg` (nnopt.landscape.gradients, re-exported): per-layer gradient norms
  (layer × step, log colour scale shared by the panels), one panel per configuration, so
  vanishing/exploding gradients show as dark/bright bands.
* `sharpness_table`: Hessian eigenvalues, path barrier and the seeds' final-loss spread.
* `landscape_section`: everything above for one study, read from the result files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from nnopt.landscape.gradients import (
    gradient_heatmap_runs,
    gradient_heatmap_svg,
    run_weight_rows,
    weight_rows,
)
from nnopt.landscape.plotting import figure, svg
from nnopt.landscape.tables import (
    final_loss_spread,
    read_failures,
    read_landscapes,
    read_sharpness,
)

__all__ = [
    "contour_svg",
    "interpolation_svg",
    "gradient_heatmap_svg",
    "gradient_heatmap_runs",
    "weight_rows",
    "short_label",
    "sharpness_table",
    "landscape_section",
]


def _grid(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long surface rows -> xs (nx,), ys (ny,), loss (ny, nx)."""
    frame = frame.sort("y", "x")
    xs, ys = np.unique(frame["x"].to_numpy()), np.unique(frame["y"].to_numpy())
    return xs, ys, frame["train_loss"].to_numpy().reshape(len(ys), len(xs))


def _levels(loss: np.ndarray) -> np.ndarray:
    """Log-spaced contour levels from the minimum up to a cap, so that the basin shows
    even when far corners of the plane explode (the cap is 20× the minimum)."""
    finite = loss[np.isfinite(loss)]
    lo = max(float(finite.min()), 1e-6)
    hi = min(float(finite.max()), 20 * lo)
    return np.geomspace(lo, max(hi, lo * (1 + 1e-6)), 14)  # a flat plane still gets levels


def _tick_labels(values: np.ndarray) -> list[str]:
    """The fewest significant digits (3 to 8) that keep neighbouring labels distinct."""
    for digits in range(3, 9):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _contour_panel(ax, frame: pl.DataFrame, xlabel: str, ylabel: str):
    """Filled log-scale contours of one plane, its own levels and colour bar."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FormatStrFormatter

    xs, ys, loss = _grid(frame)
    levels = _levels(loss)
    # Non-finite points (a diverging region) stay blank; the rest is clipped to the levels.
    shown = np.ma.masked_invalid(np.clip(loss, levels[0], levels[-1]))
    filled = ax.contourf(xs, ys, shown, levels=levels, norm=LogNorm(), cmap="viridis")
    filled.set_rasterized(True)  # the filled bands as one small image; lines stay vector
    ax.contour(xs, ys, shown, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    ax.plot([0], [0], marker="*", color="red", markersize=10, label="final weights")
    finite = loss[np.isfinite(loss)]
    if finite.size and np.ptp(finite) <= 1e-6 * max(1.0, float(np.abs(finite).max())):
        # e.g. zero init: zero weight filters give zero filter-normalized directions.
        ax.text(0.5, 0.8, "flat: the loss does not change in this plane", transform=ax.transAxes,
                ha="center", fontsize=7, color="white")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.locator_params(nbins=5)
    for axis in (ax.xaxis, ax.yaxis):  # plain '2e-05' ticks: no offset text over the title
        axis.set_major_formatter(FormatStrFormatter("%.2g"))
    bar = ax.figure.colorbar(filled, ax=ax, shrink=0.9)
    bar.set_ticks(levels[::3], labels=_tick_labels(levels[::3]))
    bar.ax.tick_params(labelsize=7)


def contour_svg(landscape: pl.DataFrame, summary: dict[str, Any], title: str) -> str:
    """Two panels for one run (rows of its `{run_id}.parquet`): random plane, PCA plane + path.

    Each panel has its own colour scale: a short trajectory (a tiny learning rate) spans a
    far smaller loss range than the random plane, and one shared scale would hide it."""
    fig = figure(8.4, 3.4)
    ax_r, ax_p = fig.subplots(1, 2)
    surface = landscape.filter(pl.col("kind") == "surface2d")
    random_plane = surface.filter(pl.col("plane") == "random")
    _contour_panel(ax_r, random_plane, "δ (filter-normalized)", "η (filter-normalized)")
    ax_r.set_title("random directions: train loss (log colour)", fontsize=9)
    pc1 = summary.get("pca_explained_variance_1") or 0
    pc2 = summary.get("pca_explained_variance_2") or 0
    pca_plane = surface.filter(pl.col("plane") == "pca")
    _contour_panel(ax_p, pca_plane, f"1st PC ({pc1:.0%})", f"2nd PC ({pc2:.0%})")
    path = landscape.filter((pl.col("kind") == "trajectory") & (pl.col("plane") == "pca"))
    path = path.sort("step")
    ax_p.plot(path["x"], path["y"], color="orange", marker=".", markersize=4, linewidth=1.2,
              label="training path")  # fmt: skip
    ax_p.plot(path["x"][0], path["y"][0], marker="o", color="orange", markeredgecolor="black",
              label="initial weights")  # fmt: skip
    ax_p.set_title("PCA plane of the weight snapshots", fontsize=9)
    handles, labels = ax_p.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return svg(fig)


def _loss_axis(ax, frames: Sequence[pl.DataFrame]) -> None:
    """Log y when the losses span more than a factor 3 (plain labels: 0.5, 2, 3, not 5×10⁻¹),
    else linear without an offset, so that a narrow range keeps distinct tick labels."""
    from matplotlib.ticker import FormatStrFormatter, ScalarFormatter

    values = np.concatenate([f.select("train_loss", "val_loss").to_numpy().ravel() for f in frames])
    values = values[np.isfinite(values.astype(float)) & (values.astype(float) > 0)].astype(float)
    if values.size and values.max() > 3 * values.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        ax.set_ylabel("loss (log scale)")
    else:
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
        ax.set_ylabel("loss")
    ax.yaxis.set_tick_params(which="both", labelsize=7)


def _legend_columns(labels: Sequence[str], n: int) -> int:
    """Columns for a legend under a ~6 inch figure: fewer when the labels are long."""
    longest = max((len(t) for t in labels), default=1)
    return max(1, min(n, 3, 90 // max(longest, 1)))


def interpolation_svg(curves: Sequence[tuple[str, pl.DataFrame]], title: str) -> str:
    """(label, rows of kind interp1d) per configuration → train (solid) and val (dashed) loss."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig = figure(6.0, 3.4)
    ax = fig.subplots()
    colors = plt.get_cmap("tab10").colors
    for i, (label, frame) in enumerate(curves):
        frame = frame.sort("alpha")
        color = colors[i % len(colors)]
        ax.plot(frame["alpha"], frame["train_loss"], color=color, label=f"{label} (train)")
        if frame["val_loss"].null_count() < frame.height:
            ax.plot(
                frame["alpha"],
                frame["val_loss"],
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{label} (val)",
            )
    for alpha in (0.0, 1.0):
        ax.axvline(alpha, color="grey", linewidth=0.6, linestyle=":")
    _loss_axis(ax, [f for _, f in curves])
    ax.set_xlabel("α   (0 = initial weights, 1 = final weights)")
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, t in enumerate(labels) if t.endswith("(train)")]  # one entry per colour
    names = [labels[i][: -len(" (train)")] for i in keep]
    handles = [handles[i] for i in keep]
    # The line styles in the legend: as a y label they were longer than the axis and clipped.
    handles.append(Line2D([], [], color="black", linewidth=1.5))
    names.append("train")
    if any(t.endswith("(val)") for t in labels):
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1))
        names.append("validation")
    fig.legend(handles, names, loc="outside lower center", ncol=_legend_columns(names, len(names)),
               fontsize=7, frameon=False)  # fmt: skip
    return svg(fig)


def sharpness_table(sharpness: pl.DataFrame, runs: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per landscape run: eigenvalues, path barrier and, given the study's rows of
    runs.parquet, how far apart its seeds' final train losses ended."""
    wanted = ["config", "seed", "hessian_max_eigenvalue", "hessian_min_eigenvalue",
              "hessian_eigenvalue_ratio", "interp_barrier", "interp_monotonic",
              "landscape_final_train_loss", "reproduced"]  # fmt: skip
    table = sharpness.select([c for c in wanted if c in sharpness.columns])
    if runs is None or "config" not in table.columns:
        return table
    spread = final_loss_spread(runs).select(
        "config", "n_seeds", "final_train_loss_std", "final_train_loss_range"
    )
    return table.join(spread, on="config", how="left").sort("config")


def short_label(config: str) -> str:
    """'model.activation=relu' → 'relu'; several factors → 'activation=relu, depth=4',
    'init.name=zero, model.activation=tanh' → 'init=zero, activation=tanh'."""
    parts = [p.partition("=") for p in config.split(", ")]
    if any(not sep for _, sep, _ in parts):
        return config  # 'base' or a label this function does not know
    if len(parts) == 1:
        return parts[0][2]
    return ", ".join(f"{_short_key(k)}={v}" for k, _, v in parts)


def _short_key(key: str) -> str:
    """'model.depth' → 'depth'; 'init.name' → 'init' (a bare 'name' says nothing)."""
    head, _, last = key.rpartition(".")
    return head.rpartition(".")[2] if last in ("name", "kind") and head else last


def _config_order(runs: pl.DataFrame) -> dict[str, int]:
    """Configuration → position in the study (config_index when present)."""
    col = "config_index" if "config_index" in runs.columns else None
    rows = runs.select("config", *([col] if col else [])).unique("config", maintain_order=True)
    return {r[0]: (r[1] if col else i) for i, r in enumerate(rows.iter_rows())}


def _gradient_figures(
    study: str, runs: pl.DataFrame, curves: pl.DataFrame, runs_dir: Path, name
) -> dict[str, str]:
    """{"gradient_norms": svg} from one run per configuration, or {} without layer names."""
    panels = []
    for config, run_id, seed, status in gradient_heatmap_runs(runs, study).iter_rows():
        rows = run_weight_rows(runs_dir, study, run_id)
        curve = curves.filter(pl.col("run_id") == run_id)
        if rows and curve.height:
            note = ", diverged" if status == "diverged" else ""
            panels.append((f"{name(config)} (seed {seed}{note})", curve, rows))
    if not panels:
        return {}
    return {"gradient_norms": gradient_heatmap_svg(panels, f"{study}: per-layer gradient norms")}


def landscape_section(
    study: str,
    runs: pl.DataFrame,
    curves: pl.DataFrame | None,
    runs_dir: str | Path,
    landscape_dir: str | Path | None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A study's landscape block for the report: {"figures": {name: svg}, "tables": {...},
    "missing": [configurations without an ok seed], "failed": {configuration: error}}
    ("missing" and "failed" only when landscape_dir exists).

    Gradient heatmaps need curves + run directories (layer names); contours, interpolation
    and the sharpness table need `landscape_dir` (results/landscape/{study}) to exist.
    `labels` (configuration → the report's display label) names the panels as the rest of
    the report does; a configuration it lacks gets `short_label`."""
    def name(config: str) -> str:
        return (labels or {}).get(config) or short_label(config)

    figures: dict[str, str] = {}
    tables: dict[str, pl.DataFrame] = {}
    if curves is not None:
        figures.update(_gradient_figures(study, runs, curves, Path(runs_dir), name))
    study_dir = Path(landscape_dir) if landscape_dir is not None else None
    if study_dir is None or not study_dir.is_dir():
        return {"figures": figures, "tables": tables}
    sharp = read_sharpness(study_dir)
    study_runs = runs.filter(pl.col("study") == study)
    done = set(sharp["config"]) if "config" in sharp.columns else set()
    # Configurations without a landscape: none of their seeds finished with status ok.
    failed = {f["config"]: f["error"] for f in read_failures(study_dir)}
    missing = [name(c) for c in _config_order(study_runs) if c not in done | set(failed)]
    if not done:
        return {"figures": figures, "tables": tables, "missing": missing, "failed": failed}
    frames = read_landscapes(study_dir)
    interp = []
    order = _config_order(study_runs)
    records = sorted(
        sharp.iter_rows(named=True), key=lambda r: (order.get(r["config"], len(order)), r["config"])
    )
    for record in records:
        rows = frames.filter(pl.col("run_id") == record["run_id"])
        label = name(record["config"])
        figures[f"landscape_{record['run_id']}"] = contour_svg(
            rows, record, f"{study}: {label} (seed {record['seed']})"
        )
        interp.append((label, rows.filter(pl.col("kind") == "interp1d")))
    figures["interpolation"] = interpolation_svg(
        interp, f"{study}: loss from initial to final weights"
    )
    table = sharpness_table(sharp, study_runs)
    table = table.sort(
        pl.col("config").replace_strict(order, default=len(order), return_dtype=pl.Int64)
    )
    tables["sharpness"] = table.with_columns(
        pl.col("config").map_elements(name, return_dtype=pl.String)
    )
    return {"figures": figures, "tables": tables, "missing": missing, "failed": failed}
