"""Optimizers against hand computations; fused == plain; schedules; regularizers."""

import math

import numpy as np
import pytest
import torch

from nnopt.train.optim import (
    OPTIMIZERS, averaged_weights, build_optimizer, build_schedule, decay_weights,
    optimizer_state_bytes, penalty,
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


def _adamax(lr, b1, b2, eps):
    p, m, u = P0.copy(), 0 * P0, 0 * P0
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        p -= lr / (1 - b1**t) * m / u
    return p


def _lion(lr, b1, b2):
    """Chen et al. 2023, Algorithm 2 (no weight decay: nnopt decouples it)."""
    p, m = P0.copy(), 0 * P0
    for g in GRADS:
        p -= lr * np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
    return p


def _schedule_free(lr, b1, b2, eps):
    """Defazio et al. 2024, from the definitions of z, x and y (not the in-place form):
    returns (y, x), what the parameters hold in train and in eval mode."""
    z, x, v = P0.copy(), P0.copy(), 0 * P0
    weight_sum, lr_max = 0.0, 0.0
    for t, g in enumerate(GRADS):
        v = b2 * v + (1 - b2) * g**2
        lr_t = lr * math.sqrt(1 - b2 ** (t + 1))
        lr_max = max(lr_max, lr_t)
        weight_sum += lr_max**2
        c = lr_max**2 / weight_sum
        z = z - lr_t * g / (np.sqrt(v) + eps)
        x = (1 - c) * x + c * z
    return (1 - b1) * z + b1 * x, x


HAND = [
    (OptimizerSpec(name="sgd", lr=0.1), _sgd(0.1)),
    (OptimizerSpec(name="momentum", lr=0.1, momentum=0.9), _sgd(0.1, 0.9)),
    (OptimizerSpec(name="nesterov", lr=0.1, momentum=0.8), _sgd(0.1, 0.8, nesterov=True)),
    (OptimizerSpec(name="adam", lr=0.01, beta1=0.8, beta2=0.9, eps=1e-8), _adam(0.01, 0.8, 0.9, 1e-8)),
    (OptimizerSpec(name="adamw", lr=0.01), _adam(0.01, 0.9, 0.999, 1e-8)),  # wd is decoupled
    (OptimizerSpec(name="adagrad", lr=0.1, eps=1e-10), _adagrad(0.1, 1e-10)),
    (OptimizerSpec(name="rmsprop", lr=0.01, alpha=0.9, eps=1e-8), _rmsprop(0.01, 0.9, 1e-8)),
    (OptimizerSpec(name="adadelta", lr=1.0, rho=0.9, eps=1e-6), _adadelta(1.0, 0.9, 1e-6)),
    (OptimizerSpec(name="adamax", lr=0.01, beta1=0.8, beta2=0.9, eps=1e-8),
     _adamax(0.01, 0.8, 0.9, 1e-8)),
    (OptimizerSpec(name="lion", lr=0.01, beta1=0.9, beta2=0.99), _lion(0.01, 0.9, 0.99)),
    (OptimizerSpec(name="schedule_free_adamw", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
     _schedule_free(0.01, 0.9, 0.999, 1e-8)[0]),
]


@pytest.mark.parametrize("spec, expected", HAND, ids=[s.name for s, _ in HAND])
@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_update_matches_hand_computation(spec, expected, fast):
    np.testing.assert_allclose(_run(spec, fast), expected, rtol=1e-9, atol=1e-12)


def test_schedule_free_evaluates_the_average_and_switches_back():
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    opt = build_optimizer([p], OptimizerSpec(name="schedule_free_adamw", lr=0.01), fast=True)
    for g in GRADS:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    y, x = _schedule_free(0.01, 0.9, 0.999, 1e-8)
    with averaged_weights(opt):
        np.testing.assert_allclose(p.detach().numpy(), x, rtol=1e-9)
        with pytest.raises(RuntimeError, match="eval mode"):
            opt.step()
    np.testing.assert_allclose(p.detach().numpy(), y, rtol=1e-9)


def test_muon_steps_matrices_and_adamw_steps_the_rest():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))
    ref_w, ref_b = (torch.nn.Parameter(t.detach().clone()) for t in (w, b))
    opt = build_optimizer([w, b], OptimizerSpec(name="muon", lr=0.02, momentum=0.9))
    muon = torch.optim.Muon([ref_w], lr=0.02, weight_decay=0.0, momentum=0.9,
                            adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW([ref_b], lr=0.02, weight_decay=0.0)
    for _ in range(3):
        grads = torch.randn(4, 3), torch.randn(3)
        w.grad, b.grad = (g.clone() for g in grads)
        ref_w.grad, ref_b.grad = (g.clone() for g in grads)
        opt.step(), muon.step(), adamw.step()
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(b, ref_b)
    state = opt.state_dict()  # one state for both parts; loads back into a fresh optimizer
    again = build_optimizer([w, b], OptimizerSpec(name="muon", lr=0.02, momentum=0.9))
    again.load_state_dict(state)
    assert again._inner[0].state is again.state and len(again.state) == 2


BUILT_IN = [name for name in OPTIMIZERS if name != "python"]  # python: tests/train/test_plugins.py


@pytest.mark.parametrize("name", BUILT_IN)
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
                                          ("adagrad", 1), ("rmsprop", 1), ("nadam", 2),
                                          ("lion", 1), ("schedule_free_adamw", 2)])
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


def _one_cycle(total=16, pct=0.25, div=25.0, final_div=1e4):
    """OneCycleLR's cosine phases (Smith & Topin 2019), written out: up, then down."""
    up_end, initial, floor = pct * total - 1, 1.0 / div, 1.0 / (div * final_div)
    cos = lambda a, b, f: b + (a - b) / 2 * (1 + math.cos(math.pi * f))  # noqa: E731
    return [cos(initial, 1.0, t / up_end) if t <= up_end
            else cos(1.0, floor, (t - up_end) / (total - 1 - up_end)) for t in range(total)]


t16 = np.arange(16)
# Every schedule, with its lr sequence computed by hand (base lr 1, 4 steps/epoch, 16 steps).
SCHEDULE_TABLE = [
    (ScheduleSpec(name="constant"), np.ones(16)),
    (ScheduleSpec(name="step", step_size=2, gamma=0.5), np.repeat([1, 0.5], 8)),
    (ScheduleSpec(name="multistep", milestones=(1, 3), gamma=0.1), np.repeat([1, 0.1, 0.1, 0.01], 4)),
    (ScheduleSpec(name="exponential", gamma=0.5), np.repeat([1, 0.5, 0.25, 0.125], 4)),
    (ScheduleSpec(name="cosine", min_lr=0.1), 0.1 + 0.9 * (1 + np.cos(np.pi * t16 / 16)) / 2),
    (ScheduleSpec(name="plateau"), np.ones(16)),  # moves only at evaluations (test below)
    # stable for 12 steps, then linear to min_lr over the last 25% (4 steps).
    (ScheduleSpec(name="wsd", decay_fraction=0.25, min_lr=0.2),
     np.r_[np.ones(12), 1 - 0.8 * np.arange(4) / 4]),
    (ScheduleSpec(name="linear", min_lr=0.2), 1 - 0.8 * t16 / 16),
    (ScheduleSpec(name="one_cycle", pct_start=0.25), _one_cycle()),
    # period 1 epoch = 4 steps, doubling: restarts at steps 4 and 12.
    (ScheduleSpec(name="cosine_restarts", restart_epochs=1, t_mult=2, min_lr=0.0),
     np.r_[[(1 + np.cos(np.pi * t / 4)) / 2 for t in range(4)],
           [(1 + np.cos(np.pi * t / 8)) / 2 for t in range(8)],
           [(1 + np.cos(np.pi * t / 16)) / 2 for t in range(4)]]),
    (ScheduleSpec(name="polynomial", power=2.0), (1 - t16 / 16) ** 2),
]


def test_schedule_table_covers_every_schedule():
    from nnopt.train.optim import SCHEDULES

    assert sorted(s.name for s, _ in SCHEDULE_TABLE) == sorted(SCHEDULES)


@pytest.mark.parametrize("spec, expected", SCHEDULE_TABLE, ids=[s.name for s, _ in SCHEDULE_TABLE])
def test_schedule_matches_hand_computation(spec, expected):
    np.testing.assert_allclose(_lrs(spec), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["wsd", "linear", "cosine_restarts", "polynomial"])
def test_new_schedules_follow_warmup(name):
    lrs = _lrs(ScheduleSpec(name=name, warmup_epochs=1))
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] < 1.0


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_optimizer_runs_every_schedule(name):
    for spec, _ in SCHEDULE_TABLE:
        p = torch.nn.Parameter(torch.ones(2, 2))
        opt = build_optimizer([p], OptimizerSpec(name=name, lr=0.1))
        schedule = build_schedule(opt, spec, steps_per_epoch=2, total_steps=6)
        for _ in range(6):
            p.grad = torch.ones(2, 2)
            opt.step()
            if schedule.per_step is not None:
                schedule.per_step.step()
        assert torch.isfinite(p).all()


def test_engine_evaluates_schedule_free_at_the_average(tmp_path):
    """Curve, best-val snapshot and test metrics use x (the average), not y."""
    from nnopt.config.spec import parse_spec
    from nnopt.train.data import load_dataset
    from nnopt.train.loop import Hooks, build_run, evaluate_split, run_loop
    from nnopt.train.strategy import SingleProcess

    spec = parse_spec({"data": {"name": "blobs", "n_samples": 200},
                       "model": {"width": 8, "depth": 1},
                       "optimizer": {"name": "schedule_free_adamw", "lr": 0.05},
                       "budget": {"epochs": 3, "batch_size": 32}})
    run, state = build_run(spec, load_dataset(spec.data), Hooks(), None, 1)
    strategy = SingleProcess()
    run_loop(run, state, strategy)
    y_loss = evaluate_split(run, state, "val")[0]  # train mode: y
    with averaged_weights(state.optimizer):
        x_loss = evaluate_split(run, state, "val")[0]
        x_test = evaluate_split(run, state, "test")[0]
    assert state.curve[-1]["val_loss"] == pytest.approx(x_loss, rel=1e-6)
    assert abs(x_loss - y_loss) > 1e-6  # the two really differ, so the check means something
    result = strategy.finish(run, state)
    assert result.metrics["test_loss"] == pytest.approx(x_test, rel=1e-6)


def test_quickstart_example_trains(tmp_path, capsys):
    from pathlib import Path

    from nnopt.cli.main import main
    from nnopt.store.runs import read_run

    example = Path(__file__).parents[2] / "examples" / "specs" / "quickstart.yaml"
    out = tmp_path / "quickstart"
    assert main(["train", "--spec", str(example), "--out", str(out)]) == 0
    record = read_run(out)
    assert record["status"] == "ok" and record["metrics"]["test_accuracy"] > 0.8
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("name", BUILT_IN)
def test_state_dict_resumes_every_optimizer_exactly(name):
    """A checkpoint's optimizer state, loaded into a fresh optimizer, continues bit for bit."""
    torch.manual_seed(0)
    shapes = [(4, 3), (3,)]  # a matrix and a vector: Muon splits them between its parts
    grads = [[torch.randn(s) for s in shapes] for _ in range(6)]

    def run(resume_at=None):
        torch.manual_seed(1)
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        opt = build_optimizer(params, OptimizerSpec(name=name, lr=0.01))
        for i, step_grads in enumerate(grads):
            if i == resume_at:
                state = opt.state_dict()
                opt = build_optimizer(params, OptimizerSpec(name=name, lr=0.01))
                opt.load_state_dict(state)
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in params]

    for straight, resumed in zip(run(), run(resume_at=3)):
        torch.testing.assert_close(straight, resumed, rtol=0, atol=0)
