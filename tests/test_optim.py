"""Optimizers against hand computations; fused == plain; schedules; regularizers."""

import math

import numpy as np
import pytest
import torch

from nnopt.train.optim import (
    OPTIMIZERS, build_optimizer, build_schedule, decay_weights, optimizer_state_bytes, penalty,
)
from nnopt.config.spec import OptimizerSpec, RegularizationSpec, ScheduleSpec

P0 = np.array([1.0, -2.0, 0.5])
GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.25, 0.3, 1.0]), np.array([0.1, 0.1, -0.4])]


def _run(spec: OptimizerSpec, fast: bool, steps: int = 3) -> np.ndarray:
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    opt = build_optimizer([p], spec, fast=fast)
    for g in GRADS[:steps]:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def _sgd(lr, m=0.0, nesterov=False):
    p, buf = P0.copy(), None
    for g in GRADS:
        buf = g.copy() if buf is None else m * buf + g
        p -= lr * ((g + m * buf) if nesterov else (buf if m else g))
    return p


def _adam(lr, b1, b2, eps):
    p, m, v = P0.copy(), 0 * P0, 0 * P0
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        p -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def _adagrad(lr, eps):
    p, s = P0.copy(), 0 * P0
    for g in GRADS:
        s += g**2
        p -= lr * g / (np.sqrt(s) + eps)
    return p


def _rmsprop(lr, alpha, eps):
    p, s = P0.copy(), 0 * P0
    for g in GRADS:
        s = alpha * s + (1 - alpha) * g**2
        p -= lr * g / (np.sqrt(s) + eps)
    return p


def _adadelta(lr, rho, eps):
    p, s, acc = P0.copy(), 0 * P0, 0 * P0
    for g in GRADS:
        s = rho * s + (1 - rho) * g**2
        delta = np.sqrt(acc + eps) / np.sqrt(s + eps) * g
        acc = rho * acc + (1 - rho) * delta**2
        p -= lr * delta
    return p


HAND = [
    (OptimizerSpec(name="sgd", lr=0.1), _sgd(0.1)),
    (OptimizerSpec(name="momentum", lr=0.1, momentum=0.9), _sgd(0.1, 0.9)),
    (OptimizerSpec(name="nesterov", lr=0.1, momentum=0.8), _sgd(0.1, 0.8, nesterov=True)),
    (OptimizerSpec(name="adam", lr=0.01, beta1=0.8, beta2=0.9, eps=1e-8), _adam(0.01, 0.8, 0.9, 1e-8)),
    (OptimizerSpec(name="adamw", lr=0.01), _adam(0.01, 0.9, 0.999, 1e-8)),  # wd is decoupled
    (OptimizerSpec(name="adagrad", lr=0.1, eps=1e-10), _adagrad(0.1, 1e-10)),
    (OptimizerSpec(name="rmsprop", lr=0.01, alpha=0.9, eps=1e-8), _rmsprop(0.01, 0.9, 1e-8)),
    (OptimizerSpec(name="adadelta", lr=1.0, rho=0.9, eps=1e-6), _adadelta(1.0, 0.9, 1e-6)),
]


@pytest.mark.parametrize("spec, expected", HAND, ids=[s.name for s, _ in HAND])
@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_update_matches_hand_computation(spec, expected, fast):
    np.testing.assert_allclose(_run(spec, fast), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_matches_plain_and_solves_parabola(name):
    # Adadelta takes steps of order sqrt(eps): give it a larger eps to move in 200 steps.
    extra = {"lr": 1.0, "eps": 1e-2} if name == "adadelta" else {"lr": 0.05}
    spec = OptimizerSpec(name=name, **extra)
    results = []
    for fast in (False, True):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(4, 3))  # float32, like training
        opt = build_optimizer([w], spec, fast=fast)
        for _ in range(200):
            opt.zero_grad()
            (0.5 * (w - 1.0).pow(2).sum()).backward()  # minimum at w = 1
            opt.step()
        results.append(w.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    start = (torch.manual_seed(0), torch.randn(4, 3))[1]
    assert (results[1] - 1).norm() < 0.5 * (start - 1).norm()


@pytest.mark.parametrize("name, factor", [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2),
                                          ("adagrad", 1), ("rmsprop", 1), ("nadam", 2)])
def test_optimizer_state_bytes(name, factor):
    w = torch.nn.Parameter(torch.zeros(10, 5))
    opt = build_optimizer([w], OptimizerSpec(name=name))
    w.grad = torch.ones_like(w)
    opt.step()
    assert optimizer_state_bytes(opt) == factor * w.nelement() * 4


def _lrs(spec: ScheduleSpec, spe=4, total=16):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], OptimizerSpec(name="sgd", lr=1.0))
    schedule = build_schedule(opt, spec, steps_per_epoch=spe, total_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        if schedule.per_step is not None:
            schedule.per_step.step()
    return np.array(lrs)


def test_schedules_lr_sequences():
    np.testing.assert_allclose(_lrs(ScheduleSpec(name="constant")), 1.0)
    np.testing.assert_allclose(_lrs(ScheduleSpec(name="step", step_size=2, gamma=0.5)),
                               np.repeat([1, 0.5], 8))
    np.testing.assert_allclose(_lrs(ScheduleSpec(name="multistep", milestones=(1, 3), gamma=0.1)),
                               np.repeat([1, 0.1, 0.1, 0.01], 4))
    np.testing.assert_allclose(_lrs(ScheduleSpec(name="exponential", gamma=0.5)),
                               np.repeat([1, 0.5, 0.25, 0.125], 4))
    cosine = _lrs(ScheduleSpec(name="cosine", min_lr=0.1))
    expected = 0.1 + 0.9 * (1 + np.cos(np.pi * np.arange(16) / 16)) / 2
    np.testing.assert_allclose(cosine, expected, rtol=1e-6)


def test_warmup_then_schedule():
    lrs = _lrs(ScheduleSpec(name="step", step_size=1, gamma=0.5, warmup_epochs=1))
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])  # linear from ~0, per step
    np.testing.assert_allclose(lrs[4:], np.repeat([1.0, 0.5, 0.25], 4))  # schedule after


def test_plateau_reduces_on_flat_val_loss():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], OptimizerSpec(name="sgd", lr=1.0))
    schedule = build_schedule(opt, ScheduleSpec(name="plateau", patience=1, factor=0.5),
                              steps_per_epoch=4, total_steps=16)
    assert schedule.per_step is None
    for loss in (1.0, 0.9, 0.9, 0.9):
        schedule.plateau.step(loss)
    assert opt.param_groups[0]["lr"] == 0.5


def test_penalties_by_value():
    w1 = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    w2 = torch.tensor([3.0, -1.0])
    value = penalty([w1, w2], RegularizationSpec(l1=0.1, l2=0.01))
    assert math.isclose(value.item(), 0.1 * 7.5 + 0.01 * (1 + 4 + 0.25 + 9 + 1), rel_tol=1e-6)
    assert penalty([w1], RegularizationSpec()) is None


def test_decoupled_weight_decay():
    w = torch.tensor([2.0, -4.0])
    decay_weights([w], lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(w, torch.tensor([2.0, -4.0]) * (1 - 0.05))
