"""K MLPs as one stacked model, and the stacked optimizer updates (the cohort's math).

Member k's Linear weight is row k of a `(K, out, in)` tensor and the layer is one
`torch.baddbmm`; batch norm runs per member by viewing `(K, b, C)` as `(b, K*C)` channels
(`F.batch_norm` then keeps K*C running statistics: exactly BatchNorm1d's per member);
dropout draws each member's mask from that member's own generator. Every member is built by
`build_model` under its own seed and its parameters copied in, so inits match bit for bit.

The optimizer updates reproduce torch.optim's (single-tensor reference formulas, weight
decay 0, since decay is decoupled) with per-member hyperparameters as `(K, 1, 1)` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.train.models import Residual

__all__ = ["StackedMLP", "StackedOptimizer", "global_norm_clip_", "member_column"]


def member_column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-member values as a `(K, 1, ..., 1)` tensor broadcasting against `like` (K, ...)."""
    col = torch.tensor(list(values), dtype=like.dtype, device=like.device)
    return col.view(-1, *([1] * (like.dim() - 1)))


_SKIP_IN, _SKIP_OUT = "skip_in", "skip_out"  # around a Residual block's layers


def _layers(model: nn.Sequential) -> list[tuple[str, nn.Module | str]]:
    """(parameter-name prefix, module) of each layer in forward order; a Residual block
    (nnopt.train.models.Residual: x + block(x)) becomes its own layers between the markers
    (_SKIP_IN: keep x; _SKIP_OUT: add it back), named like its state_dict ('2.block.0')."""
    out: list[tuple[str, nn.Module | str]] = []
    for i, mod in enumerate(model):
        if isinstance(mod, Residual):
            out.append(("", _SKIP_IN))
            out += [(f"{i}.block.{j}", sub) for j, sub in enumerate(mod.block)]
            out.append(("", _SKIP_OUT))
        else:
            out.append((str(i), mod))
    return out


class StackedMLP:
    """The hidden blocks Linear -> [BatchNorm1d] -> activation -> [Dropout] (with an
    identity skip around a residual block), K at once."""

    def __init__(self, models: Sequence[nn.Sequential], dtype: torch.dtype, device):
        first = models[0]
        self.k = len(models)
        self.layers = _layers(first)
        self.names = [n for n, p in first.named_parameters() if p.requires_grad]
        self.params = [  # (K, *shape) each, in named_parameters order
            torch.stack([dict(m.named_parameters())[n].detach() for m in models])
            .to(device, dtype).requires_grad_(True)
            for n in self.names
        ]
        self.by_name = dict(zip(self.names, self.params))
        self.buffer_names = [n for n, _ in first.named_buffers() if not n.endswith("tracked")]
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(device, dtype)
            for n in self.buffer_names
        }
        # the Linear weights in model.modules() order (nnopt.train.models.weight_parameters)
        self.weights = [self.by_name[f"{name}.weight"] for name, mod in self.layers
                        if isinstance(mod, nn.Linear)]
        self.dropout_p: list[float] = []
        self.generators: list[torch.Generator] = []
        self.training = True

    def set_dropout(self, rates: Sequence[float], generators: Sequence[torch.Generator]):
        self.dropout_p, self.generators = list(rates), list(generators)

    def _batch_norm(self, name: str, mod: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
        k, b, c = h.shape
        flat = h.transpose(0, 1).reshape(b, k * c)  # member k's channel j -> column k*c + j
        mean, var = self.buffers[f"{name}.running_mean"], self.buffers[f"{name}.running_var"]
        out = F.batch_norm(
            flat, mean.view(-1), var.view(-1), self.by_name[f"{name}.weight"].view(-1),
            self.by_name[f"{name}.bias"].view(-1), self.training, mod.momentum, mod.eps,
        )  # fmt: skip
        return out.view(b, k, c).transpose(0, 1)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        # Each member's mask as torch's CPU dropout draws it: bernoulli_(1 - p) / (1 - p) on
        # a (b, C) tensor, from the member's generator (its global RNG stream when alone).
        masks = [
            torch.empty(h.shape[1:], dtype=h.dtype, device=h.device)
            .bernoulli_(1 - p, generator=g).div_(1 - p)
            for p, g in zip(self.dropout_p, self.generators)
        ]
        return h * torch.stack(masks)

    def _linear(self, name: str, h: torch.Tensor) -> torch.Tensor:
        w, bias = self.by_name[f"{name}.weight"], self.by_name[f"{name}.bias"]
        if h.dim() == 2:  # the shared evaluation input: one matmul for all members
            return torch.matmul(h, w.transpose(1, 2)) + bias.unsqueeze(1)
        return torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))

    def forward(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Per-member batches (K, b, *input) or one `shared` batch (b, *input) for all
        members (evaluation) -> logits (K, b, classes)."""
        h = x.flatten(1) if shared else x.flatten(2)
        skip: torch.Tensor | None = None
        for name, mod in self.layers:
            if mod == _SKIP_IN:
                skip = h
            elif mod == _SKIP_OUT:
                h = skip + h  # x + block(x), as Residual.forward
            elif isinstance(mod, nn.Flatten):
                continue
            elif isinstance(mod, nn.Linear):
                h = self._linear(name, h)
            elif isinstance(mod, nn.BatchNorm1d):
                h = self._batch_norm(name, mod, h)
            elif isinstance(mod, nn.Dropout):
                if self.training:
                    h = self._dropout(h)
            else:
                h = mod(h)  # the activation: elementwise
        return h

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's parameters and buffers (clones), keyed like its nn.Module state_dict."""
        state = {n: p[k].detach().clone() for n, p in zip(self.names, self.params)}
        state.update({n: b[k].clone() for n, b in self.buffers.items()})
        return state

    @torch.no_grad()
    def load_member_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for n, p in zip(self.names, self.params):
            p[k].copy_(state[n])
        for n, b in self.buffers.items():
            b[k].copy_(state[n])


class StackedOptimizer:
    """torch.optim's update for every member at once; `lr` is a (K,) tensor set per step."""

    def __init__(self, family: str, params: list[torch.Tensor], hyper: dict[str, list[float]]):
        self.family, self.params, self.step_count = family, params, 0
        like = params[0]
        self.h = {name: member_column(v, like).view(-1) for name, v in hyper.items()}
        self.lr = self.h.pop("lr").clone()
        for name in ("beta1", "beta2", "alpha"):  # 1 - x once, not once per tensor and step
            if name in self.h:
                self.h[f"1-{name}"] = 1 - self.h[name]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]

    def _col(self, values: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return values.view(-1, *([1] * (p.dim() - 1)))

    def _per_step(self) -> None:
        """Per-step (K,) scalars, computed once for all parameters (not once per tensor)."""
        self.cols: dict[tuple[str, int], torch.Tensor] = {}
        if self.family == "adam":
            t = self.step_count
            bc1 = 1 - self.h["beta1"].double() ** t  # in float64, as torch's python floats
            bc2_sqrt = (1 - self.h["beta2"].double() ** t).sqrt()
            self.step_scalars = {
                "step_size": (self.lr.double() / bc1).to(self.lr.dtype),
                "bc2_sqrt": bc2_sqrt.to(self.lr.dtype),
            }
        else:
            self.step_scalars = {}

    def c(self, name: str, p: torch.Tensor) -> torch.Tensor:
        """Hyperparameter `name` as a (K, 1, ...) column for `p` (cached per step and ndim)."""
        key = (name, p.dim())
        if key not in self.cols:
            values = self.lr if name == "lr" else self.step_scalars.get(name, self.h.get(name))
            self.cols[key] = self._col(values, p)
        return self.cols[key]

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        self._per_step()
        update = getattr(self, f"_{self.family}")
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                update(p, p.grad, state)

    def _sgd(self, p, g, state) -> None:
        p.sub_(self.c("lr", p) * g)

    def _momentum_buffer(self, p, g, state) -> torch.Tensor:
        mom = self.c("momentum", p)
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.clone()  # torch: the first buffer is the gradient
        else:
            state["momentum_buffer"].mul_(mom).add_(g)
        return state["momentum_buffer"]

    def _momentum(self, p, g, state) -> None:
        p.sub_(self.c("lr", p) * self._momentum_buffer(p, g, state))

    def _nesterov(self, p, g, state) -> None:
        buf = self._momentum_buffer(p, g, state)
        p.sub_(self.c("lr", p) * (g + self.c("momentum", p) * buf))

    def _adam(self, p, g, state) -> None:
        if not state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        b2 = self.c("beta2", p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, self.c("1-beta1", p))
        v.mul_(b2).addcmul_(g, g * self.c("1-beta2", p))
        denom = (v.sqrt() / self.c("bc2_sqrt", p)).add_(self.c("eps", p))
        p.sub_(self.c("step_size", p) * m / denom)

    def _rmsprop(self, p, g, state) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(p)
        alpha = self.c("alpha", p)
        sq = state["square_avg"]
        sq.mul_(alpha).addcmul_(g, g * self.c("1-alpha", p))
        avg = sq.sqrt().add_(self.c("eps", p))
        p.sub_(self.c("lr", p) * g / avg)

    def _adagrad(self, p, g, state) -> None:
        if not state:
            state["sum"] = torch.zeros_like(p)
        state["sum"].addcmul_(g, g)
        std = state["sum"].sqrt().add_(self.c("eps", p))
        p.sub_(self.c("lr", p) * g / std)

    def state_bytes_per_member(self) -> int | None:
        """What torch.optim would hold for one member (ndim >= 1 tensors), after a step."""
        if self.step_count == 0:
            return None
        total = 0
        for p, state in zip(self.params, self.state):
            total += sum(v[0].nelement() * v.element_size() for v in state.values())
        return total


def global_norm_clip_(params: list[torch.Tensor], max_norm: torch.Tensor) -> None:
    """clip_grad_norm_ per member: each member's global gradient norm over all its params."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # (n_params, K)
    total = norms.norm(dim=0)  # (K,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # torch: max_norm / (norm + 1e-6)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

