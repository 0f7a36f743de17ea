"""Per-layer gradient-norm heatmaps (layer × step, one panel per configuration): vanishing or
exploding gradients show as dark or bright bands (the engine's `layer_grad_norms`, ordered as
the run's `layer_names`). No torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from nnopt.landscape.plotting import figure, svg

__all__ = ["gradient_heatmap_runs", "gradient_heatmap_svg", "run_weight_rows", "weight_rows"]


def gradient_heatmap_runs(runs: pl.DataFrame, study: str) -> pl.DataFrame:
    """One run per configuration to show: the lowest seed that finished (ok or diverged:
    a diverged run shows its exploding gradients up to the divergence)."""
    order = ["config_index", "seed"] if "config_index" in runs.columns else ["config", "seed"]
    return (
        runs.lazy()
        .filter((pl.col("study") == study)
                & pl.col("status").is_in(["ok", "stalled", "diverged"]))
        .sort(order)
        .group_by("config", maintain_order=True)
        .first()
        .select("config", "run_id", "seed", "status")
        .collect()
    )


def weight_rows(
    names: Sequence[str], model: Mapping[str, Any] | None = None
) -> list[tuple[int, str]]:
    """(index into `names`, row label) of the layers to show: Linear/Conv weights.

    Names alone cannot tell a batch-norm scale ('2.weight') from a Linear weight, so with
    the run's model spec the nnopt block layout is used: `depth` hidden blocks of
    [layer, norm?] then the output layer. Any other layout shows every '*.weight'."""
    weights = [i for i, n in enumerate(names) if n.endswith("weight")] or list(range(len(names)))
    depth, bn = (model or {}).get("depth"), bool((model or {}).get("batch_norm"))
    if isinstance(depth, int) and len(weights) == (2 if bn else 1) * depth + 1:
        layers = weights[: (2 if bn else 1) * depth : (2 if bn else 1)] + [weights[-1]]
        return [(i, f"layer {k + 1}") for k, i in enumerate(layers[:-1])] + [(layers[-1], "output")]
    return [(i, names[i]) for i in weights]


def _norm_matrix(
    curve: pl.DataFrame, rows: Sequence[tuple[int, str]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(steps (T,), norms (L, T), row labels) for the chosen parameter rows."""
    curve = curve.filter(pl.col("layer_grad_norms").is_not_null()).sort("step")
    if curve.height == 0 or not rows:
        return np.zeros(0), np.zeros((0, 0)), []
    norms = np.array(curve["layer_grad_norms"].to_list(), dtype=float).T  # (n_params, T)
    return curve["step"].to_numpy(), norms[[i for i, _ in rows]], [label for _, label in rows]


def gradient_heatmap_svg(
    panels: Sequence[tuple[str, pl.DataFrame, Sequence[tuple[int, str]]]], title: str
) -> str:
    """(label, one run's curve rows, its `weight_rows`) per configuration → layer × step maps."""
    from matplotlib import colormaps as matplotlib_cmaps
    from matplotlib.colors import LogNorm

    matplotlib_cmap = matplotlib_cmaps.get_cmap

    data = [(label, *_norm_matrix(curve, rows)) for label, curve, rows in panels]
    data = [d for d in data if d[2].size]
    positive = np.concatenate([d[2][d[2] > 0].ravel() for d in data] + [np.zeros(0)])
    positive = positive if positive.size else np.ones(1)  # every gradient exactly zero
    norm = LogNorm(vmin=max(float(positive.min()), 1e-12), vmax=max(float(positive.max()), 1e-11))
    cmap = matplotlib_cmap("magma").with_extremes(bad="lightgrey")  # grey: a zero gradient
    cols = min(len(data), 3) or 1
    rows = max(1, -(-len(data) // cols))
    fig = figure(3.0 * cols + 0.8, 2.3 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    mesh = None
    for ax, (label, steps, mat, layers) in zip(axes, data):
        edges = np.concatenate([[0], steps]) if len(steps) else np.array([0, 1])
        shown = np.where(mat > 0, mat, np.nan)  # (layers, steps); a zero norm has no log
        mesh = ax.pcolormesh(edges, np.arange(len(layers) + 1), shown, norm=norm, cmap=cmap,
                             edgecolors="face", linewidth=0, rasterized=True)  # fmt: skip
        if not np.any(mat > 0):
            ax.text(0.5, 0.5, "all weight gradients are exactly 0", transform=ax.transAxes,
                    ha="center", va="center", fontsize=7)  # fmt: skip
        ax.set_yticks(np.arange(len(layers)) + 0.5, layers, fontsize=6)
        ax.invert_yaxis()  # the input layer on top, the output layer at the bottom
        ax.set_xlabel("step", fontsize=8)
        ax.set_title(label, fontsize=8)
    for ax in axes[len(data) :]:
        ax.set_axis_off()
    if mesh is not None:
        fig.colorbar(mesh, ax=axes.tolist(), label="gradient L2 norm (log)", shrink=0.9)
    fig.suptitle(title, fontsize=10)
    return svg(fig)


def run_weight_rows(runs_dir: Path, study: str, run_id: str) -> list[tuple[int, str]]:
    """The run's weight rows from its metrics.json (layer_names and the model spec)."""
    try:
        record = json.loads((runs_dir / study / run_id / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    names = record.get("layer_names") or []
    return weight_rows(names, (record.get("spec") or {}).get("model")) if names else []
