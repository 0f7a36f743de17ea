"""kill -9 of a running study, then the same command again: nothing finished is lost or
retrained, nothing partial is taken as finished, and the summary equals an uninterrupted run.

The first test (~40-140 s on 2 busy cores) has three phases, all in temporary copies of the
workflow:
  1. `snakemake --cores 2` on 12 runs in 6 batch jobs, in its own session; once some runs are
     finished a second instance with another config is started in the same folder and must
     be refused (the folder lock: another plan) before it writes anything, without touching
     the first; then the whole process group
     gets SIGKILL.
  2. the same command again: it must finish, keep every finished run's metrics.json (same
     inode and mtime), and train the rest.
  3. an uninterrupted `--cores 1` run in a fresh copy: summary.parquet and runs.parquet must
     be equal, timing columns aside (so this also compares 1 and 2 cores).
The second kills a long run (checkpoint every epoch) and checks that the same command
continues from its checkpoint to the metrics and curve of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
defaults:
  data: {name: mnist1d, n_samples: 600}
  model: {kind: mlp, depth: 1, width: 16}
  budget: {epochs: 2, batch_size: 64}
seeds: 4
runs_per_job: 2
studies:
  - name: act
    cohorts: false  # single runs, 2 a job: 6 jobs finish in waves, so the kill finds runs left
    grid: {model.activation: [sigmoid, relu, tanh]}
    metrics: [test_accuracy, final_train_loss]
"""
OTHER = """
defaults: {data: {name: blobs, n_samples: 200}, budget: {epochs: 1}}
studies:
  - name: other
    grid: {model.depth: [1, 2]}
"""
N_RUNS = 12
TARGET = "results/summary.parquet"
# Columns and metric rows that measure time or memory, not the computation.
TIMING = {
    "train_time_s", "eval_time_s", "wall_time_s", "samples_per_s", "time_to_target_s",
    "time_to_target_loss_s", "peak_rss_mb", "peak_cuda_mb", "started_at", "finished_at",
    "hostname", "threads", "step_time_median_s", "step_time_iqr_s",
    # measured only when a run trains alone (a cohort's stacked step holds every member's
    # tensors): a run retrained alone has them, its twin trained in a cohort does not
    "activation_peak_bytes", "train_step_memory_bytes",
    # which runs trained together: a rerun stacks only the runs it retrains
    "cohort_id", "cohort_size", "cohort_wall_time_s",
}  # fmt: skip


def workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "config" / "interrupt.yaml").write_text(CONFIG)
    (dest / "config" / "other.yaml").write_text(OTHER)
    return dest


def command(cores: int, config: str = "config/interrupt.yaml") -> list[str]:
    return ["snakemake", TARGET, "--cores", str(cores), "--configfile", config]


def finished_runs(cwd: Path) -> dict[str, tuple[int, int]]:
    """run dir -> (inode, mtime) of metrics.json, for complete ok/diverged runs only."""
    out = {}
    for path in (cwd / "results" / "runs").glob("*/*/metrics.json"):
        if path.parent.name.startswith("."):
            continue
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if record.get("status") in ("ok", "diverged"):
            st = path.stat()
            out[str(path.parent.relative_to(cwd))] = (st.st_ino, st.st_mtime_ns)
    return out


def manifest_paths(cwd: Path) -> list[Path]:
    """The batch manifests (not the `.todo.json` run lists beside them)."""
    paths = (cwd / "results" / "batches").glob("*.json")
    return sorted(p for p in paths if not p.name.endswith(".todo.json"))


def trained_runs(cwd: Path, since: dict[Path, int]) -> list[tuple[str, str]]:
    """(study, run id) of the runs trained by manifests written after `since` was taken."""
    return sorted(
        (row["study"], row["run_id"])
        for manifest in manifest_paths(cwd)
        if since.get(manifest) != manifest.stat().st_mtime_ns
        for row in json.loads(manifest.read_text())["runs"]
        if row["trained"]
    )


REFUSED = "another snakemake instance runs in this folder with another plan"
PLAN_FILES = ("results/plan.json", "results/plan/act.json")


def written(cwd: Path) -> dict[str, tuple[int, bytes]]:
    """Path -> (mtime, bytes) of the plan files and the batch records and manifests."""
    paths = [cwd / p for p in PLAN_FILES] + sorted((cwd / "results" / "batches").glob("*"))
    return {str(p.relative_to(cwd)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in paths if p.is_file()}  # fmt: skip


def without_timing(frame: pl.DataFrame) -> pl.DataFrame:
    if "metric" in frame.columns:
        frame = frame.filter(~pl.col("metric").is_in(sorted(TIMING)))
    keep = [c for c in frame.columns if c not in TIMING]
    return frame.select(keep).sort(frame.columns[:4])


@pytest.mark.slow
def test_kill_9_then_same_command_resumes_without_loss(tmp_path):
    cwd = workflow_copy(tmp_path / "killed")
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command(2), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while len(finished_runs(cwd)) < 2 and first.poll() is None:
            assert time.monotonic() < deadline, "no run finished within 240 s"
            time.sleep(0.1)
        assert first.poll() is None, "the study ended before it could be interrupted"

        # A second study in the same folder while the first runs: refused before it writes
        # anything (the plan, its slices, batch records), the first one untouched. The first
        # is stopped meanwhile (it keeps its lock), so nothing it writes blurs the comparison
        # and the kill below still finds unfinished runs however slow the second one starts.
        os.killpg(first.pid, signal.SIGSTOP)
        before = written(cwd)
        second = subprocess.run(command(1, "config/other.yaml"), cwd=cwd, capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert second.returncode != 0
        assert REFUSED in second.stderr, second.stderr[-3000:]
        assert "Traceback" not in second.stdout + second.stderr
        assert not (cwd / "results" / "runs" / "other").exists()
        assert not (cwd / "results" / "plan" / "other.json").exists()
        assert written(cwd) == before
        assert first.poll() is None, "the refused instance must not disturb the running one"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole tree: snakemake and its jobs
        first.wait()
        log.close()

    kept = finished_runs(cwd)
    assert 2 <= len(kept) < N_RUNS
    assert not (cwd / TARGET).exists()
    manifests_before = {p: p.stat().st_mtime_ns for p in manifest_paths(cwd)}

    again = subprocess.run(command(2), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    done = finished_runs(cwd)
    assert len(done) == N_RUNS
    assert {k: done[k] for k in kept} == kept, "a finished run was retrained or rewritten"
    runs = pl.read_parquet(cwd / "results" / "runs.parquet")
    # "stalled": an ok run that never left chance (a sigmoid MLP after 2 epochs may not)
    assert runs.height == N_RUNS and set(runs["status"]) <= {"ok", "stalled"}
    trained_again = [
        row["run_id"]
        for manifest in manifest_paths(cwd)
        if manifests_before.get(manifest) != manifest.stat().st_mtime_ns  # written by the rerun
        for row in json.loads(manifest.read_text())["runs"]
        if row["trained"]
    ]
    assert sorted(trained_again) == sorted(
        Path(k).name for k in done if k not in kept
    ), "only unfinished runs are trained on the rerun"

    reference = workflow_copy(tmp_path / "reference")
    clean = subprocess.run(command(1), cwd=reference, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    for table in ("summary.parquet", "runs.parquet"):
        assert_frame_equal(
            without_timing(pl.read_parquet(cwd / "results" / table)),
            without_timing(pl.read_parquet(reference / "results" / table)),
        )


HOLDER = """
import sys, time
from nnopt.plan.recovery import claim_working_dir
print(claim_working_dir(sys.argv[1], sys.argv[2]) is not None, flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_second_instance_of_another_config_is_refused_before_writing(tmp_path):
    """The refusal without a race: a process that holds the folder lock with the plan of
    config/interrupt.yaml stands in for the running instance (what the kill -9 test above
    checks with a real one). `snakemake -n` and a real run of another config are refused in
    one line and write nothing; the same config joins; once the holder is killed the other
    config takes the folder over."""
    from nnopt.plan.recovery import live_plan

    cwd = workflow_copy(tmp_path / "wf")
    dry = [*command(1), "-n"]
    alone = subprocess.run(dry, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    digest = live_plan(cwd / ".snakemake")["plan"]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ".snakemake", digest], cwd=cwd,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "True"
        before = written(cwd)
        for other in ([*command(1, "config/other.yaml"), "-n"], command(1, "config/other.yaml")):
            refused = subprocess.run(other, cwd=cwd, capture_output=True, text=True, timeout=300)
            assert refused.returncode == 1, refused.stderr[-3000:]
            lines = [line for line in refused.stderr.splitlines() if line.startswith("nnopt:")]
            assert len(lines) == 1 and REFUSED in lines[0], refused.stderr[-3000:]
            assert f"pid {holder.pid}" in lines[0] and "Traceback" not in refused.stderr
            assert written(cwd) == before
            assert not (cwd / "results" / "plan" / "other.json").exists()
            assert not (cwd / "results" / "runs").exists() and not (cwd / "logs").exists()
        joined = subprocess.run(dry, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert joined.returncode == 0, joined.stderr[-3000:]
        assert written(cwd) == before
    finally:
        holder.kill()
        holder.wait()
    taken = subprocess.run([*command(1, "config/other.yaml"), "-n"], cwd=cwd,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert taken.returncode == 0, taken.stderr[-3000:]
    assert (cwd / "results" / "plan" / "other.json").exists()
    assert live_plan(cwd / ".snakemake")["plan"] != digest


LONG = """
defaults:
  data: {name: mnist1d, n_samples: 1500}
  model: {kind: mlp, depth: 2, width: 64}
  budget: {epochs: 30, batch_size: 32}
  checkpoint: {every_epochs: 1}
seeds: 1
studies:
  - name: long
"""


@pytest.mark.slow
def test_killed_long_run_resumes_from_its_checkpoint(tmp_path):
    import torch  # noqa: F401 (checkpoint files are torch payloads)

    from nnopt.train.checkpoint import load_checkpoint, save_checkpoint
    from nnopt.store.runs import read_run
    from nnopt.train.runner import run_one
    from nnopt.config.spec import parse_spec

    cwd = workflow_copy(tmp_path / "wf")
    (cwd / "config" / "long.yaml").write_text(LONG)
    cmd = command(1, "config/long.yaml")
    first = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list((cwd / "results" / "runs" / "long").glob("*.ckpt/ckpt.pt")):
            assert first.poll() is None, "the run ended before a checkpoint was seen"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    (ckpt,) = (cwd / "results" / "runs" / "long").glob("*.ckpt")
    run_dir = ckpt.with_suffix("")
    assert not run_dir.exists(), "killed before the run finished"
    state = load_checkpoint(ckpt)
    assert 1 <= state["epochs_done"] < 30
    # Mark the checkpoint (a timer, no effect on the computation): the mark in the final
    # metrics proves that the rerun continued from it instead of starting again.
    state["eval_time_s"] += 1000.0
    save_checkpoint(ckpt, state)

    again = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = read_run(run_dir)
    assert resumed["status"] == "ok" and resumed["metrics"]["eval_time_s"] >= 1000.0
    assert not ckpt.exists(), "the finished run directory supersedes its checkpoint"

    spec = parse_spec(resumed["spec"])
    assert run_one(spec, tmp_path / "reference") == "ok"
    reference = read_run(tmp_path / "reference")
    for name, value in resumed["metrics"].items():
        if name not in TIMING and name != "eval_time_s":
            assert value == reference["metrics"][name], name
    assert_frame_equal(
        pl.read_parquet(run_dir / "curve.parquet").drop("train_time_s"),
        pl.read_parquet(tmp_path / "reference" / "curve.parquet").drop("train_time_s"),
    )


DAMAGE = """
defaults:
  data: {name: blobs, n_samples: 120}
  model: {kind: mlp, depth: 1, width: 8}
  budget: {epochs: 2, batch_size: 32}
seeds: 2
runs_per_job: 2
studies:
  - name: gen
    grid: {model.activation: [relu, tanh]}
  - name: tab
    base: {data: {name: table, path: config/table.csv}}
"""


def _table(rows: int) -> str:
    return "x1,x2,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(rows))


@pytest.mark.slow
def test_damaged_failed_and_stale_runs_are_retrained_exactly(tmp_path):
    """13.4/13.5 with real snakemake: delete one file of a finished run, truncate another,
    make a third failed, shorten the CSV of a study: the next `snakemake` retrains exactly
    those runs (the CSV's runs under new ids), and the summary equals a clean run's."""
    cwd = workflow_copy(tmp_path / "damaged")
    (cwd / "config" / "damage.yaml").write_text(DAMAGE)
    (cwd / "config" / "table.csv").write_text(_table(120))
    cmd = command(2, "config/damage.yaml")
    first = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    gen = sorted((cwd / "results" / "runs" / "gen").iterdir())
    tab_before = {p.name for p in (cwd / "results" / "runs" / "tab").iterdir()}
    assert len(gen) == 4 and len(tab_before) == 2
    (gen[0] / "curve.parquet").unlink()
    (gen[1] / "metrics.json").write_text((gen[1] / "metrics.json").read_text()[:40])
    record = json.loads((gen[2] / "metrics.json").read_text())
    (gen[2] / "metrics.json").write_text(json.dumps({**record, "status": "failed"}))
    (cwd / "config" / "table.csv").write_text(_table(90))  # the user shortened their data
    untouched = {k: v for k, v in finished_runs(cwd).items() if gen[3].name in k}
    since = {p: p.stat().st_mtime_ns for p in manifest_paths(cwd)}

    again = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    tab_after = {p.name for p in (cwd / "results" / "runs" / "tab").iterdir()} - tab_before
    expected = sorted([("gen", p.name) for p in gen[:3]] + [("tab", i) for i in tab_after])
    assert len(tab_after) == 2 and trained_runs(cwd, since) == expected
    assert {k: v for k, v in finished_runs(cwd).items() if k in untouched} == untouched
    runs = pl.read_parquet(cwd / "results" / "runs.parquet")
    assert set(runs.filter(pl.col("study") == "tab")["run_id"]) == tab_after  # not the stale ones

    reference = workflow_copy(tmp_path / "reference")
    (reference / "config" / "damage.yaml").write_text(DAMAGE)
    (reference / "config" / "table.csv").write_text(_table(90))
    clean = subprocess.run(cmd, cwd=reference, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    for table in ("summary.parquet", "runs.parquet"):
        assert_frame_equal(
            without_timing(pl.read_parquet(cwd / "results" / table)),
            without_timing(pl.read_parquet(reference / "results" / table)),
        )
