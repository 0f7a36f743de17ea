"""The GPU checks of benchmarks/gpu.sh (issue 14.5): each prints one block, exits non-zero
when a check fails. `--device cpu --quick` runs the same code on the CPU at a tiny size
(the fallback path the tests exercise).

    python benchmarks/gpu_checks.py equality  --device cuda
    python benchmarks/gpu_checks.py studyset  --device cuda --max-seconds 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from nnopt.config.spec import merge, parse_spec
from nnopt.config.studies import parse_config

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "benchmarks" / "workloads" / "studyset-2026-12-01.yaml"


def on_device(spec, device: str):
    return parse_spec(merge(spec.to_dict(), {"device": {"device": device}}))


def equality(device: str, quick: bool) -> int:
    """Each member of a stacked cohort against the same run alone on `device`."""
    from nnopt.train.cohort import train_cohort
    from nnopt.train.data import load_dataset
    from nnopt.train.engine import train

    steps = 40 if quick else 200
    raw = {"data": {"name": "mnist1d", "n_samples": 600 if quick else 4000},
           "model": {"width": 64}, "budget": {"steps": steps, "batch_size": 64},
           "evaluation": {"every_steps": 20}, "device": {"device": device}}  # fmt: skip
    specs = [parse_spec({**raw, "seed": s, "optimizer": {"lr": 0.001 * (s + 1)}}) for s in range(4)]
    ds = load_dataset(specs[0].data)
    worst = 0.0
    for spec, member in zip(specs, train_cohort(specs, dataset=ds)):
        alone = train(spec, dataset=ds)
        for a, b in zip(alone.curve, member.curve):
            worst = max(worst, abs(a["train_loss"] - b["train_loss"]) / abs(a["train_loss"]))
    ok = worst <= 1e-4
    print(f"equality on {device}: 4 members x {steps} steps, worst train-loss relative "
          f"difference stacked vs alone {worst:.2e} ({'ok' if ok else 'FAILED'}, limit 1e-4)")
    return 0 if ok else 1


def studyset(device: str, quick: bool, max_seconds: float) -> int:
    """The frozen 405-run workload's training on `device`: cohorts where the planner stacks."""
    from nnopt.plan.cohorts import plan_units
    from nnopt.train.cohort import train_cohort
    from nnopt.train.data import load_dataset
    from nnopt.train.engine import train

    raw = yaml.safe_load(WORKLOAD.read_text())
    if quick:
        raw = merge(raw, {"defaults": {"data": {"n_samples": 300}, "budget": {"epochs": 1}},
                          "seeds": 1})  # fmt: skip
    config = parse_config(raw)
    units = []
    for study in config.studies[:2] if quick else config.studies:
        units += plan_units([r for r in study.runs], enabled=study.cohorts, on_gpu=device != "cpu")
    t0, n_runs, datasets = time.perf_counter(), 0, {}
    for unit in units:
        specs = [on_device(r.spec, device) for r in unit]
        if specs[0].data not in datasets:
            datasets[specs[0].data] = load_dataset(specs[0].data)
        ds = datasets[specs[0].data]
        if len(specs) > 1:
            train_cohort(specs, dataset=ds)
        else:
            train(specs[0], dataset=ds)
        n_runs += len(specs)
        if time.perf_counter() - t0 > max_seconds:
            print(f"studyset on {device}: stopped after {max_seconds:.0f} s at {n_runs} runs")
            return 1
    wall = time.perf_counter() - t0
    n_cohorts = sum(len(u) > 1 for u in units)
    print(f"studyset on {device}: {n_runs} runs ({n_cohorts} cohorts, "
          f"{sum(len(u) == 1 for u in units)} single) trained in {wall:.1f} s (target <= 10 s)")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("check", choices=["equality", "studyset"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU fallback)")
    p.add_argument("--max-seconds", type=float, default=200.0)
    args = p.parse_args()
    if args.check == "equality":
        sys.exit(equality(args.device, args.quick))
    sys.exit(studyset(args.device, args.quick, args.max_seconds))


if __name__ == "__main__":
    main()
