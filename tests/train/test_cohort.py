"""Cohorts: each member of a stacked model equals the single-run engine (nnopt.train.cohort).

fp32: every member's curve within 1e-5 relative of `engine.train` over 120 steps, for the
factor table below, and its memory metrics (activation peak of a step included) equal. float64: the cohort against a plain torch.optim reference loop within
1e-10 (the engine reads its losses in fp32, so it cannot be the float64 reference).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnopt.config.spec import merge, parse_spec
from nnopt.store.runs import read_run
from nnopt.train.cohort import train_cohort
from nnopt.train.data import Dataset
from nnopt.train.engine import train
from nnopt.train.models import build_model, weight_parameters
from nnopt.train.optim import build_optimizer, decay_weights, penalty
from nnopt.train.runner import run_batch, run_one

STEPS = 120
BASE = {
    "model": {"depth": 2, "width": 16},
    "budget": {"steps": STEPS, "batch_size": 32},
    "evaluation": {"every_steps": 20, "target_val_accuracy": 0.6, "target_train_loss": 0.8},
}
CURVE = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "weight_norm",
         "grad_norm")  # fmt: skip
METRICS = ("test_accuracy", "test_loss", "test_accuracy_at_best_val", "best_val_accuracy",
           "best_val_step", "steps", "final_lr", "steps_to_target", "steps_to_target_loss",
           "weight_norm", "weight_sparsity", "param_bytes", "optimizer_state_bytes",
           # measured for each member on its own model, as the single engine measures it
           "grad_bytes", "activation_peak_bytes", "train_step_memory_bytes")  # fmt: skip


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 12)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    return Dataset(x[:300], y[:300], x[300:400], y[300:400], x[400:], y[400:], 3, (12,))


def member_specs(factor: dict, per_member: list[dict]):
    return [parse_spec(merge(merge(merge(BASE, factor), m), {"seed": k}))
            for k, m in enumerate(per_member)]  # fmt: skip


LRS = [{"optimizer": {"lr": lr}} for lr in (0.003, 0.01, 0.02)]
SGD_LRS = [{"optimizer": {"lr": lr}} for lr in (0.03, 0.1, 0.2)]
FACTORS = {
    "adam": ({}, LRS),
    "adamw-betas": ({"optimizer": {"name": "adamw"}},
                    [{"optimizer": {"lr": 0.01, "beta1": b1, "beta2": b2, "eps": e}}
                     for b1, b2, e in ((0.9, 0.999, 1e-8), (0.8, 0.99, 1e-6), (0.95, 0.9, 1e-7))]),
    "sgd": ({"optimizer": {"name": "sgd"}}, SGD_LRS),
    "momentum": ({"optimizer": {"name": "momentum"}},
                 [{"optimizer": {"lr": 0.01, "momentum": m}} for m in (0.5, 0.9, 0.0)]),
    # lr / (1 - momentum) <= 0.3: at larger effective steps fp32 rounding grows chaotically
    "nesterov": ({"optimizer": {"name": "nesterov"}},
                 [{"optimizer": {"lr": lr}} for lr in (0.01, 0.02, 0.03)]),
    "rmsprop": ({"optimizer": {"name": "rmsprop"}},
                [{"optimizer": {"lr": 0.003, "alpha": a}} for a in (0.99, 0.9, 0.5)]),
    "adagrad": ({"optimizer": {"name": "adagrad"}}, [{"optimizer": {"lr": 0.05}}] * 3),
    "step": ({"schedule": {"name": "step", "step_size": 3, "gamma": 0.5}}, LRS),
    "multistep": ({"schedule": {"name": "multistep", "milestones": [2, 5]}}, LRS),
    "exponential": ({"schedule": {"name": "exponential", "gamma": 0.8}}, LRS),
    "warmup-cosine": ({"schedule": {"name": "cosine", "warmup_epochs": 2, "min_lr": 1e-4}}, LRS),
    "plateau": ({"schedule": {"name": "plateau", "patience": 0, "factor": 0.5}}, LRS),
    "inits": ({}, [{"init": i} for i in ({"name": "xavier_uniform"},
                                          {"name": "kaiming_normal", "gain": 0.5},
                                          {"name": "normal", "std": 0.3})]),
    "orthogonal-tanh": ({"model": {"activation": "tanh"}, "init": {"name": "orthogonal"}}, LRS),
    "sigmoid": ({"model": {"activation": "sigmoid"}}, LRS),
    "gelu": ({"model": {"activation": "gelu"}}, LRS),
    "elu": ({"model": {"activation": "elu"}}, LRS),
    "leaky_relu": ({"model": {"activation": "leaky_relu"}}, LRS),
    "dropout": ({}, [{"model": {"dropout": p}} for p in (0.1, 0.3, 0.5)]),
    # SGD: with Adam the gradient of a bias before batch norm is rounding noise that Adam
    # rescales to a full step, so two implementations that are not bit-identical drift apart.
    "batch_norm": ({"model": {"batch_norm": True}, "optimizer": {"name": "momentum"}},
                   [{"optimizer": {"lr": lr}} for lr in (0.01, 0.03, 0.05)]),
    # identity skips around the hidden blocks after the first (the shipped default model)
    "residual": ({"model": {"residual": True}}, LRS),
    "residual-batch_norm-dropout": ({"model": {"residual": True, "depth": 3, "batch_norm": True,
                                               "dropout": 0.2}, "optimizer": {"name": "momentum"}},
                                    [{"optimizer": {"lr": lr}} for lr in (0.01, 0.03, 0.05)]),
    "residual-l1-l2": ({"model": {"residual": True}},
                       [{"regularization": {"l1": 1e-3}}, {"regularization": {"l2": 1e-2}},
                        {"regularization": {"l1": 1e-4, "l2": 1e-3}}]),
    "l1-l2": ({}, [{"regularization": {"l1": 1e-3}}, {"regularization": {"l2": 1e-2}},
                   {"regularization": {"l1": 1e-4, "l2": 1e-3}}]),
    "decoupled": ({}, [{"regularization": {"weight_decay": w}} for w in (0.0, 0.1, 1.0)]),
    "grad_clip": ({"optimizer": {"name": "sgd", "lr": 0.1}},
                  [{"regularization": {"grad_clip": c}} for c in (0.05, 0.5, 100.0)]),
    "divergence": ({"optimizer": {"name": "sgd"}},
                   [{"optimizer": {"lr": lr}} for lr in (0.1, 1.0e6, 0.05)]),
    "early_stopping": ({}, [{"regularization": {"early_stopping_patience": p}} for p in (1, 2, 3)]),
}


def assert_member_equals_single(single, member, rel):
    assert member.status == single.status
    assert member.diverged_at_step == single.diverged_at_step
    assert [r["step"] for r in member.curve] == [r["step"] for r in single.curve]
    for a, b in zip(single.curve, member.curve):
        for col in CURVE:
            if a[col] is None:
                assert b[col] is None, col
            else:
                assert b[col] == pytest.approx(a[col], rel=rel, abs=1e-7), (a["step"], col)
        if a["layer_grad_norms"] is not None:
            assert b["layer_grad_norms"] == pytest.approx(a["layer_grad_norms"], rel=rel, abs=1e-7)
    for key in METRICS:
        if single.metrics[key] is None:
            assert member.metrics[key] is None, key
        else:
            assert member.metrics[key] == pytest.approx(single.metrics[key], rel=rel, abs=1e-7), key
    assert member.layer_names == single.layer_names


@pytest.mark.parametrize("name", list(FACTORS))
def test_each_member_equals_the_single_run_engine_fp32(data, name):
    factor, per_member = FACTORS[name]
    specs = member_specs(factor, per_member)
    members = train_cohort(specs, dataset=data, cohort_id="t")
    for spec, member in zip(specs, members):
        assert_member_equals_single(train(spec, dataset=data), member, rel=1e-5)
        assert member.provenance["cohort_size"] == len(specs)
        assert member.metrics["activation_peak_bytes"] > 0  # measured, not left null
    if name == "divergence":
        assert [m.status for m in members] == ["ok", "diverged", "ok"]
        assert members[0].metrics["steps"] == STEPS  # the others went on
    if name == "early_stopping":
        assert len({m.metrics["steps"] for m in members}) > 1  # each stopped on its own


def reference_float64(spec, ds):
    """The run in float64 with torch.optim (foreach off): the float64 reference loop."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, ds.input_shape, ds.n_classes, spec.init).double()
    params = list(model.parameters())
    weights = weight_parameters(model)
    opt = build_optimizer(params, spec.optimizer, fast=False)
    gen = torch.Generator().manual_seed(spec.seed)
    x, y = torch.as_tensor(ds.x_train).double(), torch.as_tensor(ds.y_train)
    losses, step, reg = [], 0, spec.regularization
    while step < STEPS:
        for idx in torch.randperm(len(y), generator=gen).split(spec.budget.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            extra = penalty(weights, reg)
            opt.zero_grad(set_to_none=True)
            (loss + extra if extra is not None else loss).backward()
            if reg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, reg.grad_clip, foreach=False)
            decay_weights(weights, opt.param_groups[0]["lr"], reg.weight_decay)
            opt.step()
            step += 1
            if step % 20 == 0:
                with torch.no_grad():
                    model.eval()
                    losses.append(F.cross_entropy(model(x), y).item())
                    model.train()
            if step == STEPS:
                break
    return losses


@pytest.mark.parametrize("name", ["adam", "sgd", "momentum", "nesterov", "rmsprop", "adagrad",
                                  "l1-l2", "decoupled", "grad_clip", "residual",
                                  "residual-l1-l2"])  # fmt: skip
def test_each_member_equals_a_float64_reference_within_1e_10(data, name):
    factor, per_member = FACTORS[name]
    specs = member_specs(factor, per_member)
    members = train_cohort(specs, dataset=data, dtype=torch.float64)
    for spec, member in zip(specs, members):
        got = [r["train_loss"] for r in member.curve[1:]]
        want = reference_float64(spec, data)
        assert len(got) == len(want) == STEPS // 20
        for g, w in zip(got, want):
            assert math.isclose(g, w, rel_tol=1e-10), (g, w)


def test_a_cohort_batch_writes_each_members_run_directory(data, tmp_path, monkeypatch):
    from nnopt.train import batch_support

    monkeypatch.setitem(batch_support.DATASETS, member_specs({}, LRS)[0].data, data)
    specs = member_specs({}, LRS)
    items = [{"study": "s", "factors": {"optimizer.lr": s.optimizer.lr}, "spec": s,
              "out": str(tmp_path / "c" / s.run_id), "cohort": "s-c0"} for s in specs]  # fmt: skip
    rows = run_batch(items)
    assert [r["status"] for r in rows] == ["ok"] * 3
    alone = tmp_path / "alone"
    for s in specs:
        run_one(s, alone / s.run_id, study="s")
        mine, ref = read_run(tmp_path / "c" / s.run_id), read_run(alone / s.run_id)
        assert mine["run_id"] == ref["run_id"] == s.run_id
        assert mine["metrics"].keys() == ref["metrics"].keys()
        assert mine["metrics"]["test_accuracy"] == pytest.approx(ref["metrics"]["test_accuracy"])
        assert mine["provenance"]["cohort_size"] == 3
    assert run_batch(items)[0]["trained"] is False  # finished members are skipped


def test_a_one_sample_last_batch_is_dropped_alike_with_batch_norm(data):
    # 301 train samples in batches of 30: ten full batches and one of a single sample, which
    # BatchNorm1d cannot normalize in training; both engines drop it (10 steps an epoch)
    ds = Dataset(np.concatenate([data.x_train, data.x_val[:1]]),
                 np.concatenate([data.y_train, data.y_val[:1]]), data.x_val, data.y_val,
                 data.x_test, data.y_test, 3, (12,))
    budget = {"budget": {"steps": None, "epochs": 3, "batch_size": 30},
              "evaluation": {"every_steps": 5}}
    specs = member_specs({"model": {"batch_norm": True}, "optimizer": {"name": "momentum"},
                          **budget}, [{"optimizer": {"lr": lr}} for lr in (0.01, 0.03)])
    members = train_cohort(specs, dataset=ds)
    for spec, member in zip(specs, members):
        single = train(spec, dataset=ds)
        assert single.status == member.status == "ok", (single.error, member.error)
        assert single.metrics["steps"] == member.metrics["steps"] == 30
        assert single.metrics["epochs"] == member.metrics["epochs"] == 3.0
        assert_member_equals_single(single, member, rel=1e-5)
    # without batch norm the one-sample batch is a step like any other (11 an epoch)
    plain = member_specs(budget, [{}])[0]
    assert train(plain, dataset=ds).metrics["steps"] == 33
    assert train_cohort([plain, plain], dataset=ds)[0].metrics["steps"] == 33
