"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

Per step, with gradient g and momentum m (zero at start):
    c = beta1 * m + (1 - beta1) * g        # interpolation used for the update
    p = p - lr * sign(c)                   # every coordinate moves by exactly lr
    m = beta2 * m + (1 - beta2) * g        # momentum tracked with the slower beta2
Weight decay is decoupled and applied by the engine (nnopt.train.optim.decay_weights).
"""

from __future__ import annotations

import torch

from nnopt.train.optimizers.closure import closure_loss

__all__ = ["Lion"]


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99)):
        if lr <= 0:
            raise ValueError(f"Lion: lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self._momentum(p) for p in params]
            # c = beta1*m + (1-beta1)*g as mul + add (multi-tensor kernels; torch's scalar
            # lerp is several times slower on CPU).
            update = torch._foreach_mul(bufs, beta1)
            torch._foreach_add_(update, grads, alpha=1 - beta1)
            torch._foreach_sign_(update)
            torch._foreach_add_(params, update, alpha=-group["lr"])
            torch._foreach_mul_(bufs, beta2)
            torch._foreach_add_(bufs, grads, alpha=1 - beta2)
        return loss

    def _momentum(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["exp_avg"]
