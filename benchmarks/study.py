"""One study grid, two ways, end to end: one Snakemake job per run vs nnopt's batched jobs.

(a) the idiomatic layout: a Snakemake rule per run calls benchmarks/dataloader_script.py
    (a new Python + torch per run, a DataLoader loop); the prepared dataset is given to it
    for free (built before the clock starts);
(b) nnopt: the repository's workflow on the same grid (same data, model, optimizer,
    epochs, batch size and seeds), from a cold start including its dataset job, the
    aggregate and the report (HTML and PDF), which the baseline does not make.

Both run in temporary folders with the same `--cores`; the script prints their wall times,
the ratio (of wall times and of the CPU seconds of each process tree, steadier on a shared
machine), nnopt's training-loop GFLOP/s (6 x params x samples/s, forward 2 + backward 4
flops per weight and sample) as a fraction of a square fp32 matmul measured in this process
on one thread, and the share of nnopt's core time spent outside the runs' training loops
(1 - Σ (train_time_s + eval_time_s) / (wall × cores)).
It also prints (a) against the end of nnopt's last training job (from Snakemake's log).
Targets (issue "Speed"): (a)/(b) >= 8x including the report; >= 60% of the matmul at batch
128; <= 20% outside.

The default grid, a learning-rate sweep of Adam over 8 rates × 32 seeds = 256 runs of a
2×256 ReLU MLP at batch 128 for 15 epochs (~0.35 s each), shows both fixed costs for what
they are: (a) pays ~2.5 s of process start-up (Python, torch, torch._dynamo) per run; (b)
pays it once per job (one per core here) plus ~4 s once per study (Snakemake's start-up,
the dataset job). Shorter or fewer runs raise (b)'s share outside the loops; longer runs
lower the (a)/(b) ratio.

    python benchmarks/study.py                                   # ~8 min on 2 cores
    python benchmarks/study.py --seeds 4 --width 64 --epochs 10  # 32 quick runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LRS = [0.0003, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02]  # a learning-rate sweep
ACTIVATIONS = ["relu"]

BASELINE_SNAKEFILE = """
RUNS = {runs!r}


rule all:
    input:
        expand("runs/{{run}}/metrics.json", run=RUNS),


rule train_one:
    output:
        "runs/{{run}}/metrics.json",
    log:
        "logs/{{run}}.log",
    threads: 1
    params:
        args=lambda wildcards: RUNS[wildcards.run],
    shell:
        "python {script} --data {data} {{params.args}} --threads {{threads}}"
        " --out {{output}} > {{log}} 2>&1"
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-samples", type=int, default=4000)
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    return p.parse_args()


def base_spec(args: argparse.Namespace) -> dict:
    return {
        "data": {"name": "mnist1d", "n_samples": args.n_samples},
        "model": {"kind": "mlp", "depth": 2, "width": args.width},
        "optimizer": {"name": "adam"},
        "budget": {"epochs": args.epochs, "batch_size": args.batch_size},
        # Train metrics on 600 samples, like the validation split the baseline measures.
        "evaluation": {"every_epochs": 1, "max_train_eval_samples": 600},
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one command."""
    cpu0, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, _children_cpu_s() - cpu0


def run_baseline(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    from nnopt.train.data import prepare_dataset
    from nnopt.config.spec import parse_spec

    data = prepare_dataset(parse_spec(base_spec(args)).data, work / "data")  # untimed
    runs = {
        f"{act}-lr{lr}-s{seed}": f"--activation {act} --lr {lr} --seed {seed} "
        f"--epochs {args.epochs} --batch-size {args.batch_size} --width {args.width} --depth 2"
        for lr, act, seed in itertools.product(LRS, ACTIVATIONS, range(args.seeds))
    }
    script = ROOT / "benchmarks" / "dataloader_script.py"
    text = BASELINE_SNAKEFILE.format(runs=runs, script=script, data=data)
    (work / "Snakefile").write_text(text)
    return timed(["snakemake", "--cores", str(args.cores), "--quiet", "all"], work)


def run_nnopt(args: argparse.Namespace, work: Path) -> tuple[float, float, float, int]:
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, work / folder)
    study = {
        "name": "bench",
        "grid": {"optimizer.lr": LRS, "model.activation": ACTIVATIONS},
        "metrics": ["test_accuracy"],
    }
    raw = {"defaults": base_spec(args), "seeds": args.seeds, "studies": [study],
           "max_runs_per_study": 100_000}
    (work / "config" / "bench.yaml").write_text(yaml.safe_dump(raw))
    wall_s, cpu_s = timed(
        # Not --quiet: its log then holds the job blocks trained_at_s reads.
        ["snakemake", "all", "--cores", str(args.cores), "--configfile", "config/bench.yaml"],
        work,
    )  # fmt: skip
    records = [json.loads(p.read_text()) for p in work.glob("results/runs/*/*/metrics.json")]
    return wall_s, cpu_s, [r["metrics"] for r in records], trained_at_s(work)


def trained_at_s(work: Path) -> float | None:
    """Seconds from Snakemake's start to the end of its last training job (its own log,
    1-s stamps; nnopt's time to trained runs, without the aggregate and the report)."""
    from studyset import job_spans  # benchmarks/ is on sys.path

    logs = sorted(work.glob(".snakemake/log/*.snakemake.log"))
    if not logs:
        return None
    started, spans = job_spans(logs[-1])
    ends = [end for rule, _, _, end in spans if rule == "train"]
    return (max(ends) - started).total_seconds() if ends and started else None


def matmul_gflops() -> float:
    """The per-core ceiling: benchmarks/engine.py's square fp32 matmul, on one thread."""
    import torch
    from engine import matmul_gflops as square_matmul_gflops  # benchmarks/ is on sys.path

    torch.set_num_threads(1)
    return square_matmul_gflops()


def training_gflops(metrics: list[dict]) -> float:
    """Mean over runs of 6 × params × training samples/s (param_bytes / 4: fp32)."""
    per_run = [6 * m["param_bytes"] / 4 * m["samples_per_s"] / 1e9 for m in metrics]
    return sum(per_run) / len(per_run)


def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="nnopt-bench-"))
    (root / "baseline").mkdir()
    (root / "nnopt").mkdir()
    n_runs = len(LRS) * len(ACTIVATIONS) * args.seeds
    print(f"{n_runs} runs (MNIST-1D n={args.n_samples}, MLP 2×{args.width}, batch "
          f"{args.batch_size}, {args.epochs} epochs), --cores {args.cores}, in {root}")
    baseline_s, baseline_cpu_s = run_baseline(args, root / "baseline")
    print(f"(a) one Snakemake job per run, DataLoader script: {baseline_s:7.1f} s wall, "
          f"{baseline_cpu_s:7.1f} s CPU")  # fmt: skip
    nnopt_s, nnopt_cpu_s, metrics, trained_s = run_nnopt(args, root / "nnopt")
    assert len(metrics) == n_runs, f"nnopt finished {len(metrics)} of {n_runs} runs"
    print(f"(b) nnopt (cold, incl. dataset job, aggregate, report HTML + PDF): {nnopt_s:7.1f} s "
          f"wall, {nnopt_cpu_s:7.1f} s CPU; its last training job ended at "
          + (f"{trained_s:.0f} s" if trained_s is not None else "? s"))  # fmt: skip
    # On a machine shared with other work, wall times swing with its load; CPU seconds of
    # each process tree are the steadier comparison.
    print(f"speed-up (a)/(b) including the report: {baseline_s / nnopt_s:.1f}x wall, "
          f"{baseline_cpu_s / nnopt_cpu_s:.1f}x CPU (target >= 8x; load average "
          f"{os.getloadavg()[0]:.1f})")
    if trained_s:
        print(f"speed-up to trained runs (a) / (b)'s last training job: "
              f"{baseline_s / trained_s:.1f}x wall")  # fmt: skip
    peak, loop = matmul_gflops(), training_gflops(metrics)
    print(f"nnopt training loop: {loop:.1f} GFLOP/s per run = {100 * loop / peak:.0f}% of a "
          f"1-thread fp32 matmul ({peak:.1f} GFLOP/s) (target >= 60% at batch 128)")
    train_s = sum(m["train_time_s"] for m in metrics)
    loop_s = train_s + sum(m["eval_time_s"] for m in metrics)
    outside = 1 - loop_s / (nnopt_s * args.cores)
    print(f"nnopt: Σ train_time_s {train_s:.1f} s + Σ eval_time_s {loop_s - train_s:.1f} s "
          f"over {nnopt_s:.1f} s × {args.cores} cores: {100 * outside:.0f}% of core time "
          f"outside the training loops (target <= 20%)")  # fmt: skip
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
