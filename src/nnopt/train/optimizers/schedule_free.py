"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1 with
Adam's second moment, as in the authors' `AdamWScheduleFree`).

Three sequences per parameter: z (the SGD-like base iterate), x (the weighted average of z,
what is evaluated) and y = (1 - beta1) * z + beta1 * x (where gradients are taken). The
parameter tensor holds y in train mode and x in eval mode; `eval()` / `train()` switch it
in place using z (kept in the state):
    x = (y - (1 - beta1) * z) / beta1        y = (1 - beta1) * z + beta1 * x
Step t (0-based), lr_t the group lr (warm-up from the schedule acts on it):
    v   = beta2 * v + (1 - beta2) * g^2
    lr' = lr_t * sqrt(1 - beta2^(t+1))          # Adam's bias correction of v
    w_t = max_{s<=t} lr'_s ^ 2;  c = w_t / sum_{s<=t} w_s
    d   = g / (sqrt(v) + eps)
    z   = z - lr' * d
    x   = (1 - c) * x + c * z
The engine calls `eval()` before every evaluation (and keeps the best-validation snapshot
and the final model from that state) and `train()` after it: `SWAPS_EVAL_WEIGHTS` marks
optimizers that need this. Stepping in eval mode is refused.
"""

from __future__ import annotations

import torch

from nnopt.train.optimizers.closure import closure_loss

__all__ = ["ScheduleFreeAdamW"]


class ScheduleFreeAdamW(torch.optim.Optimizer):
    SWAPS_EVAL_WEIGHTS = True

    def __init__(
        self, params, lr: float = 0.0025, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):  # fmt: skip
        if not 0 < betas[0] < 1:
            raise ValueError(f"ScheduleFreeAdamW: beta1 must be in (0, 1), got {betas[0]}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "k": 0, "lr_max": 0.0,
                    "weight_sum": 0.0, "train_mode": True}  # fmt: skip
        super().__init__(params, defaults)

    def _z(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "z" not in state:
            state["z"] = p.detach().clone()  # x_0 = y_0 = z_0
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state["z"]

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters become x (the average), for evaluation and saved weights."""
        for group in self.param_groups:
            if group["train_mode"]:
                beta1 = group["betas"][0]
                for p in group["params"]:
                    if "z" in self.state[p]:  # y -> x = y + (1 - 1/beta1) * (z - y)
                        p.lerp_(self.state[p]["z"], 1 - 1 / beta1)
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Parameters become y (where the next gradient is taken)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                beta1 = group["betas"][0]
                for p in group["params"]:
                    if "z" in self.state[p]:  # x -> y = x + (1 - beta1) * (z - x)
                        p.lerp_(self.state[p]["z"], 1 - beta1)
                group["train_mode"] = True

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            if not group["train_mode"]:
                raise RuntimeError("ScheduleFreeAdamW: step() in eval mode; call train() first")
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        beta1, beta2 = group["betas"]
        k = group["k"]
        lr = group["lr"] * (1 - beta2 ** (k + 1)) ** 0.5
        group["lr_max"] = lr_max = max(lr, group["lr_max"])
        weight = lr_max**2
        group["weight_sum"] += weight
        ckp1 = weight / group["weight_sum"] if group["weight_sum"] else 0.0
        ys = [p for p in group["params"] if p.grad is not None]
        if ys:  # multi-tensor kernels: one launch per operation for all parameters
            zs = [self._z(y) for y in ys]
            vs = [self.state[y]["exp_avg_sq"] for y in ys]
            grads = [y.grad for y in ys]
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            ds = torch._foreach_div(grads, denom)  # d = g / (sqrt(v) + eps)
            # y_{t+1} = (1-c) y_t + c z_t + lr * (beta1 (1 - c) - 1) d: the same as forming
            # z_{t+1}, x_{t+1} and y_{t+1} from their definitions, without storing x.
            # (1-c) y + c z as mul + add: torch's scalar lerp on CPU is ~4x slower than both.
            torch._foreach_mul_(ys, 1 - ckp1)
            torch._foreach_add_(ys, zs, alpha=ckp1)
            torch._foreach_add_(ys, ds, alpha=lr * (beta1 * (1 - ckp1) - 1))
            torch._foreach_add_(zs, ds, alpha=-lr)
        group["k"] = k + 1
