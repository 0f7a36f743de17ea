"""The planner's cost model: estimated seconds to train one run on one core.

`estimate_cost_s(spec)` = a run's fixed cost + steps x (per-step launches + FLOPs of
forward and backward at the throughput of that kind of layer) + evaluations. It balances
jobs (nnopt.plan.packing) and never changes a result: a wrong estimate costs balance only.
"""

from __future__ import annotations

import math

from nnopt.config.conv_shape import conv_layers, conv_length
from nnopt.config.spec import RunSpec

__all__ = ["estimate_cost_s"]

# Cost model constants, measured on the 2-core reference machine with the engine's
# preloaded-tensor loop (benchmarks/studyset.py prints estimate vs measured per batch).
_RUN_OVERHEAD_S = 0.05  # model/optimizer build, final test evaluation, writing the run dir
_STEP_OVERHEAD_S = 190e-6  # python + optimizer of one step, plus per layer:
_LAYER_STEP_S = 35e-6  # ... each Linear/Conv layer's forward+backward launches
_NORM_STEP_S = 60e-6  # ... and each hidden layer's batch norm or dropout
_EVAL_OVERHEAD_S = 0.5e-3
# CNNs (fitted to the engine's per-step CPU time on MNIST-1D: the shipped 3x25-channel
# stride-2 net ~2 ms a step at batch 100, 1-D nets of 16-64 channels 1-13 ms): each conv
# layer's forward + backward launches (~0.5 ms, mostly oneDNN's per-call setup), and
# the conv FLOPs (at each layer's own output length) at their own throughput.
_CONV_LAYER_STEP_S = 500e-6
_CONV_FLOPS_PER_S = 35e9
_FLOPS_PER_S = 25e9  # sustained fp32 throughput of one core on these small matmuls
_BF16_CPU_SLOWDOWN = 2.0  # bf16 autocast on a CPU without AMX runs slower than fp32
_RANK_LAUNCH_S = 1.5  # data-parallel: per rank, a spawned process that imports torch
_ALLREDUCE_S = 200e-6  # data-parallel: one gradient all-reduce (gloo, small model)

# (input features, classes, samples) per dataset, for the cost model only: a wrong guess
# costs balance between jobs, never correctness.
_DATA_SHAPES = {"mnist1d": (40, 10, 4000), "digits": (64, 10, 1797)}
_UNKNOWN_SHAPE = (100, 10, 10_000)


def _data_dims(spec: RunSpec) -> tuple[int, int, int]:
    d = spec.data
    if d.name in ("spirals", "blobs"):
        features = 2 if d.name == "spirals" else d.n_features
        return features, d.n_classes, d.n_samples or 1000
    features, classes, samples = _DATA_SHAPES.get(d.name, _UNKNOWN_SHAPE)
    return features, classes, d.n_samples or samples


def _conv_flops(spec: RunSpec, features: int, classes: int) -> float:
    """Multiply-adds × 2 of one sample's CNN forward: each conv layer at its own output
    size (strides shrink the signal), then the head. A 2-D net sees `features` pixels as a
    square image of one channel."""
    m, dims = spec.model, 2 if spec.model.kind == "cnn2d" else 1
    spatial, c_in, macs = [math.isqrt(features) if dims == 2 else features] * dims, 1, 0
    for channels, kernel, stride, padding in conv_layers(m):
        spatial = [max(1, conv_length(n, kernel, stride, padding)) for n in spatial]
        macs += math.prod(spatial) * channels * c_in * kernel**dims
        c_in = channels
    head = math.prod(spatial) if m.head == "flatten" else (8 if dims == 1 else 16)
    return 2.0 * (macs + c_in * head * classes)


def _forward_flops(spec: RunSpec, features: int, classes: int) -> float:
    """Multiply-adds × 2 of one sample's forward pass (MLP, or CNN: _conv_flops)."""
    m = spec.model
    if m.kind != "mlp":
        return _conv_flops(spec, features, classes)
    if m.depth == 0:
        return 2.0 * features * classes
    return 2.0 * (features * m.width + (m.depth - 1) * m.width**2 + m.width * classes)


def _step_s(spec: RunSpec, fwd: float) -> float:
    """One optimizer step: fixed launches per layer plus the FLOPs of forward + backward
    (≈ 3 forwards) at the throughput of that kind of layer."""
    m, b = spec.model, spec.budget
    if m.kind == "mlp":
        step_s = _STEP_OVERHEAD_S + _LAYER_STEP_S * (m.depth + 1)
        step_s += _NORM_STEP_S * m.depth * (int(m.batch_norm) + int(m.dropout > 0))
        return step_s + 3.0 * fwd * b.batch_size / _FLOPS_PER_S
    n_conv = len(conv_layers(m))
    step_s = _STEP_OVERHEAD_S + _LAYER_STEP_S + _CONV_LAYER_STEP_S * n_conv
    step_s += _NORM_STEP_S * n_conv * (int(m.batch_norm) + int(m.dropout > 0))
    return step_s + 3.0 * fwd * b.batch_size / _CONV_FLOPS_PER_S


def estimate_cost_s(spec: RunSpec) -> float:
    """Estimated seconds to train `spec` on one core: steps × (overhead + FLOPs) + evals."""
    features, classes, samples = _data_dims(spec)
    n_train = max(1, int(samples * (1 - spec.data.val_fraction - spec.data.test_fraction)))
    n_val = int(samples * spec.data.val_fraction)
    b = spec.budget
    steps_per_epoch = math.ceil(n_train / b.batch_size)
    steps = b.steps if b.steps is not None else b.epochs * steps_per_epoch
    e = spec.evaluation
    every = e.every_steps or max(1, round(e.every_epochs * steps_per_epoch))
    evals = math.ceil(steps / every) + 1
    fwd = _forward_flops(spec, features, classes)
    step_s = _step_s(spec, fwd)
    eval_samples = min(n_train, e.max_train_eval_samples) + n_val
    flops_per_s = _FLOPS_PER_S if spec.model.kind == "mlp" else _CONV_FLOPS_PER_S
    eval_s = _EVAL_OVERHEAD_S + fwd * eval_samples / flops_per_s
    cost = _RUN_OVERHEAD_S + steps * step_s + evals * eval_s
    if spec.device.precision == "bf16" and spec.device.device == "cpu":
        cost *= _BF16_CPU_SLOWDOWN
    if spec.device.world_size > 1:
        cost += _RANK_LAUNCH_S * spec.device.world_size + steps * _ALLREDUCE_S
    return cost
