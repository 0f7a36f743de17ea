"""A train job imports no compiler stack, and its numbers are torch.optim's bit for bit.

nnopt.train.eager_optim defers the `torch._dynamo` import of torch.optim's compile guards.
Each check runs in a fresh interpreter, since the import is per process: one trains with
the deferral (the engine as it is), one with `torch._dynamo` preloaded, where the deferral
steps aside and torch's guards run as shipped; the final parameters must be equal bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Every torch.optim family the engine builds: the engine (its fused/foreach kernels, a per-step
# schedule, decoupled weight decay) and a hand loop on the single-tensor path.
CHILD = r"""
import hashlib, json, sys
import torch
if sys.argv[1] == "preloaded":
    import torch._dynamo  # torch's guards as shipped: the deferral is a no-op
import numpy as np
from nnopt.config.spec import parse_spec
from nnopt.train.data import Dataset
from nnopt.train.engine import train

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int64)
ds = Dataset(x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:], 2, (6,))
from nnopt.train.optim import build_optimizer

def plain_loop(spec):  # the single-tensor (fast=False) path, 10 steps by hand
    torch.manual_seed(3)
    w = torch.nn.Parameter(torch.randn(8, 6))
    opt = build_optimizer([w], spec.optimizer, fast=False)
    for _ in range(10):
        opt.zero_grad()
        torch.tanh(torch.from_numpy(x) @ w.T).pow(2).mean().backward()
        opt.step()
    return w.detach().flatten().tolist()

digests = {}
for name in ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop",
             "adadelta", "nadam", "radam", "adamax", "asgd", "adafactor"):
    spec = parse_spec({
        "model": {"depth": 2, "width": 8}, "optimizer": {"name": name, "lr": 0.01},
        "schedule": {"name": "cosine"}, "regularization": {"weight_decay": 0.01},
        "budget": {"steps": 12, "batch_size": 16}, "evaluation": {"every_steps": 4},
        "seed": 3,
    })
    result = train(spec, dataset=ds)  # the engine: fused/foreach kernels, a schedule, decay
    numbers = [result.metrics["test_loss"], result.metrics["weight_norm"],
               [row["train_loss"] for row in result.curve], plain_loop(spec)]
    digests[name] = hashlib.sha256(json.dumps(numbers).encode()).hexdigest()
print(json.dumps({"dynamo": "torch._dynamo" in sys.modules, "digests": digests}))
"""


def _child(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True,
                          text=True, check=True, timeout=300)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {mode: _child(mode) for mode in ("deferred", "preloaded")}


def test_training_imports_no_compiler_stack(runs):
    assert runs["deferred"]["dynamo"] is False
    assert runs["preloaded"]["dynamo"] is True  # the reference did run torch's own guards


def test_deferred_guards_train_bit_identical_to_torch_optim(runs):
    deferred, reference = runs["deferred"]["digests"], runs["preloaded"]["digests"]
    assert len(deferred) == 13
    assert deferred == reference


def test_guards_hand_over_to_torch_once_dynamo_is_loaded():
    code = r"""
import sys, torch
from nnopt.train.eager_optim import defer_dynamo_import
defer_dynamo_import()
w = torch.nn.Parameter(torch.ones(3))
opt = torch.optim.Adam([w], lr=0.1)
w.grad = torch.ones(3); opt.step()
assert "torch._dynamo" not in sys.modules
import torch._dynamo
raw = torch.optim.Optimizer.zero_grad.__wrapped__
before = getattr(raw, "__dynamo_disable")
opt.zero_grad(); w.grad = torch.ones(3); opt.step()
after = getattr(raw, "__dynamo_disable")
print(before is not after, getattr(after, "_torchdynamo_disable", False))
"""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()  # fmt: skip
    assert out == ["True", "True"]  # torch's own dynamo.disable replaced the deferral
