"""Benchmark (not a test): train_time_s of the `parallel` study's run at world sizes 1, 2, 4.

Takes the study's seed-0 run from config/config.yaml, overrides `device.world_size`, trains
each once (best of REPEATS) and prints train_time_s (rank 0's training loop), the launch
time (spawn + import + rendezvous), speed-up and efficiency against world size 1, and the
machine's core count and load. Run: `python benchmarks/distributed.py [config.yaml]
[--width N]` (--width overrides the MLP width: a wide model shows the compute-bound case).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from nnopt.train.data import load_dataset
from nnopt.train.engine import train
from nnopt.config.studies import load_config

WORLD_SIZES = (1, 2, 4)
REPEATS = 2  # best of: the machine is shared, the best run is the least disturbed


def parallel_spec(config_path: str, width: int | None):
    study = load_config(config_path).study("parallel")
    spec = next(run.spec for run in study.runs if run.spec.seed == 0)
    if width is not None:
        spec = spec.replace(model=dataclasses.replace(spec.model, width=width))
    return spec


def time_run(spec, world_size: int, dataset) -> tuple[float, float]:
    """(train_time_s, launch_time_s) of the best of REPEATS runs at `world_size`."""
    spec = spec.replace(device=dataclasses.replace(spec.device, world_size=world_size))
    best = None
    for _ in range(REPEATS):
        result = train(spec, dataset=dataset)
        timing = (result.metrics["train_time_s"], result.provenance.get("launch_time_s", 0.0))
        best = timing if best is None or timing[0] < best[0] else best
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="config/config.yaml")
    parser.add_argument("--width", type=int, help="override model.width")
    args = parser.parse_args()
    spec = parallel_spec(args.config, args.width)
    dataset = load_dataset(spec.data)
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, width {spec.model.width}, "
          f"batch {spec.budget.batch_size}, epochs {spec.budget.epochs}, "
          f"threads/rank {spec.device.threads}")  # fmt: skip
    base = None
    for ws in WORLD_SIZES:
        train_s, launch_s = time_run(spec, ws, dataset)
        base = base or train_s
        speedup = base / train_s
        print(f"world_size {ws}: train_time_s {train_s:.2f}  launch_time_s {launch_s:.1f}  "
              f"speed-up {speedup:.2f}  efficiency {speedup / ws:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
