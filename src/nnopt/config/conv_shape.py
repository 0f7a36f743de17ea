"""The conv layers a CNN spec describes, and their output sizes: one definition for the
model builder (nnopt.train.models) and the planner's cost model (nnopt.plan.packing)."""

from __future__ import annotations

from nnopt.config.spec import ModelSpec

__all__ = ["conv_layers", "conv_length"]


def conv_layers(spec: ModelSpec) -> list[tuple[int, int, int, int]]:
    """(channels, kernel, stride, padding) of each conv layer: the per-layer lists, or
    `depth` layers of `width` channels, `kernel_size`, stride 1 and 'same' padding."""
    n = len(spec.channels) or spec.depth
    channels = spec.channels or (spec.width,) * n
    kernels = spec.kernel_sizes or (spec.kernel_size,) * n
    strides = spec.strides or (1,) * n
    paddings = spec.paddings or tuple(k // 2 for k in kernels)
    return list(zip(channels, kernels, strides, paddings))


def conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1  # torch.nn.Conv1d's output size
