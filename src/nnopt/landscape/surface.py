"""Loss-landscape math on any `nn.Module`: interpolation, surfaces, PCA planes, Hessian.

Everything here works on a model plus a loss closure over given tensors, with the weights
handled as one flat vector θ of shape (P,) (the order of `model.parameters()`):

* `make_evaluator`: θs (K, P) -> the K points' mean losses on named splits, one point at a
  time: the reference of the batched evaluator (`nnopt.landscape.batched`, K points per pass).
* `interpolate_1d`: L((1-α)·θ0 + α·θ1) along the line from the initial to the final weights
  (Goodfellow, Vinyals & Saxe 2015, "Qualitatively characterizing NN optimization problems").
* `random_direction` + `filter_normalize`: a Gaussian direction whose every filter has the
  norm of the matching weight filter, so that planes of differently scaled nets compare
  (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets", §4).
* `surface_rows`: L(θ* + x·d1 + y·d2) on a grid, one grid row at a time (resumable callers).
* `pca_plane`: the 2-D plane through θ* that best fits the offsets of the weight snapshots,
  and the trajectory's coordinates in it (Li et al. §7: random planes miss the trajectory).
* `hessian_extreme_eigenvalues`: top and bottom Hessian eigenvalues from Hessian-vector
  products (double backward): power iteration (the reference, bottom end by shifting with
  the top one) or scipy's LOBPCG (the default of the landscape job: far fewer products).

No files and no engine here: `nnopt.landscape.job` wires these to training runs.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

__all__ = [
    "LossFn",
    "Evaluator",
    "flat_params",
    "set_flat_params",
    "landscape_mode",
    "mean_loss",
    "make_evaluator",
    "finite_or_nan",
    "filter_normalize",
    "random_direction",
    "interpolate_1d",
    "surface_rows",
    "PcaPlane",
    "pca_plane",
    "hessian_vector_product",
    "hessian_extreme_eigenvalues",
    "HESSIAN_METHODS",
]

# (model output (n, c), targets (n,)) -> mean loss over the n samples, a 0-d tensor.
LossFn = Callable[[Tensor, Tensor], Tensor]
# flat weights of K points (K, P) -> K × {"train_loss": …, "val_loss": …}
Evaluator = Callable[[Tensor], list[dict[str, float]]]


def flat_params(model: nn.Module) -> Tensor:
    """A detached copy of all parameters as one vector (P,)."""
    return parameters_to_vector(model.parameters()).detach().clone()


def set_flat_params(model: nn.Module, flat: Tensor) -> None:
    """Write a flat vector (P,) back into the model's parameters, in place."""
    with torch.no_grad():
        vector_to_parameters(flat.to(next(model.parameters()).dtype), model.parameters())


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextlib.contextmanager
def landscape_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off, batch norm on batch statistics; restores modes and BN buffers after.

    Running statistics belong to the final weights only: at an interpolated or perturbed θ
    they would mis-normalize, so every point is normalized with its own batch statistics
    (one chunk = one batch). The buffers that train mode updates are restored on exit.
    """
    modes = {m: m.training for m in model.modules()}
    saved = {name: buf.clone() for name, buf in model.named_buffers()}
    model.eval()
    for m in model.modules():
        if isinstance(m, _BATCH_NORMS):
            m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.train(mode)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved[name])


def _chunks(n: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def mean_loss(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, chunk_size: int = 2048
) -> float:
    """Sample-weighted mean loss over (x, y), evaluated chunk by chunk in landscape mode."""
    with torch.no_grad(), landscape_mode(model):
        return _mean_loss_in_mode(model, x, y, loss_fn, chunk_size)


def _mean_loss_in_mode(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn,
                       chunk_size: int) -> float:  # fmt: skip
    total, n = 0.0, x.shape[0]
    for part in _chunks(n, chunk_size):
        total += float(loss_fn(model(x[part]), y[part])) * (part.stop - part.start)
    return total / n


def make_evaluator(
    model: nn.Module,
    splits: Mapping[str, tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    chunk_size: int = 2048,
) -> Evaluator:
    """θs (K, P) -> K × {"<split>_loss": mean loss}, one point at a time (writes each θ into
    the model): the reference of the batched fast path (nnopt.landscape.batched). Landscape
    mode is entered once per call (its mode switches and buffer copies cost more than a small
    model's forward); batch norm's outputs use batch statistics, so they are the same."""

    def evaluate(thetas: Tensor) -> list[dict[str, float]]:
        out = []
        with torch.no_grad(), landscape_mode(model):
            for flat in thetas:
                set_flat_params(model, flat)
                out.append(finite_or_nan({
                    f"{name}_loss": _mean_loss_in_mode(model, x, y, loss_fn, chunk_size)
                    for name, (x, y) in splits.items()
                }))  # fmt: skip
        return out

    return evaluate


def finite_or_nan(losses: dict[str, float]) -> dict[str, float]:
    """A diverged point is data (an exploding loss), but keep it finite-or-NaN, never inf."""
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in losses.items()}


def filter_normalize(direction: Sequence[Tensor], weights: Sequence[Tensor]) -> list[Tensor]:
    """Rescale each filter of `direction` to the norm of the matching weight filter.

    A filter is one output unit: row i of a Linear weight (out, in), slice i of a Conv
    weight (out, in, *k). Tensors with ≤ 1 dimension (biases, batch-norm scales) get a zero
    direction, as in Li et al.'s default ("ignore biasbn"): their scale is not comparable.
    """
    out = []
    for d, w in zip(direction, weights, strict=True):
        if w.dim() <= 1:
            out.append(torch.zeros_like(w))
            continue
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)  # (out,)
        w_norm = w.flatten(1).norm(dim=1)  # (out,)
        scale = (w_norm / d_norm).view(-1, *([1] * (w.dim() - 1)))
        out.append(d * scale)
    return out


def random_direction(model: nn.Module, generator: torch.Generator) -> Tensor:
    """A filter-normalized Gaussian direction (P,) for the model's current weights."""
    weights = [p.detach() for p in model.parameters()]
    gauss = [torch.randn(w.shape, generator=generator, dtype=w.dtype) for w in weights]
    return torch.cat([d.flatten() for d in filter_normalize(gauss, weights)])


def interpolate_1d(
    evaluate: Evaluator, theta0: Tensor, theta1: Tensor, alphas: Sequence[float]
) -> list[dict[str, float]]:
    """Losses at (1-α)·θ0 + α·θ1 for each α: one row {"alpha", "<split>_loss"...} per α."""
    thetas = torch.stack([torch.lerp(theta0, theta1, float(a)) for a in alphas])  # (K, P)
    return [{"alpha": float(a), **r} for a, r in zip(alphas, evaluate(thetas), strict=True)]


def surface_rows(
    evaluate: Evaluator,
    center: Tensor,
    d1: Tensor,
    d2: Tensor,
    xs: Sequence[float],
    ys: Sequence[float],
    row_indices: Sequence[int],
) -> list[dict[str, float]]:
    """Losses at center + x·d1 + y·d2 for every x and each y = ys[i], i in row_indices."""
    points = [(float(x), float(ys[i])) for i in row_indices for x in xs]
    if not points:
        return []
    thetas = torch.stack([center + x * d1 + y * d2 for x, y in points])  # (K, P)
    return [{"x": x, "y": y, **r} for (x, y), r in zip(points, evaluate(thetas), strict=True)]


@dataclass(frozen=True)
class PcaPlane:
    """Orthonormal directions (2, P) through `center`, snapshot coordinates (T, 2)."""

    directions: Tensor
    coords: Tensor
    explained_variance_ratio: tuple[float, float]


def pca_plane(snapshots: Tensor, center: Tensor) -> PcaPlane:
    """The best 2-D subspace for the offsets (snapshots (T, P) − center) and their coordinates.

    The plane must pass through the final weights, so the offsets are not mean-centred
    (Li et al. centre them; the difference is small when the trajectory ends at θ*). The
    ratios are each direction's share of the offsets' total squared norm.
    """
    offsets = (snapshots - center).double()  # (T, P)
    _, s, vh = torch.linalg.svd(offsets, full_matrices=False)  # vh (min(T,P), P)
    if vh.shape[0] < 2:
        raise ValueError(f"pca_plane: need at least 2 snapshots, got {snapshots.shape[0]}")
    directions = vh[:2]  # (2, P), orthonormal
    # Fix the sign so the start of training has non-negative coordinates (stable pictures).
    signs = torch.sign(offsets[0] @ directions.T)
    directions = directions * torch.where(signs == 0, 1.0, signs)[:, None]
    energy = float((s**2).sum()) or 1.0
    ratios = (float(s[0] ** 2) / energy, float(s[1] ** 2) / energy)
    coords = offsets @ directions.T  # (T, 2)
    return PcaPlane(directions.to(snapshots.dtype), coords.to(snapshots.dtype), ratios)


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    """One vector of gradients: a conv weight's gradient may be non-contiguous, which
    `parameters_to_vector` (a view) refuses."""
    return torch.cat([t.reshape(-1) for t in tensors])


def hessian_vector_product(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, v: Tensor, chunk_size: int = 2048
) -> Tensor:
    """H·v (P,) for the mean loss over (x, y), by double backward, chunk-weighted."""
    params = [p for p in model.parameters()]
    hv, n = torch.zeros_like(v), x.shape[0]
    with landscape_mode(model):
        for part in _chunks(n, chunk_size):
            loss = loss_fn(model(x[part]), y[part])
            grads = torch.autograd.grad(loss, params, create_graph=True)
            g_dot_v = _flat(grads) @ v
            hv_part = torch.autograd.grad(g_dot_v, params, allow_unused=True)
            hv_part = [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv_part)]
            hv += _flat(hv_part).detach() * ((part.stop - part.start) / n)
    return hv


def _power_iteration(
    matvec: Callable[[Tensor], Tensor], v: Tensor, iters: int, tol: float
) -> float:
    """The eigenvalue of largest magnitude of a symmetric operator (Rayleigh quotient)."""
    v = v / v.norm()
    eigenvalue = 0.0
    for _ in range(iters):
        w = matvec(v)
        new = float(v @ w)
        norm = w.norm()
        if not torch.isfinite(norm) or norm == 0:
            return new
        v = w / norm
        if abs(new - eigenvalue) <= tol * max(abs(new), 1e-12):
            return new
        eigenvalue = new
    return eigenvalue


def _power_extremes(hvp: Callable[[Tensor], Tensor], v0: Tensor, v1: Tensor, iters: int,
                    tol: float) -> tuple[float, float]:  # fmt: skip
    """Power iteration finds λ₁, the eigenvalue of largest magnitude (λ_max at a minimum);
    power iteration on H − λ₁·I then finds λ_other − λ₁. Converges at the eigen-gap's rate:
    the slow, obviously correct reference."""
    lam1 = _power_iteration(hvp, v0, iters, tol)
    lam2 = _power_iteration(lambda v: hvp(v) - lam1 * v, v1, iters, tol) + lam1
    return max(lam1, lam2), min(lam1, lam2)


def _lobpcg_extremes(hvp: Callable[[Tensor], Tensor], v0: Tensor, v1: Tensor, iters: int,
                     tol: float) -> tuple[float, float]:  # fmt: skip
    """scipy's LOBPCG (Knyazev 2001) for each end, one block vector, at most `iters` steps.

    A Rayleigh-Ritz value: at worst an inner bound (λ_max from below, λ_min from above),
    and on this project's MLPs within 1% of ARPACK's λ_max after ~20 and λ_min after ~60
    Hessian-vector products, where power iteration needs hundreds."""
    import warnings

    import numpy as np
    from scipy.sparse.linalg import LinearOperator, lobpcg

    p, dtype = v0.numel(), v0.dtype

    def matmat(block: np.ndarray) -> np.ndarray:  # (P, k) float64 -> (P, k)
        cols = np.asarray(block).reshape(p, -1).T
        out = [
            hvp(torch.from_numpy(np.ascontiguousarray(c)).to(dtype)).double().numpy() for c in cols
        ]
        return np.stack(out, axis=1)

    op = LinearOperator((p, p), matvec=matmat, matmat=matmat, dtype=np.float64)
    ends = []
    for v, largest in ((v0, True), (v1, False)):
        with warnings.catch_warnings():  # "not reaching the requested tolerance" is expected
            warnings.simplefilter("ignore")
            values, _ = lobpcg(op, v.double().numpy()[:, None], largest=largest, maxiter=iters,
                               tol=tol)  # fmt: skip
        ends.append(float(values[0]))
    return ends[0], ends[1]


# name -> fn(hvp, start vector, second start vector, iters, tol) -> (λ_max, λ_min)
HESSIAN_METHODS: dict[str, Callable[..., tuple[float, float]]] = {
    "lobpcg": _lobpcg_extremes,
    "power": _power_extremes,
}


def hessian_extreme_eigenvalues(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    *,
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    chunk_size: int = 2048,
    method: str = "power",
) -> tuple[float, float]:
    """(λ_max, λ_min): both ends of the loss Hessian's spectrum, from Hessian-vector products.

    λ_max is the sharpness of a minimum; a clearly negative λ_min means the weights sit at a
    saddle or on a slope, not in a minimum (Li et al. §6). `method`: "power" (reference) or
    "lobpcg" (same answer in far fewer products); `iters` bounds the steps per end.
    """
    if method not in HESSIAN_METHODS:
        raise ValueError(f"method: unknown {method!r}; known: {', '.join(HESSIAN_METHODS)}")
    gen = torch.Generator().manual_seed(seed)
    p = sum(q.numel() for q in model.parameters())
    dtype = next(model.parameters()).dtype

    def hvp(v: Tensor) -> Tensor:
        return hessian_vector_product(model, x, y, loss_fn, v, chunk_size)

    v0 = torch.randn(p, generator=gen, dtype=dtype)
    v1 = torch.randn(p, generator=gen, dtype=dtype)
    return HESSIAN_METHODS[method](hvp, v0, v1, iters, tol)
