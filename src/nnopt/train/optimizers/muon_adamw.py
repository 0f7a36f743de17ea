"""Muon for 2-D weight matrices, AdamW for every other parameter, as one optimizer.

torch.optim.Muon accepts only 2-D parameters, and its documentation says the rest (biases,
gains, and tensors of other rank such as conv kernels) should use a standard method such
as AdamW. This class holds one group for each and steps both; with
`adjust_lr_fn="match_rms_adamw"` (Moonshot's scaling, 0.2 * sqrt(max(A, B))) the Muon
update has AdamW's RMS, so one lr serves both groups (torch's docs). The groups are the
same dict objects as the inner optimizers' and so is the state, so lr schedules, state_dict
and load_state_dict act on both at once.
"""

from __future__ import annotations

import torch

from nnopt.train.optimizers.closure import closure_loss

__all__ = ["MuonWithAdamW"]


class MuonWithAdamW(torch.optim.Optimizer):
    def __init__(self, params, *, lr: float, momentum: float = 0.95,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):  # fmt: skip
        params = list(params)
        matrices = [p for p in params if p.ndim == 2]
        others = [p for p in params if p.ndim != 2]
        self._inner: list[torch.optim.Optimizer] = []
        if matrices:
            self._inner.append(torch.optim.Muon(
                matrices, lr=lr, weight_decay=0.0, momentum=momentum,
                adjust_lr_fn="match_rms_adamw",
            ))  # fmt: skip
        if others:
            self._inner.append(
                torch.optim.AdamW(others, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
            )
        groups = [opt.param_groups[0] for opt in self._inner]
        super().__init__(groups, {})
        self._share()

    def _share(self) -> None:
        """Point the inner optimizers at this one's group dicts and state."""
        for opt, group in zip(self._inner, self.param_groups):
            opt.param_groups = [group]
            opt.state = self.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for opt in self._inner:
            opt.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # rebinds self.state and self.param_groups
        self._share()
