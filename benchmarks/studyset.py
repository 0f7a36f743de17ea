"""A fixed study set from a cold start: wall time, its breakdown, peak memory of a job.

The workload is frozen: benchmarks/workloads/studyset-2026-12-01.yaml is a copy of the
shipped config/config.yaml of 2026-12-01 (405 runs; issue 14's target: <= 60 s cold on 2
cores, 184 s before cohorts), so the figure stays comparable while the shipped set grows.
`--workload config/config.yaml` times today's shipped set instead.

Copies Snakefile, workflow/ and config/ into a temporary folder (the workload as its
config/config.yaml), runs `snakemake --cores N` there, and prints the end-to-end wall time,
the CPU time of all its processes (what the wall time would be on an idle machine with
every core busy), the breakdown read from Snakemake's own log (start-up before the first
job, then per rule: jobs, job-seconds, first start and last end, so training, landscapes,
aggregate and report each show their share and the serial tail after the last training
job), the peak resident memory of any training job (sampled from the process tree), and
the cost model's estimate against each batch's measured wall time.

    python benchmarks/studyset.py                 # --cores 2, the frozen 405-run workload
    python benchmarks/studyset.py --configfile config/smoke.yaml --keep   # a reduced subset
    python benchmarks/studyset.py --log path/to/.snakemake/log/X.snakemake.log  # a past run
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workload", default="benchmarks/workloads/studyset-2026-12-01.yaml",
                   help="the study set timed (copied as config/config.yaml)")
    p.add_argument("--configfile", default=None, help="extra config merged over the workload")
    p.add_argument("--target", default="all", help="Snakemake target (default: all)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--log", metavar="FILE", help="only print the breakdown of this Snakemake log")
    return p.parse_args()


class PeakRss:
    """Samples the resident memory of every training job (an `nnopt train-batch` process)."""

    def __init__(self, root: psutil.Process, every_s: float = 0.2):
        self.root, self.every_s, self.peak_mb = root, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:
                children = []
            for proc in children:
                try:
                    if "train-batch" in proc.cmdline():
                        self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 1e6)
                except psutil.Error:
                    continue
            self._stop.wait(self.every_s)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


def job_spans(log: Path) -> tuple[datetime, list[tuple[str, str, datetime, datetime]]]:
    """(workflow start, [(rule, wildcards, start, end)]) from a Snakemake log: a job starts
    at the time stamp above its `rule NAME:` block and ends at the one above `Finished
    jobid: N`. Time stamps have one-second resolution."""
    lines = log.read_text(errors="replace").splitlines()
    first = next((ln for ln in lines if ln.startswith("  Date: ")), None)
    if first:
        started = datetime.strptime(first[8:].strip(), "%Y-%m-%d %H:%M:%S")
    else:  # --quiet logs no header; the log's name is its start time
        started = datetime.strptime(log.name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
    stamp, job, open_jobs, spans = None, None, {}, []
    for raw in lines:
        line = raw.strip()
        if m := _STAMP.match(raw):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := _RULE.match(raw):
            job = {"rule": m.group(1), "wildcards": "", "start": stamp}
        elif job is not None and line.startswith("jobid: "):
            open_jobs[line[len("jobid: "):]] = job  # the same dict: wildcards come later
        elif job is not None and line.startswith("wildcards: "):
            job["wildcards"] = line[len("wildcards: "):]
        elif (m := _FINISHED.match(raw)) and m.group(1) in open_jobs:
            done = open_jobs.pop(m.group(1))
            spans.append((done["rule"], done["wildcards"], done["start"], stamp))
    return started, spans


def print_breakdown(log: Path) -> None:
    """Start-up, then per rule (in order of first start): jobs, job-seconds, start, end."""
    started, spans = job_spans(log)
    if not spans:
        print(f"  (no finished jobs in {log})")
        return
    t0 = started or min(s for _, _, s, _ in spans)
    end = max(e for _, _, _, e in spans)
    print(f"breakdown from {log.name} (1-s stamps), end at {(end - t0).total_seconds():.0f} s:")
    print(f"  start-up (Snakemake, plan) until the first job: "
          f"{(min(s for _, _, s, _ in spans) - t0).total_seconds():5.0f} s")  # fmt: skip
    rules: dict[str, list] = {}
    for rule, wc, s, e in spans:
        rules.setdefault(rule, []).append((wc, s, e))
    print(f"  {'rule':<16}{'jobs':>5}{'job-s':>8}{'first start':>13}{'last end':>10}  longest")
    for rule, jobs in sorted(rules.items(), key=lambda kv: min(s for _, s, _ in kv[1])):
        secs = [(e - s).total_seconds() for _, s, e in jobs]
        longest = max(zip(secs, (wc for wc, _, _ in jobs)))
        print(f"  {rule:<16}{len(jobs):>5}{sum(secs):>8.0f}"
              f"{(min(s for _, s, _ in jobs) - t0).total_seconds():>13.0f}"
              f"{(max(e for _, _, e in jobs) - t0).total_seconds():>10.0f}"
              f"  {longest[0]:.0f} s {longest[1][:40]}")  # fmt: skip
    if "train" in rules:
        last_train = max(e for _, _, e in rules["train"])
        print(f"  serial tail after the last training job: {(end - last_train).total_seconds():.0f} s")


def stage_times(work: Path, started: float) -> dict[str, float]:
    """Seconds from the start until each stage's last output appeared."""

    def last(pattern: str) -> float | None:
        times = [p.stat().st_mtime for p in work.glob(pattern)]
        return max(times) - started if times else None

    def first(pattern: str) -> float | None:
        times = [p.stat().st_mtime for p in work.glob(pattern)]
        return min(times) - started if times else None

    stages = {
        "dataset": last("results/data/*.npz"),
        "first training job": first("results/batches/*[0-9a-f].json"),
        "training (last batch)": last("results/batches/*[0-9a-f].json"),
        "landscapes": last("results/landscape/*/*.parquet"),
        "aggregate": last("results/runs.parquet"),
        "report": last("reports/report.pdf"),
    }
    return {k: v for k, v in stages.items() if v is not None}


def estimates(work: Path) -> dict[str, float]:
    """The cost model's seconds for each batch, as the workflow planned it (its todo records)."""
    todos = [json.loads(p.read_text()) for p in work.glob("results/batches/*.todo.json")]
    return {t["batch"]: t["cost_s"] for t in todos if t.get("cost_s") is not None}


def main() -> None:
    args = parse_args()
    if args.log:
        print_breakdown(Path(args.log))
        return
    work = Path(tempfile.mkdtemp(prefix="nnopt-studyset-"))
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, work / folder)
    shutil.copy(ROOT / args.workload, work / "config" / "config.yaml")
    cmd = ["snakemake", args.target, "--cores", str(args.cores)]
    if args.configfile:
        cmd += [f"--configfile={args.configfile}"]
    print(f"{' '.join(cmd)}  (in {work})", flush=True)

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakRss(psutil.Process(proc.pid)) as rss:
        _, stderr = proc.communicate()
    wall_s = time.time() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{stderr[-4000:]}")

    manifests = [json.loads(p.read_text()) for p in work.glob("results/batches/*.json")
                 if not p.name.endswith(".todo.json")]  # the batches' manifests only
    records = [json.loads(p.read_text()) for p in work.glob("results/runs/*/*/metrics.json")]
    train_s = sum(r["metrics"]["train_time_s"] or 0 for r in records)
    statuses = {s: sum(r["status"] == s for r in records) for s in ("ok", "diverged", "failed")}
    print(f"wall time: {wall_s:.1f} s for {len(records)} runs in {len(manifests)} training jobs "
          f"({statuses}); Σ train_time_s = {train_s:.1f} s")  # fmt: skip
    # On a shared machine the wall time includes waiting for other users' processes; the
    # CPU time of the whole process tree over the cores is what an idle machine would take
    # if the cores were kept busy (a lower bound on its wall time).
    print(f"CPU time of all processes: {cpu_s:.1f} s -> {cpu_s / args.cores:.1f} s over "
          f"{args.cores} cores (load average now {psutil.getloadavg()[0]:.1f})")  # fmt: skip
    for stage, seconds in stage_times(work, started).items():
        print(f"  {stage:<22} done at {seconds:6.1f} s")
    for log in sorted(work.glob(".snakemake/log/*.snakemake.log"))[-1:]:
        print_breakdown(log)
    print(f"peak RSS of a training job: {rss.peak_mb:.0f} MB "
          f"(engine's own max peak_rss_mb: {max((r['metrics']['peak_rss_mb'] or 0) for r in records):.0f} MB)")  # fmt: skip

    cost = estimates(work)
    pairs = [(cost.get(m["batch"]), m["wall_time_s"]) for m in manifests if m["batch"] in cost]
    if pairs:
        ratio = sum(w for _, w in pairs) / sum(e for e, _ in pairs)
        print(f"cost model: measured/estimated job seconds = {ratio:.2f} over {len(pairs)} jobs "
              f"(longest job {max(w for _, w in pairs):.1f} s)")  # fmt: skip
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
