"""torch.optim's closure contract, shared by the optimizers of this package."""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["closure_loss"]


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """The loss a `step(closure)` returns: the closure re-evaluated with gradients enabled
    (step itself runs under no_grad), or None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
