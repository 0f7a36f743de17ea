"""The stacked model's fast paths against their references (nnopt.train.stacked).

* The flat (K, P) optimizer update against the per-tensor update on the same gradients.
* The stacked forward (row and column layers, in-place ReLU, chunked shared evaluation)
  against each member's own nn.Module.
* A member's state read back in nn.Module's layout (Linear weights stored transposed).
* ColumnLinear's hand-written backward against autograd (gradcheck).
"""

import pytest
import torch
from torch import nn

from nnopt.config.spec import parse_spec
from nnopt.train.models import build_model
from nnopt.train.stacked import ColumnLinear, StackedMLP, StackedOptimizer

K = 4
HYPER = {"lr": [0.01, 0.02, 0.003, 0.05], "momentum": [0.9, 0.5, 0.0, 0.8],
         "beta1": [0.9, 0.8, 0.95, 0.9], "beta2": [0.999, 0.99, 0.9, 0.98],
         "eps": [1e-8, 1e-6, 1e-7, 1e-8], "alpha": [0.99, 0.9, 0.5, 0.8]}  # fmt: skip


def members(width: int = 16, depth: int = 2, dtype=torch.float64):
    spec = parse_spec({"model": {"depth": depth, "width": width}})
    models = []
    for seed in range(K):
        torch.manual_seed(seed)
        models.append(build_model(spec.model, (12,), 3, spec.init))
    return models, StackedMLP(models, dtype, "cpu")


@pytest.mark.parametrize("family", ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"])
def test_flat_update_equals_the_per_tensor_reference(family):
    _, model = members()
    separate = [p.detach().clone().requires_grad_(True) for p in model.params]
    flat = StackedOptimizer(family, model.params, HYPER)
    reference = StackedOptimizer(family, separate, HYPER)
    assert flat.flat is not None and reference.flat is None
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, q in zip(model.params, separate):
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            q.grad = p.grad.clone()
        flat.step()
        reference.step()
    for p, q in zip(model.params, separate):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=0)
    assert flat.state_bytes_per_member() == reference.state_bytes_per_member()


@pytest.mark.parametrize("width", [16, 2])  # 2: the hidden layers narrow too (column layers)
def test_stacked_forward_equals_each_members_module(width):
    models, model = members(width=width)
    model.eval_rows = 7  # the shared evaluation input runs in chunks of 7 rows
    x = torch.randn(K, 10, 12, dtype=torch.float64)
    shared = torch.randn(30, 12, dtype=torch.float64)
    per_member, on_shared = model.forward(x), model.forward(shared, shared=True)
    assert on_shared.shape == (K, 30, 3)
    for k, module in enumerate(models):
        module = module.double()
        torch.testing.assert_close(per_member[k], module(x[k]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(on_shared[k], module(shared), rtol=1e-12, atol=1e-12)


def test_member_state_is_the_modules_state_dict_layout():
    models, model = members()
    assert model.columns == {"5"}  # 16 -> 3: the classifier runs as W @ h^T
    for k, module in enumerate(models):
        state = model.member_state(k)
        for name, value in module.state_dict().items():
            assert state[name].shape == value.shape, name
            torch.testing.assert_close(state[name], value.double(), rtol=0, atol=0)
        model.load_member_state(k, {n: v * 2 for n, v in state.items()})
        torch.testing.assert_close(model.member_state(k)["1.weight"], state["1.weight"] * 2)
    assert isinstance(models[0][5], nn.Linear)


def test_column_linear_gradients_equal_autograds():
    gen = torch.Generator().manual_seed(1)
    h, w, bias = (torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
                  for shape in ((K, 5, 7), (K, 3, 7), (K, 3)))  # fmt: skip
    assert torch.autograd.gradcheck(ColumnLinear.apply, (h, w, bias))
    out = ColumnLinear.apply(h, w, bias)
    torch.testing.assert_close(out, torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2)))
    out.pow(2).sum().backward()
    assert h.grad.is_contiguous() and w.grad.is_contiguous()
