"""Per-step optimizer-update time beside SGD's: the "overhead" DeepOBS reports.

Times `optimizer.step()` alone (gradients fixed, no forward/backward) on the parameters of
an MLP, for every built-in optimizer in nnopt's registry, interleaved round by round in
this one process so that machine noise hits all of them alike; prints each optimizer's
median step time and its ratio to SGD's.

    OMP_NUM_THREADS=1 python benchmarks/optimizers.py [--width 256 --depth 3 --rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nnopt.config.spec import ModelSpec, OptimizerSpec
from nnopt.train.models import build_model
from nnopt.train.optim import OPTIMIZERS, build_optimizer


def _optimizers(model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    opts = {}
    for name in OPTIMIZERS:
        if name == "python":  # a user's factory: nothing to time here
            continue
        params = [p for p in model.parameters()]
        opts[name] = build_optimizer(params, OptimizerSpec(name=name, lr=1e-4), fast=True)
    return opts


def _time_steps(opt: torch.optim.Optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=20, help="steps per timing")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelSpec(depth=args.depth, width=args.width), (784,), 10)
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    opts = _optimizers(model)
    for opt in opts.values():  # warm-up: state allocated, kernels loaded
        _time_steps(opt, 3)
    times: dict[str, list[float]] = {name: [] for name in opts}
    for _ in range(args.rounds):
        for name, opt in opts.items():
            times[name].append(_time_steps(opt, args.steps))
    n_params = sum(p.numel() for p in model.parameters())
    sgd = statistics.median(times["sgd"])
    print(f"optimizer step time, MLP {args.depth}x{args.width} ({n_params} parameters), "
          f"median of {args.rounds} rounds x {args.steps} steps, 1 thread")
    print(f"{'optimizer':<22}{'ms/step':>10}{'x SGD':>8}")
    for name, values in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        median = statistics.median(values)
        print(f"{name:<22}{median * 1e3:>10.3f}{median / sgd:>8.2f}")


if __name__ == "__main__":
    main()
