"""Packing runs into Snakemake jobs, and the small helpers the workflow's jobs share.

One Snakemake job trains a *batch* of runs in one process, so `import torch` (~1.3 s) and
the dataset load are paid once per batch, not once per run. Runs are packed per study
(and per resource class: threads, GPUs) by longest-processing-time-first (LPT) on an
estimated cost, so the batches of a study take about equally long; Snakemake then starts
the costliest batches first (job priority = estimated seconds), which is LPT over jobs and
keeps every core busy until the end.

A batch's id is `{study}-{hash of its member run ids}`: an unchanged study keeps its batch
ids (Snakemake reruns nothing), a changed study gets new ids only for its own batches, and
the runner skips the runs of a new batch that are already finished. No torch here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from nnopt.config.spec import RunSpec
from nnopt.config.studies import Config, Run
from nnopt.store.atomic import write_json_atomic  # re-exported for older callers
from nnopt.plan.cost import estimate_cost_s
from nnopt.plan.cohorts import cohort_speedup, is_timing_study, plan_units

__all__ = [
    "Batch",
    "TARGET_JOB_S",
    "MAX_RUNS_PER_JOB",
    "estimate_cost_s",
    "resource_class",
    "lpt",
    "batch_id",
    "plan_batches",
    "run_items",
    "cohort_labels",
    "shuffled",
    "write_json_atomic",
    "failed_runs",
    "claim_gpus",
    "plan_table",
    "cuda_present",
]

# A job pays ~2 s before its first step (python, torch, the dataset; no torch._dynamo since
# nnopt.train.eager_optim): 120 estimated seconds (the model over-estimates small MLPs
# ~1.5-2x, so about a minute of real training) keep that near 5%, and whole jobs per core (_n_bins) still
# finish together; 128 runs at most, so that a crashed process (OOM, segfault) delays few
# runs (each finished run is already written and never retrained).
TARGET_JOB_S = 120.0
MAX_RUNS_PER_JOB = 128

@dataclass(frozen=True)
class Batch:
    """The runs one Snakemake job trains, in one process."""

    batch_id: str
    study: str
    runs: tuple[Run, ...]
    cost_s: float  # estimated wall seconds of training (start-up excluded)
    threads: int
    gpus: int
    # Run ids of each cohort (runs trained as one stacked model, nnopt.plan.cohorts).
    cohorts: tuple[tuple[str, ...], ...] = ()
    # A timing study's batch: the train rule gives it every core, so no job runs beside it.
    exclusive: bool = False

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(r.run_id for r in self.runs)


def resource_class(spec: RunSpec, *, cuda_present: bool = False) -> tuple[int, int]:
    """(threads, gpus) a run needs: data-parallel CPU ranks each take a core."""
    d = spec.device
    on_gpu = d.device == "cuda" or (d.device == "auto" and cuda_present)
    if on_gpu:
        return d.threads, d.world_size
    return d.threads * d.world_size, 0


def lpt(costs: Sequence[float], n_bins: int, *, cap: int | None = None) -> list[list[int]]:
    """Longest processing time first: indices into `costs`, as `n_bins` balanced bins.

    Each item goes to the least-loaded bin that holds fewer than `cap` items; ties go to
    the lower index, so the result depends only on the costs' order.
    """
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    loads = [0.0] * n_bins
    for i in order:
        open_bins = [j for j in range(n_bins) if cap is None or len(bins[j]) < cap]
        j = min(open_bins, key=lambda j: (loads[j], j))
        bins[j].append(i)
        loads[j] += costs[i]
    return [sorted(b) for b in bins if b]


def batch_id(study: str, run_ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(run_ids)).encode()).hexdigest()[:10]
    return f"{study}-{digest}"


def _n_bins(n_runs: int, cost_s: float, share: float, *, per_job: int | None) -> int:
    """Jobs for one group: a whole number of jobs of about TARGET_JOB_S per core of its
    share, so its cores finish together (5 equal jobs on 2 cores leave one idle for the
    last; 4 or 6 do not)."""
    if per_job is not None:
        return math.ceil(n_runs / per_job)
    cores = math.ceil(share)  # this group's share of the cores, so none idles
    per_core = max(1, round(cost_s / cores / TARGET_JOB_S))
    return min(n_runs, max(cores * per_core, math.ceil(n_runs / MAX_RUNS_PER_JOB), 1))


def plan_batches(
    config: Config, *, cores: int = 1, cuda_present: bool = False
) -> tuple[Batch, ...]:
    """Every run of `config`, packed into batches (deterministic for a config and cores).

    The number of batches of a group (study × resource class) is the larger of its cost
    over TARGET_JOB_S and its cost share of `cores`, so a one-study config still fills
    every core; `config.runs_per_job` overrides this with a fixed count per job.
    """
    groups: dict[tuple[str, int, int], list[Run]] = {}
    seen: set[tuple[str, str]] = set()
    for run in config.runs:
        if (run.study, run.run_id) in seen:  # a repeated value in a factor list
            continue
        seen.add((run.study, run.run_id))
        key = (run.study, *resource_class(run.spec, cuda_present=cuda_present))
        groups.setdefault(key, []).append(run)
    single = {key: sum(estimate_cost_s(r.spec) for r in runs) for key, runs in groups.items()}
    single_total_s = sum(single.values()) or 1.0
    units = {  # at least one unit per core of a group's share, so stacking never idles cores
        key: _units(config, key, runs, math.ceil(max(1, cores) * single[key] / single_total_s))
        for key, runs in groups.items()
    }
    costs = {key: [_unit_cost_s(u, key[2] > 0) for u in us] for key, us in units.items()}
    total_s = sum(sum(c) for c in costs.values()) or 1.0
    batches = []
    for (study, threads, gpus), study_units in units.items():
        cost = costs[(study, threads, gpus)]
        share = max(1, cores) * sum(cost) / total_s
        n_bins = _n_bins(len(study_units), sum(cost), share, per_job=config.runs_per_job)
        cap = config.runs_per_job or MAX_RUNS_PER_JOB
        timing = is_timing_study(_study_metrics(config, study))
        for members in lpt(cost, n_bins, cap=cap):
            chosen = [study_units[i] for i in members]
            runs = tuple(r for unit in chosen for r in unit)
            batches.append(
                Batch(
                    batch_id=batch_id(study, (r.run_id for r in runs)),
                    study=study,
                    runs=runs,
                    cost_s=sum(cost[i] for i in members),
                    threads=threads,
                    gpus=gpus,
                    cohorts=tuple(tuple(r.run_id for r in u) for u in chosen if len(u) > 1),
                    exclusive=timing,
                )
            )
    return tuple(batches)


def _study_metrics(config: Config, study: str) -> tuple[str, ...]:
    try:
        return config.study(study).metrics
    except KeyError:
        return ()


def _units(
    config: Config, key: tuple[str, int, int], runs: list[Run], min_units: int
) -> list[tuple[Run, ...]]:
    """A group's training units: cohorts where they pay, singles otherwise (nnopt.plan.cohorts)."""
    study = key[0]
    try:
        enabled = config.study(study).cohorts
    except KeyError:
        enabled = True
    enabled = enabled and not is_timing_study(_study_metrics(config, study))
    return plan_units(runs, enabled=enabled, on_gpu=key[2] > 0, min_units=min_units)


def _unit_cost_s(unit: tuple[Run, ...], on_gpu: bool) -> float:
    single = sum(estimate_cost_s(r.spec) for r in unit)
    return single / cohort_speedup(unit[0].spec, len(unit), on_gpu=on_gpu)


def cohort_labels(batch_id: str, cohorts) -> dict[str, str]:
    """Run id -> its cohort's label (`{batch}-c{i}`) for the runs stacked in `cohorts`."""
    return {rid: f"{batch_id}-c{i}" for i, ids in enumerate(cohorts) for rid in ids}


def shuffled(items: list, batch_id: str) -> list:
    """`items` in a random order seeded by the batch id, so that no configuration's seeds run
    back to back in a fixed order (timing drift and memory growth then average out)."""
    random.Random(batch_id).shuffle(items)
    return items


def run_items(batch: Batch, runs_dir: str | Path) -> list[dict[str, Any]]:
    """The runner's input: one {study, factors, spec, out, cohort} per run (plain JSON data),
    in the batch's seeded random order."""
    cohort_of = cohort_labels(batch.batch_id, batch.cohorts)
    items = [
        {
            "study": r.study,
            "factors": dict(r.factors),
            "spec": r.spec.to_dict(),
            "out": str(Path(runs_dir) / r.study / r.run_id),
            "cohort": cohort_of.get(r.run_id),
        }
        for r in batch.runs
    ]
    return shuffled(items, batch.batch_id)


def failed_runs(manifest: str | Path) -> list[str]:
    """Run ids a batch manifest records as failed (an unreadable manifest counts as failed)."""
    try:
        record = json.loads(Path(manifest).read_text())
        rows = record["runs"] if isinstance(record, dict) else record  # cli: a bare list
        return [r.get("run_id", "?") for r in rows if r.get("status") == "failed"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ["<unreadable manifest>"]


_held_locks: list[int] = []  # file descriptors kept open: a lock lives as long as the process


def cuda_present() -> bool:
    """Whether this machine has NVIDIA devices (checked without importing torch)."""
    return bool(_gpu_pool())


def _gpu_pool() -> list[str]:
    pool = os.environ.get("NNOPT_GPUS")
    if pool:
        return [p.strip() for p in pool.split(",") if p.strip()]
    return sorted(p.name[len("nvidia") :] for p in Path("/dev").glob("nvidia[0-9]*"))


def claim_gpus(n: int, lock_dir: str | Path, *, timeout_s: float = 60.0) -> list[str]:
    """Claim `n` GPU ids from the pool by file locks and set CUDA_VISIBLE_DEVICES to them.

    Snakemake's `--resources gpu=N` keeps the number of GPUs in use ≤ N; the locks decide
    *which* devices, so two parallel jobs never share one by accident. The pool is
    NNOPT_GPUS (e.g. "0,1") or the /dev/nvidiaK devices. Call before torch touches CUDA.
    """
    pool = _gpu_pool()
    if n > len(pool):
        raise RuntimeError(f"need {n} GPU(s), the pool has {len(pool)}: {pool or 'none'}")
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    claimed: list[str] = []
    while len(claimed) < n:
        for gpu in pool:
            if gpu in claimed or len(claimed) == n:
                continue
            fd = os.open(Path(lock_dir) / f"gpu{gpu}.lock", os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held_locks.append(fd)
            claimed.append(gpu)
        if len(claimed) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not claim {n} GPU(s) in {timeout_s:.0f} s")
            time.sleep(0.5)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
    return claimed


def plan_table(
    config: Config, batches: Sequence[Batch], finished: set[tuple[str, str]]
) -> str:
    """What a newcomer is about to start: per study, configurations, seeds, runs, finished.

    `finished` holds (study, run id) pairs: studies that share a run id never vouch for
    each other's run folders. `batches` may be every batch or only those still to train.
    """
    head = ("study", "configs", "seeds", "runs", "finished", "to train", "jobs", "est. s")
    rows = []
    for study in config.studies:
        runs = {r.run_id: r for r in study.runs}  # a repeated factor value runs once
        todo = [r for i, r in runs.items() if (study.name, i) not in finished]
        todo_s = sum(estimate_cost_s(r.spec) for r in todo)
        n_configs = len({r.config for r in study.runs})
        jobs = sum(1 for b in batches if b.study == study.name
                   and any((b.study, i) not in finished for i in b.run_ids))
        rows.append(
            (study.name, n_configs, len(study.seeds), len(runs), len(runs) - len(todo),
             len(todo), jobs, f"{todo_s:.0f}")
        )  # fmt: skip
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in [head, *rows]]  # fmt: skip
    n_runs = sum(r[3] for r in rows)
    n_done = sum(r[4] for r in rows)
    lines.append(
        f"{len(rows)} studies, {n_runs} runs: {n_done} finished, {n_runs - n_done} to train "
        f"in {sum(r[6] for r in rows)} jobs (est. s = estimated single-core training seconds left)"
    )
    return "\n".join(lines)
