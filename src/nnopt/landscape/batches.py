"""The batches of one run's landscape: what is evaluated, split into resumable parts.

`Snapshots` (flat weights at each evaluation) and `Problem` (model, splits, loss) are the
inputs; `make_planes` builds the random filter-normalized plane and the PCA plane of the
snapshots (Li et al. 2018), `make_evaluator` the batched (or reference) evaluator of the
points, `make_batches` lists the parts (interp1d, trajectory, surface rows)
in output order, `hessian_summary` the extreme eigenvalues at the final weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from nnopt.landscape import surface as ls
from nnopt.landscape.batched import make_batched_evaluator, with_fallback
from nnopt.landscape.tables import LANDSCAPE_SCHEMA, LandscapeSettings

__all__ = [
    "Problem", "Snapshots", "hessian_summary", "make_batches", "make_evaluator", "make_planes",
]


@dataclass(frozen=True)
class Snapshots:
    """Flat weights (T, P) at each evaluation step; row 0 = init, row T-1 = final."""

    weights: Tensor
    steps: tuple[int, ...]
    final_train_loss: float | None = None  # as the re-run's engine measured it


@dataclass(frozen=True)
class Problem:
    """What a landscape is evaluated on: a model, named (x, y) splits and the loss."""

    model: nn.Module
    splits: dict[str, tuple[Tensor, Tensor]]
    loss_fn: ls.LossFn


def _row(kind: str, plane: str | None = None, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(LANDSCAPE_SCHEMA)
    row.update(kind=kind, plane=plane, **values)
    return row


def _pca_axis(coords: Tensor, n: int, margin: float) -> np.ndarray:
    """Grid along one PCA axis covering the trajectory (and 0, the final weights)."""
    lo, hi = min(float(coords.min()), 0.0), max(float(coords.max()), 0.0)
    pad = margin * max(hi - lo, 1e-8)
    return np.linspace(lo - pad, hi + pad, n)


def make_planes(
    problem: Problem, snaps: Snapshots, settings: LandscapeSettings
) -> dict[str, tuple]:
    """plane -> (d1, d2, xs, ys, trajectory coords (T, 2)) for the random and PCA planes."""
    center = snaps.weights[-1]
    ls.set_flat_params(problem.model, center)
    gen = torch.Generator().manual_seed(settings.direction_seed)
    d1, d2 = ls.random_direction(problem.model, gen), ls.random_direction(problem.model, gen)
    # Least-squares coordinates in the (non-orthogonal) random plane: nearly zero, which is
    # why the trajectory is shown in the PCA plane (Li et al. 2018, §7).
    basis = torch.stack([d1, d2], dim=1).double()  # (P, 2)
    offsets = (snaps.weights - center).double().T  # (P, T)
    random_coords = torch.linalg.lstsq(basis, offsets).solution.T.to(center.dtype)  # (T, 2)
    r, n = settings.grid_range, settings.grid_points
    axis = np.linspace(-r, r, n)
    pca = ls.pca_plane(snaps.weights, center)
    pca_xs = _pca_axis(pca.coords[:, 0], n, settings.pca_margin)
    pca_ys = _pca_axis(pca.coords[:, 1], n, settings.pca_margin)
    return {
        "random": (d1, d2, axis, axis, random_coords),
        "pca": (pca.directions[0], pca.directions[1], pca_xs, pca_ys, pca.coords),
        "_pca_ratio": pca.explained_variance_ratio,
    }


def make_evaluator(problem: Problem, settings: LandscapeSettings) -> ls.Evaluator:
    """`settings.points_per_pass` points per batched pass (nnopt.landscape.batched), or the
    one-point-at-a-time reference when it is 1 (or vmap cannot run the model)."""
    args = (problem.model, problem.splits, problem.loss_fn, settings.chunk_size)
    reference = ls.make_evaluator(*args)
    if settings.points_per_pass <= 1:
        return reference
    fast = make_batched_evaluator(*args, max_points=settings.points_per_pass)
    return with_fallback(fast, reference)


def make_batches(
    problem: Problem, snaps: Snapshots, settings: LandscapeSettings, planes: dict
) -> list:
    """[(part name, compute() -> rows)] in output order; each is one resumable batch."""
    evaluate = make_evaluator(problem, settings)
    # The 2-D surfaces on the train split only: the contours show the train loss, and the
    # validation split's ~880 points per run were never shown (their val_loss is null).
    train_only = replace(problem, splits={"train": problem.splits["train"]})
    on_train = make_evaluator(train_only, settings)
    theta0, center = snaps.weights[0], snaps.weights[-1]
    alphas = np.linspace(settings.alpha_min, settings.alpha_max, settings.alpha_points)

    def interp() -> list[dict]:
        return [_row("interp1d", **r) for r in ls.interpolate_1d(evaluate, theta0, center, alphas)]

    def trajectory() -> list[dict]:
        losses = evaluate(snaps.weights)  # actual losses along the path
        return [
            _row("trajectory", plane, x=float(c[0]), y=float(c[1]), step=s, **loss)
            for plane in ("random", "pca")
            for c, s, loss in zip(planes[plane][4], snaps.steps, losses)
        ]

    out: list[tuple[str, Callable[[], list[dict]]]] = [
        ("interp1d", interp),
        ("trajectory", trajectory),
    ]
    for plane in ("random", "pca"):
        d1, d2, xs, ys, _ = planes[plane]
        for start in range(0, len(ys), settings.rows_per_batch):
            rows = range(start, min(start + settings.rows_per_batch, len(ys)))

            def surface(plane=plane, d1=d1, d2=d2, xs=xs, ys=ys, rows=rows) -> list[dict]:
                found = ls.surface_rows(on_train, center, d1, d2, xs, ys, rows)
                return [_row("surface2d", plane, **r) for r in found]

            out.append((f"surface2d-{plane}-rows{rows.start:03d}-{rows.stop - 1:03d}", surface))
    return out


def hessian_summary(
    problem: Problem, center: Tensor, settings: LandscapeSettings
) -> dict[str, Any]:
    ls.set_flat_params(problem.model, center)
    x, y = problem.splits["train"]
    top, bottom = ls.hessian_extreme_eigenvalues(
        problem.model, x, y, problem.loss_fn, iters=settings.hessian_iters,
        tol=settings.hessian_tol, seed=settings.direction_seed, chunk_size=settings.chunk_size,
        method=settings.hessian_method,
    )  # fmt: skip
    ratio = abs(bottom / top) if top != 0 and math.isfinite(top) else None
    return {
        "hessian_max_eigenvalue": top,
        "hessian_min_eigenvalue": bottom,
        "hessian_eigenvalue_ratio": ratio,
    }
