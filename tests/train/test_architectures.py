"""Per-layer CNNs and the residual MLP: the shapes and arithmetic the literature's models need."""

from __future__ import annotations

import pytest
import torch

from nnopt.config.spec import SpecError, parse_spec
from nnopt.train.models import build_model, conv_layers


def _model(**model):
    return parse_spec({"model": model}).model


def test_residual_mlp_adds_the_skip_by_hand():
    spec = _model(depth=3, width=8, residual=True)
    torch.manual_seed(0)
    net = build_model(spec, (5,), 3)
    x = torch.randn(4, 5)
    lin = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    h = torch.relu(lin[0](x))
    h = h + torch.relu(lin[1](h))
    h = h + torch.relu(lin[2](h))
    torch.testing.assert_close(net(x), lin[3](h), rtol=0, atol=0)


def test_plain_mlp_is_unchanged_by_the_residual_option():
    torch.manual_seed(0)
    a = build_model(_model(depth=2, width=8), (5,), 3)
    torch.manual_seed(0)
    b = build_model(_model(depth=2, width=8, residual=True), (5,), 3)
    for pa, pb in zip(a.parameters(), b.parameters()):  # same draws, same order
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_per_layer_cnn_shapes_follow_conv_arithmetic():
    spec = _model(kind="cnn1d", channels=[4, 6], kernel_sizes=[5, 3], strides=[2, 1],
                  paddings=[0, 1], head="flatten")  # fmt: skip
    assert conv_layers(spec) == [(4, 5, 2, 0), (6, 3, 1, 1)]
    net = build_model(spec, (40,), 10)
    # length 40 -> (40 - 5) // 2 + 1 = 18 -> (18 + 2 - 3) // 1 + 1 = 18; 6 * 18 features
    assert net[-1].in_features == 6 * 18
    assert net(torch.randn(2, 40)).shape == (2, 10)


def test_default_cnn_keeps_same_padding_and_pool():
    net = build_model(_model(kind="cnn1d", depth=2, width=4, kernel_size=3), (40,), 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.stride, c.padding) for c in convs] == [((1,), (1,)), ((1,), (1,))]
    assert isinstance(net[-3], torch.nn.AdaptiveAvgPool1d)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"kind": "cnn1d", "channels": [4, 4], "strides": [2]}, r"model\.strides: 1 entries for 2"),
        ({"kind": "cnn1d", "kernel_sizes": [4, 3]}, r"model\.kernel_size: must be odd .*got 4"),
        ({"kind": "cnn1d", "residual": True}, r"model\.residual: only for model\.kind 'mlp'"),
        ({"depth": 1, "residual": True}, r"model\.residual: needs model\.depth >= 2"),
        ({"kind": "cnn1d", "channels": [0]}, r"model\.channels: expected a list of integers >= 1"),
        ({"head": "max"}, r"model\.head: unknown value 'max'"),
    ],
)
def test_bad_layer_settings_are_one_line(model, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"model": model})


def test_a_stack_that_shrinks_the_input_to_nothing_is_refused():
    spec = _model(kind="cnn1d", channels=[4, 4, 4], kernel_sizes=[5, 5, 5], strides=[4, 4, 4],
                  paddings=[0, 0, 0])  # fmt: skip
    with pytest.raises(SpecError, match="shrink the input"):
        build_model(spec, (40,), 10)
