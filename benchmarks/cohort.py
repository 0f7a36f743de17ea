"""Cohort vs single: K runs trained as one stacked model against K runs one after the other.

At the shipped shape (MLP 40->64->64->10 on mnist1d, batch 64, Adam) and at widths 128 and
256, all side by side in this one process on one thread: seconds of training per run
(single and cohort), the speed-up (target >= 2.5x for K = 25 at width 64), and the achieved
training GFLOP/s as a share of a 1-thread fp32 matmul's (target >= 35% at width 64).

    python benchmarks/cohort.py                     # K = 25, 3 epochs, widths 64 128 256
    python benchmarks/cohort.py --k 5 --epochs 1 --widths 64
    python benchmarks/cohort.py --device cuda       # the GPU figures (benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import time

import torch

from nnopt.config.spec import parse_spec
from nnopt.train.cohort import train_cohort
from nnopt.train.data import load_dataset
from nnopt.train.engine import train


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=25, help="cohort size (default 25)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--singles", type=int, default=5, help="single runs timed (per-run mean)")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def specs(width: int, k: int, epochs: int, device: str):
    raw = {
        "data": {"name": "mnist1d", "n_samples": 4000},
        "model": {"kind": "mlp", "depth": 2, "width": width},
        "optimizer": {"name": "adam", "lr": 0.003},
        "budget": {"epochs": epochs, "batch_size": 64},
        "evaluation": {"every_epochs": 1},
        "device": {"device": device},
    }
    return [parse_spec({**raw, "seed": s}) for s in range(k)]


def matmul_gflops(device: str, seconds: float = 0.5) -> float:
    """A 1-thread fp32 matmul's throughput (512 x 512), the limit the stacked step aims at."""
    a = torch.randn(512, 512, device=device)
    b = torch.randn(512, 512, device=device)
    clock = time.perf_counter if device == "cuda" else time.process_time
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        a @ b
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * 512**3 * n / (clock() - t0) / 1e9


def run_flops(spec, ds, steps: int, evals: int) -> float:
    """A run's FLOPs: training (forward + backward = 3 forwards of each batch), every
    evaluation (train subset + validation) and the two final test passes."""
    m = spec.model
    fwd = 2.0 * (40 * m.width + (m.depth - 1) * m.width**2 + m.width * 10)  # per sample
    n_eval = min(len(ds.y_train), spec.evaluation.max_train_eval_samples) + len(ds.y_val)
    return fwd * (3.0 * spec.budget.batch_size * steps + evals * n_eval + 2 * len(ds.y_test))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(specs(64, 1, 1, args.device)[0].data)
    limit = matmul_gflops(args.device)
    print(f"1-thread fp32 matmul (512^3): {limit:.1f} GFLOP/s (remeasured at each width, the "
          f"best counts: a loaded machine slows it too); K = {args.k}, {args.epochs} epochs")
    print(f"{'width':>5}  {'single s/run':>12}  {'cohort s/run':>12}  {'speed-up':>8}  "
          f"{'single %lim':>11}  {'cohort %lim':>11}")  # fmt: skip
    warm = specs(64, 1, 1, args.device)
    train(warm[0], dataset=ds)  # warm-up: first-call costs out of the timings
    train_cohort(warm + specs(64, 1, 1, args.device)[:1], dataset=ds)
    clock = time.perf_counter if args.device == "cuda" else time.process_time
    for width in args.widths:
        runs = specs(width, args.k, args.epochs, args.device)
        t0 = clock()
        single = [train(s, dataset=ds) for s in runs[: args.singles]]
        single_s = (clock() - t0) / len(single)
        t0 = clock()
        train_cohort(runs, dataset=ds)
        cohort_s = (clock() - t0) / len(runs)
        flops = run_flops(runs[0], ds, single[0].metrics["steps"], len(single[0].curve))
        limit = max(limit, matmul_gflops(args.device))  # the best of the machine's moments
        pct_single = 100 * flops / single_s / 1e9 / limit  # whole runs, evaluation included
        pct_cohort = 100 * flops / cohort_s / 1e9 / limit
        print(f"{width:>5}  {single_s:>12.3f}  {cohort_s:>12.3f}  {single_s / cohort_s:>7.2f}x  "
              f"{pct_single:>10.0f}%  {pct_cohort:>10.0f}%", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
