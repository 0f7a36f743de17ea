"""Model builders and the init registry."""

import math

import pytest
import torch
from torch import nn

from nnopt.train.models import ACTIVATION_MODULES, INIT_FUNCTIONS, MODEL_BUILDERS, build_model, weight_parameters
from nnopt.train.optim import OPTIMIZERS, SCHEDULES
from nnopt.config.spec import ACTIVATIONS, INITS, MODEL_KINDS, OPTIMIZERS as SPEC_OPTIMIZERS
from nnopt.config.spec import SCHEDULES as SPEC_SCHEDULES
from nnopt.config.spec import InitSpec, ModelSpec, SpecError


def test_registries_match_spec_names():
    assert tuple(ACTIVATION_MODULES) == ACTIVATIONS
    assert tuple(INIT_FUNCTIONS) == INITS
    assert tuple(MODEL_BUILDERS) == MODEL_KINDS
    assert tuple(OPTIMIZERS) == SPEC_OPTIMIZERS
    assert tuple(SCHEDULES) == SPEC_SCHEDULES


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_layout(activation):
    spec = ModelSpec(depth=2, width=16, activation=activation, dropout=0.2, batch_norm=True)
    model = build_model(spec, (40,), 10)
    kinds = [type(m) for m in model]
    act = type(ACTIVATION_MODULES[activation]())
    block = [nn.Linear, nn.BatchNorm1d, act, nn.Dropout]  # BN before, dropout after activation
    assert kinds == [nn.Flatten, *block, *block, nn.Linear]
    assert model(torch.randn(5, 40)).shape == (5, 10)


def test_mlp_depth_zero_is_linear():
    model = build_model(ModelSpec(depth=0), (8,), 3)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear]


@pytest.mark.parametrize("kind, shape", [("cnn1d", (40,)), ("cnn1d", (2, 40)), ("cnn2d", (1, 8, 8))])
def test_cnn_shapes(kind, shape):
    model = build_model(ModelSpec(kind=kind, depth=2, width=4, kernel_size=3, batch_norm=True), shape, 7)
    assert model(torch.randn(3, *shape)).shape == (3, 7)
    convs = [m for m in model if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert len(convs) == 2 and convs[0].out_channels == 4


def test_cnn2d_rejects_flat_input():
    with pytest.raises(SpecError, match="model.kind: 'cnn2d' needs inputs"):
        build_model(ModelSpec(kind="cnn2d"), (64,), 10)


def _weights(init: InitSpec, activation="relu", width=256):
    torch.manual_seed(0)
    model = build_model(ModelSpec(depth=1, width=width, activation=activation), (128,), 4, init)
    return model, model[1].weight.detach(), model[1].bias.detach()


@pytest.mark.parametrize("name", INITS)
def test_every_init_runs_and_zeroes_biases(name):
    model, w, b = _weights(InitSpec(name=name))
    assert torch.isfinite(w).all()
    if name == "default":
        assert b.abs().sum() > 0  # framework default keeps its random biases
    else:
        assert b.abs().sum() == 0


@pytest.mark.parametrize("init, check", [
    (InitSpec(name="zero"), lambda w: (w == 0).all()),
    (InitSpec(name="constant", value=0.3), lambda w: (w == 0.3).all()),
    (InitSpec(name="normal", std=0.2), lambda w: abs(w.std().item() - 0.2) < 0.01),
    (InitSpec(name="uniform", bound=0.5), lambda w: w.abs().max() <= 0.5 and w.abs().max() > 0.45),
    # Glorot: std = gain * sqrt(2 / (fan_in + fan_out)); relu gain sqrt(2)
    (InitSpec(name="xavier_normal"), lambda w: abs(w.std().item() - math.sqrt(2) * math.sqrt(2 / 384)) < 0.005),
    # He: std = sqrt(2 / fan_in) for relu
    (InitSpec(name="kaiming_normal"), lambda w: abs(w.std().item() - math.sqrt(2 / 128)) < 0.005),
    (InitSpec(name="kaiming_uniform", gain=1.0), lambda w: w.abs().max() <= math.sqrt(3 / 128) + 1e-6),
])
def test_init_statistics(init, check):
    assert check(_weights(init)[1])


def test_orthogonal_init_is_orthogonal():
    _, w, _ = _weights(InitSpec(name="orthogonal", gain=1.0), width=64)
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)


def test_xavier_gain_follows_activation():
    _, w_tanh, _ = _weights(InitSpec(name="xavier_normal"), activation="tanh")
    expected = (5 / 3) * math.sqrt(2 / 384)  # calculate_gain('tanh') = 5/3
    assert abs(w_tanh.std().item() - expected) < 0.005


def test_weight_parameters_excludes_biases_and_bn():
    model = build_model(ModelSpec(depth=2, width=8, batch_norm=True), (4,), 2)
    weights = weight_parameters(model)
    assert len(weights) == 3 and all(w.ndim == 2 for w in weights)
