"""Parts of the cohort engine that are not the loop: per-member schedules, torch settings.

`Schedules` gives each member the engine's lr schedule: torch's own scheduler, built by
`build_schedule` on a stand-in one-parameter optimizer (members with the same base lr and
schedule share one; plateau members each have their own, stepped on their val loss).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from nnopt.config.spec import RunSpec
from nnopt.train.optim import build_schedule

__all__ = ["Schedules", "configure_torch", "peak_cuda_mb"]


class Schedules:
    """Each member's lr schedule: torch's scheduler on a stand-in one-parameter optimizer."""

    def __init__(self, specs: Sequence[RunSpec], spe: int, total_steps: int):
        self.streams, self.of_member = {}, []
        for k, s in enumerate(specs):
            key = k if s.schedule.name == "plateau" else (s.optimizer.lr, s.schedule)
            if key not in self.streams:
                dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=s.optimizer.lr)
                sched = build_schedule(dummy, s.schedule, steps_per_epoch=spe, total_steps=total_steps)
                dummy.step()  # no gradient: a no-op that tells the scheduler a step happened
                self.streams[key] = (dummy, sched)
            self.of_member.append(key)
        self.steps_per_step = [sc.per_step for _, sc in self.streams.values() if sc.per_step]

    def lrs(self) -> list[float]:
        return [self.streams[key][0].param_groups[0]["lr"] for key in self.of_member]

    def after_step(self) -> bool:
        for per_step in self.steps_per_step:
            per_step.step()
        return bool(self.steps_per_step)

    def plateau(self, k: int):
        return self.streams[self.of_member[k]][1]


def configure_torch(spec: RunSpec, device: torch.device, threads: int | None) -> None:
    """The engine's torch settings for a run (threads, determinism, TF32 off). Determinism
    is set on CUDA only, as the engine does (nnopt.train.loop._configure_torch): the call
    imports torch's compiler stack (~1.4 s), and the CPU kernels are deterministic anyway."""
    torch.set_num_threads(threads or spec.device.threads)
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = spec.device.tf32
    torch.backends.cudnn.allow_tf32 = spec.device.tf32
    torch.cuda.reset_peak_memory_stats(device)
    torch.use_deterministic_algorithms(spec.device.deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = False


def peak_cuda_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
