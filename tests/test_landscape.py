"""Loss-landscape math (nnopt.landscape) checked against closed forms and direct evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnopt import landscape as ls


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _separable(n: int = 80, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs far apart along a random axis: linearly separable."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.float64)
    axis = rng.normal(size=d)
    x = rng.normal(size=(n, d)) + np.outer(2 * y - 1, 3 * axis / np.linalg.norm(axis))
    return x, y


def _trained_logreg(x: np.ndarray, y: np.ndarray, steps: int = 60):
    """A float64 logistic regression trained by full-batch GD; returns (model, θ0, θ1)."""
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1).double()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    theta0 = ls.flat_params(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        _bce(model(xt), yt).backward()
        opt.step()
    return model, xt, yt, theta0, ls.flat_params(model)


def test_interpolation_on_a_convex_problem_is_convex_and_ends_at_both_losses():
    x, y = _separable()
    model, xt, yt, theta0, theta1 = _trained_logreg(x, y)
    evaluate = ls.make_evaluator(model, {"train": (xt, yt)}, _bce)
    alphas = np.linspace(-0.5, 1.5, 21)
    rows = ls.interpolate_1d(evaluate, theta0, theta1, alphas)
    losses = np.array([r["train_loss"] for r in rows])
    assert [r["alpha"] for r in rows] == pytest.approx(alphas)
    assert np.all(np.diff(losses, 2) >= -1e-10)  # convex along the line
    ls.set_flat_params(model, theta0)
    with torch.no_grad():
        assert rows[5]["train_loss"] == pytest.approx(float(_bce(model(xt), yt)))  # α = 0
    assert rows[15]["train_loss"] < rows[5]["train_loss"]  # training went downhill


def test_top_and_bottom_hessian_eigenvalues_match_the_closed_form_of_logistic_regression():
    x, y = _separable()
    model, xt, yt, _, theta1 = _trained_logreg(x, y)
    # H = X̃ᵀ diag(p(1-p)) X̃ / n with X̃ = [X, 1]; parameters are ordered (weight, bias).
    xb = np.hstack([x, np.ones((len(x), 1))])
    p = 1 / (1 + np.exp(-(xb @ theta1.numpy())))
    hessian = xb.T @ (xb * (p * (1 - p))[:, None]) / len(x)
    exact = np.linalg.eigvalsh(hessian)
    top, bottom = ls.hessian_extreme_eigenvalues(model, xt, yt, _bce, iters=500, tol=1e-12, chunk_size=32)
    assert top == pytest.approx(exact[-1], rel=1e-6)
    assert bottom == pytest.approx(exact[0], rel=1e-4, abs=1e-9)


def test_hessian_vector_product_matches_the_full_hessian_of_a_small_mlp():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 3, (20,))
    theta = ls.flat_params(model)
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, [s.numel() for s in shapes])
        params = {n: t.view(s) for (n, _), t, s in zip(model.named_parameters(), parts, shapes)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    full = torch.autograd.functional.hessian(loss_of, theta)  # (P, P) reference
    v = torch.randn(theta.numel(), dtype=torch.float64)
    hv = ls.hessian_vector_product(model, x, y, nn.functional.cross_entropy, v, chunk_size=7)
    torch.testing.assert_close(hv, full @ v)


def test_filter_normalization_gives_each_direction_filter_the_weight_filter_norm():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4, 5), nn.BatchNorm1d(5))
    direction = ls.random_direction(model, torch.Generator().manual_seed(0))
    parts = torch.split(direction, [p.numel() for p in model.parameters()])
    for (name, w), d in zip(model.named_parameters(), parts):
        d = d.view(w.shape)
        if w.dim() <= 1:  # biases and BN scale/shift are not perturbed
            assert torch.count_nonzero(d) == 0, name
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))
            assert not torch.allclose(d, w.detach())  # a direction, not the weights themselves


def test_surface_of_a_two_parameter_model_equals_a_direct_grid_evaluation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    y = x @ np.array([1.5, -0.5]) + 0.1 * rng.normal(size=30)
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.4, -0.3]]))

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out.squeeze(-1) - target) ** 2).mean()

    gen = torch.Generator().manual_seed(0)
    d1, d2 = ls.random_direction(model, gen), ls.random_direction(model, gen)
    center = ls.flat_params(model)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-2, 2, 4)
    evaluate = ls.make_evaluator(model, {"train": (torch.from_numpy(x), torch.from_numpy(y))}, mse)
    rows = ls.surface_rows(evaluate, center, d1, d2, xs, ys, range(len(ys)))
    assert len(rows) == 20
    for row in rows:
        w = center.numpy() + row["x"] * d1.numpy() + row["y"] * d2.numpy()
        assert row["train_loss"] == pytest.approx(np.mean((x @ w - y) ** 2), rel=1e-12)


def test_pca_of_a_trajectory_in_a_plane_is_exact():
    gen = torch.Generator().manual_seed(0)
    center = torch.randn(50, generator=gen, dtype=torch.float64)
    u, v = torch.randn(2, 50, generator=gen, dtype=torch.float64)
    ab = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    ab[-1] = 0  # the trajectory ends at the centre (the final weights)
    snapshots = center + ab[:, :1] * u + ab[:, 1:] * v  # (10, 50)
    plane = ls.pca_plane(snapshots, center)
    torch.testing.assert_close(plane.directions @ plane.directions.T, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(center + plane.coords @ plane.directions, snapshots)
    assert sum(plane.explained_variance_ratio) == pytest.approx(1.0)
    assert plane.coords[0, 0] >= 0 and plane.coords[0, 1] >= 0  # sign convention


def test_landscape_mode_turns_dropout_off_uses_batch_stats_and_restores_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    running = model[1].running_mean.clone()
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    first = ls.mean_loss(model, x, y, nn.functional.cross_entropy)
    assert ls.mean_loss(model, x, y, nn.functional.cross_entropy) == first  # no dropout noise
    assert model.training and model[3].training
    torch.testing.assert_close(model[1].running_mean, running)
    model.eval()  # eval mode with stale running stats gives a different (running-stat) loss
    with torch.no_grad():
        assert float(nn.functional.cross_entropy(model(x), y)) != pytest.approx(first)
