"""Many points of a loss landscape in one pass: the fast path of `surface.make_evaluator`.

A landscape evaluates ~1000 weight vectors of one small model (two planes of 21 × 21, the
interpolation line, the trajectory); one point at a time, per-op dispatch dominates a small
MLP's forward. `make_batched_evaluator` stacks K points' weights, (K, P) -> K parameter sets
of shape (K, *shape), and runs the model once over all of them with `torch.func.vmap` over
`functional_call`: every Linear/Conv becomes one batched matmul over the K weight copies
(the pattern of the cohort engine, nnopt.train.stacked, for any architecture).

Same numbers as the reference: the samples are cut into the same chunks as
`surface.mean_loss`, and batch norm normalizes each point with its own batch statistics of
each chunk (its running statistics are dropped from a private copy of the model, so nothing
is updated); dropout is off. K is capped so the activations of one pass stay under
`PASS_BUDGET_BYTES`. A model that vmap cannot run (a plug-in's exotic op) falls back to the
reference, with one line on stderr.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nnopt.landscape import surface as ls

__all__ = ["PASS_BUDGET_BYTES", "make_batched_evaluator", "points_per_pass", "with_fallback"]

PASS_BUDGET_BYTES = 256 * 2**20  # activations of one batched pass (all leaf outputs)


def _stateless_copy(model: nn.Module) -> nn.Module:
    """A copy in landscape mode with no state to update: dropout off, batch norm on batch
    statistics without running buffers (so it is a pure function of its parameters)."""
    frozen = copy.deepcopy(model).eval()
    for m in frozen.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            m.train()  # batch statistics; with no running buffers nothing is written
            m.track_running_stats = False
            m.running_mean, m.running_var, m.num_batches_tracked = None, None, None
    return frozen


def _activation_floats_per_sample(model: nn.Module, x: Tensor) -> int:
    """Sum of every leaf module's output size for one sample (an upper bound on what one
    pass keeps alive per sample and point)."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out: sizes.append(out.numel() if isinstance(out, Tensor) else 0)
        )
        for m in model.modules()
        if not list(m.children())
    ]
    n = min(2, len(x))  # two: batch norm on batch statistics needs more than one sample
    try:
        with torch.no_grad():
            model(x[:n])
    finally:
        for h in hooks:
            h.remove()
    return max(sum(sizes) // max(n, 1), 1)


def points_per_pass(
    model: nn.Module, x: Tensor, chunk_size: int, max_points: int, budget_bytes: int
) -> int:
    """How many points one pass evaluates: `max_points`, fewer when their activations on one
    chunk of samples would exceed `budget_bytes`."""
    itemsize = next(model.parameters()).element_size()
    per_point = _activation_floats_per_sample(model, x) * min(chunk_size, len(x)) * itemsize
    return max(1, min(max_points, budget_bytes // per_point))


def make_batched_evaluator(
    model: nn.Module,
    splits: Mapping[str, tuple[Tensor, Tensor]],
    loss_fn: ls.LossFn,
    chunk_size: int = 2048,
    max_points: int = 64,
    budget_bytes: int = PASS_BUDGET_BYTES,
) -> ls.Evaluator:
    """θs (K, P) -> K × {"<split>_loss": mean loss}, `points_per_pass` points at a time."""
    from torch.func import functional_call, vmap

    frozen = _stateless_copy(model)
    named = [(n, p.shape, p.numel()) for n, p in frozen.named_parameters()]
    dtype, device = next(frozen.parameters()).dtype, next(frozen.parameters()).device
    first_x = next(iter(splits.values()))[0]
    per_pass = points_per_pass(frozen, first_x.to(device), chunk_size, max_points, budget_bytes)

    def point_loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(frozen, params, (x,)), y)

    losses_of = vmap(point_loss, in_dims=(0, None, None))  # K parameter sets, shared data

    def mean_losses(thetas: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """(k, P) -> (k,) sample-weighted mean loss over the chunks (float64 sums)."""
        parts = thetas.split([numel for _, _, numel in named], dim=1)
        params = {n: t.reshape(len(thetas), *shape) for (n, shape, _), t in zip(named, parts)}
        total = torch.zeros(len(thetas), dtype=torch.float64, device=device)
        for start in range(0, len(x), chunk_size):
            xs, ys = x[start : start + chunk_size], y[start : start + chunk_size]
            total += losses_of(params, xs, ys).double() * len(xs)
        return total / len(x)

    def evaluate(thetas: Tensor) -> list[dict[str, float]]:
        thetas = thetas.to(device, dtype)
        columns: dict[str, list[float]] = {}
        with torch.no_grad():
            for name, (x, y) in splits.items():
                x, y = x.to(device), y.to(device)
                values = [mean_losses(thetas[i : i + per_pass], x, y)
                          for i in range(0, len(thetas), per_pass)]  # fmt: skip
                columns[f"{name}_loss"] = torch.cat(values).tolist()
        return [ls.finite_or_nan({k: v[i] for k, v in columns.items()})
                for i in range(len(thetas))]  # fmt: skip

    return evaluate


def with_fallback(fast: ls.Evaluator, reference: ls.Evaluator) -> ls.Evaluator:
    """`fast`, or `reference` from the first call on which vmap refuses the model."""
    state = {"fast": True}

    def evaluate(thetas: Tensor) -> list[dict[str, float]]:
        if state["fast"]:
            try:
                return fast(thetas)
            except (RuntimeError, NotImplementedError) as err:
                print(f"landscape: batched evaluation unavailable for this model ({err}); "
                      "evaluating one point at a time", file=sys.stderr)  # fmt: skip
                state["fast"] = False
        return reference(thetas)

    return evaluate

