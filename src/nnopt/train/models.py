"""Models: MLP and small 1-D / 2-D CNN builders, and the weight-init registry.

`build_model(model_spec, input_shape, n_classes, init=None)` returns an `nn.Sequential`
whose hidden blocks are [Linear|Conv] -> [BatchNorm] -> activation -> [Dropout]: batch norm
before the activation (Ioffe & Szegedy 2015), dropout after it. The init registry applies
to the weights of Linear/Conv layers; their biases are zeroed unless the init is `default`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from nnopt.config.conv_shape import conv_layers, conv_length
from nnopt.config.spec import InitSpec, ModelSpec, SpecError, did_you_mean

__all__ = [
    "ACTIVATION_MODULES",
    "Residual",
    "conv_layers",
    "INIT_FUNCTIONS",
    "MODEL_BUILDERS",
    "build_model",
    "init_weights",
    "weight_parameters",
]

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}

# The non-linearity name torch.nn.init.calculate_gain knows for each activation; gelu and
# elu have no entry there, and behave like relu for the purpose of variance preservation.
_GAIN_NAME = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "gelu": "relu",
    "elu": "relu",
}


def _block(layer: nn.Module, norm: nn.Module | None, spec: ModelSpec) -> list[nn.Module]:
    mods = [layer] + ([norm] if norm is not None else [])
    mods.append(ACTIVATION_MODULES[spec.activation]())
    if spec.dropout > 0:
        mods.append(nn.Dropout(spec.dropout))
    return mods


class Residual(nn.Module):
    """x + block(x): an identity skip around one hidden block (He et al. 2016); shapes kept."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _mlp(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    n_in = math.prod(input_shape)
    mods: list[nn.Module] = [nn.Flatten()]  # (n, *input_shape) -> (n, n_in)
    for i in range(spec.depth):
        norm = nn.BatchNorm1d(spec.width) if spec.batch_norm else None
        block = _block(nn.Linear(n_in, spec.width), norm, spec)
        # Skips from the second hidden block on: the first changes the width (n_in -> width).
        mods += [Residual(nn.Sequential(*block))] if spec.residual and i > 0 else block
        n_in = spec.width
    mods.append(nn.Linear(n_in, n_classes))
    return nn.Sequential(*mods)


def _cnn(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int, dims: int):
    """Conv blocks (`conv_layers`), then the head: a fixed-size adaptive average pool (8
    positions in 1-D, 4x4 in 2-D) or, with head 'flatten', every position's features (the
    MNIST-1D paper's CNN), and one Linear layer."""
    conv, norm_cls, pool = {
        1: (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d(8)),
        2: (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d(4)),
    }[dims]
    mods: list[nn.Module] = []
    if len(input_shape) == dims:  # no channel axis: (n, L) -> (n, 1, L)
        mods.append(nn.Unflatten(1, (1, *input_shape)))
        input_shape = (1, *input_shape)
    if len(input_shape) != dims + 1:
        axes = "length" if dims == 1 else "height, width"
        raise SpecError(
            f"model.kind: 'cnn{dims}d' needs inputs of shape (channels, {axes}), "
            f"the dataset gives {input_shape}; use model.kind 'mlp' or another dataset"
        )
    c_in, spatial = input_shape[0], list(input_shape[1:])
    for channels, kernel, stride, padding in conv_layers(spec):
        if kernel % 2 == 0 and not spec.paddings:
            raise SpecError(f"model.kernel_size: must be odd for 'same' padding, got {kernel}")
        spatial = [conv_length(n, kernel, stride, padding) for n in spatial]
        if min(spatial) < 1:
            raise SpecError(
                f"model: the conv layers shrink the input {tuple(input_shape[1:])} to nothing "
                f"at ({channels} channels, kernel {kernel}, stride {stride}, padding {padding})"
            )
        layer = conv(c_in, channels, kernel, stride=stride, padding=padding)
        mods += _block(layer, norm_cls(channels) if spec.batch_norm else None, spec)
        c_in = channels
    if spec.head == "flatten":  # (n, C, *spatial) -> (n, C * prod(spatial))
        mods += [nn.Flatten(), nn.Linear(c_in * math.prod(spatial), n_classes)]
    else:
        mods += [pool, nn.Flatten(), nn.Linear(c_in * 8 if dims == 1 else c_in * 16, n_classes)]
    return nn.Sequential(*mods)


def _python_model(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """model.kind python: the user's factory (nnopt.train.plugins), found via spec.code_root."""
    from nnopt.train.plugins import build_model_plugin

    return build_model_plugin(spec, input_shape, n_classes)


MODEL_BUILDERS: dict[str, Callable[[ModelSpec, tuple[int, ...], int], nn.Module]] = {
    "mlp": _mlp,
    "cnn1d": lambda spec, shape, k: _cnn(spec, shape, k, 1),
    "cnn2d": lambda spec, shape, k: _cnn(spec, shape, k, 2),
    "python": _python_model,
}


# --- init registry: fn(weight, init_spec, activation) fills `weight` in place --------------


def _gain(spec: InitSpec, activation: str) -> float:
    if spec.gain is not None:
        return spec.gain
    return nn.init.calculate_gain(_GAIN_NAME[activation])


def _kaiming(fill: Callable) -> Callable[[torch.Tensor, InitSpec, str], None]:
    # He et al. 2015: std = gain / sqrt(fan_in); an explicit `gain` overrides the activation's.
    def init(w: torch.Tensor, spec: InitSpec, activation: str) -> None:
        fill(w, nonlinearity="linear")  # gain 1, then scale
        w.mul_(_gain(spec, activation))

    return init


INIT_FUNCTIONS: dict[str, Callable[[torch.Tensor, InitSpec, str], None] | None] = {
    "default": None,  # keep the framework's own init (Linear/Conv: kaiming-uniform, a=sqrt 5)
    "zero": lambda w, s, a: nn.init.zeros_(w),
    "constant": lambda w, s, a: nn.init.constant_(w, s.value),
    "normal": lambda w, s, a: nn.init.normal_(w, 0.0, s.std),
    "uniform": lambda w, s, a: nn.init.uniform_(w, -s.bound, s.bound),
    "xavier_uniform": lambda w, s, a: nn.init.xavier_uniform_(w, gain=_gain(s, a)),
    "xavier_normal": lambda w, s, a: nn.init.xavier_normal_(w, gain=_gain(s, a)),
    "kaiming_uniform": _kaiming(nn.init.kaiming_uniform_),
    "kaiming_normal": _kaiming(nn.init.kaiming_normal_),
    "orthogonal": lambda w, s, a: nn.init.orthogonal_(w, gain=_gain(s, a)),
}

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@torch.no_grad()
def init_weights(model: nn.Module, spec: InitSpec, activation: str) -> None:
    """Apply `spec` to every Linear/Conv weight; zero their biases unless `default`."""
    if spec.name not in INIT_FUNCTIONS:
        known = ", ".join(INIT_FUNCTIONS)
        raise SpecError(
            f"init.name: unknown value {spec.name!r}; allowed: {known}"
            + did_you_mean(spec.name, INIT_FUNCTIONS)
        )
    fill = INIT_FUNCTIONS[spec.name]
    if fill is None:
        return
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            fill(module.weight, spec, activation)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    n_classes: int,
    init: InitSpec | None = None,
) -> nn.Module:
    """The model for `spec`; weights drawn from torch's global RNG (seed it first)."""
    if spec.kind not in MODEL_BUILDERS:
        known = ", ".join(MODEL_BUILDERS)
        raise SpecError(f"model.kind: unknown value {spec.kind!r}; allowed: {known}")
    model = MODEL_BUILDERS[spec.kind](spec, tuple(input_shape), n_classes)
    if init is not None:
        init_weights(model, init, spec.activation)
    return model


def weight_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Weights of Linear/Conv layers only: what L1/L2/decay act on (not biases, not BN)."""
    return [m.weight for m in model.modules() if isinstance(m, _WEIGHTED)]
