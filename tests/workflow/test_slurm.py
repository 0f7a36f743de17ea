"""The Slurm profile on a real Slurm cluster: one node on loopback, started by this module.

The module fixture runs scripts/slurm-up.sh (as root it installs Debian's slurmctld, slurmd,
slurm-client and munge when missing, ~15 s, and starts them, ~1 s) and slurm-down.sh at the
end. Where Slurm cannot be used (not root, no apt-get, install failed) the script exits 77
and every test here is skipped with its reason. Then `config/smoke.yaml` runs twice, locally
and through `workflow/profiles/slurm`, and the two must agree run by run (micrograd's
two-implementations test), while Slurm's own records show that the jobs really ran there.
A GPU study is submitted on hold, to check that it asks Slurm for a GPU, and cancelled:
nothing here can run CUDA. Runtime: ~2 min (+15 s when Slurm must be installed first).

Opt-in: it changes the machine (packages, /etc/slurm, daemons), so it runs only when
NNOPT_TEST_SLURM=1 is set (`.ci/run` sets it); otherwise every test here is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import polars.testing
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SMOKE = "config/smoke.yaml"
# What a copy of the project needs to run; results, logs and caches are left behind.
_IGNORE = shutil.ignore_patterns(
    ".git", ".snakemake", "results", "reports", "logs", "__pycache__", "*.egg-info", ".pytest_cache"
)
# Metrics that depend only on the spec (the engine is deterministic on CPU); the others
# (times, throughput, memory) are measurements and may differ between the two runs.
DETERMINISTIC_METRICS = (
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "final_train_loss",
    "final_val_loss",
    "steps_to_target",
    "epochs_to_target",
    "param_bytes",
    "optimizer_state_bytes",
)
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")

pytestmark = pytest.mark.skipif(
    os.environ.get("NNOPT_TEST_SLURM") != "1",
    reason="installs and starts Slurm on this machine; set NNOPT_TEST_SLURM=1 to run it",
)


def _snakemake(workdir: Path, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), *args]
    done = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    (workdir / "snakemake.out").write_text(done.stdout + done.stderr)
    return done


def _slurm_args(*extra: str) -> list[str]:
    """The shipped profile with a short first status check (the profile waits 20 s; the
    plugin adds 10 s to the wait after each poll that finds no job finished) and training
    groups of 3, so that the smoke's batches make two groups, one per CPU of this node."""
    return [
        "--profile",
        str(PROFILE),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--group-components",
        "train=3",
        "--verbose",  # prints each sbatch call
        *extra,
    ]


def _job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict; finished jobs stay for MinJobAge (300 s) here."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.fixture(scope="module")
def slurm_cluster():
    up = subprocess.run(
        ["bash", str(SCRIPTS / "slurm-up.sh")], capture_output=True, text=True, timeout=600
    )
    if up.returncode == 77:
        reason = (up.stderr.strip().splitlines() or ["slurm-up.sh exited 77"])[-1]
        pytest.skip(f"no Slurm test cluster here: {reason}")
    assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
    started_here = "already up" not in up.stderr  # leave a cluster that CI started itself
    yield
    if started_here:
        down = subprocess.run(
            ["bash", str(SCRIPTS / "slurm-down.sh")], capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def smoke_runs(slurm_cluster, tmp_path_factory):
    """config/smoke.yaml run in two copies of the project: locally and through Slurm.

    The Slurm run mostly waits between status polls, so the local run goes meanwhile.
    """
    local, remote = (tmp_path_factory.mktemp(name) for name in ("local", "slurm"))
    for workdir in (local, remote):
        shutil.copytree(REPO, workdir, ignore=_IGNORE, dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--configfile", SMOKE, *_slurm_args()]
    with open(remote / "snakemake.out", "w") as log:
        slurm = subprocess.Popen(cmd, cwd=remote, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            local_done = _snakemake(local, "--cores", "2", "--configfile", SMOKE)
            slurm_rc = slurm.wait(timeout=360)
        finally:
            if slurm.poll() is None:
                slurm.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs
                slurm.wait(timeout=60)
    assert local_done.returncode == 0, local_done.stderr[-3000:]
    remote_log = (remote / "snakemake.out").read_text()
    assert slurm_rc == 0, remote_log[-5000:]
    return local, remote, remote_log


def _frame(workdir: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(workdir / "results" / name)


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_through_slurm_matches_local_run(smoke_runs):
    local, remote, _ = smoke_runs
    keys = ["study", "run_id", "seed", "status", "config"]
    runs_local, runs_slurm = (
        _frame(w, "runs.parquet").select(*keys, *DETERMINISTIC_METRICS).sort("run_id")
        for w in (local, remote)
    )
    assert runs_local.height > 0 and not (runs_local["status"] == "failed").any()
    pl.testing.assert_frame_equal(runs_slurm, runs_local, check_exact=True)
    summary_local, summary_slurm = (
        _frame(w, "summary.parquet")
        .filter(pl.col("metric").is_in(DETERMINISTIC_METRICS))
        .drop("ci_method")
        .sort("study", "config", "metric")
        for w in (local, remote)
    )
    assert summary_local.height > 0
    pl.testing.assert_frame_equal(summary_slurm, summary_local, check_exact=True)
    for report in ("report.html", "report.pdf"):
        assert (remote / "reports" / report).stat().st_size > 0


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_jobs_ran_in_slurm_within_the_node(smoke_runs):
    _, remote, log = smoke_runs
    job_ids = SUBMITTED.findall(log)
    assert job_ids, "no job was submitted to Slurm"
    jobs = [_job(job_id) for job_id in job_ids]
    assert all(j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs), jobs
    # Training jobs go to the CPU partition and, grouped, never ask for more CPUs than the
    # node has (a larger request would stay pending forever).
    trains = [j for j in jobs if "train" in j.get("Comment", "")]
    assert trains
    assert all(j["Partition"] == "main" for j in trains)
    assert all(int(j["NumCPUs"]) <= (os.cpu_count() or 1) for j in jobs)
    sbatch = [line for line in log.splitlines() if line.startswith("sbatch call:")]
    assert len(sbatch) == len(jobs) and not any("--gpus" in line for line in sbatch)
    # Slurm logs go where docs/slurm.md says (the plugin deletes those of successful jobs).
    assert all(f"--output {remote}/logs/slurm/" in line for line in sbatch)


BATCH_OUTPUT = re.compile(r"results/batches/([A-Za-z0-9_-]+-[0-9a-f]{10})\.json")


def _gpu_config(smoke: Path, out: Path) -> Path:
    """The smoke config's first study, one seed, every run on `device: auto`.

    `auto` runs go to a GPU when the submitting host declares GPUs (NNOPT_GPUS, below);
    `cuda` would be refused at parse time here, where torch sees no GPU.
    """
    raw = yaml.safe_load(smoke.read_text())
    raw["studies"] = raw["studies"][:1]
    raw["studies"][0]["seeds"] = 1
    defaults = raw.setdefault("defaults", {})
    defaults.setdefault("device", {})["device"] = "auto"
    out.write_text(yaml.safe_dump(raw))
    return out


def _held_jobs(timeout_s: float, proc: subprocess.Popen | None = None) -> list[str]:
    """Ids of our jobs pending on hold, once there are any ([] after timeout_s, or as soon
    as `proc`, the Snakemake that submits them, has ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        out = subprocess.run(
            ["squeue", "-h", "-t", "PD", "-o", "%i|%j|%r"], capture_output=True, text=True
        ).stdout
        held = [
            line.split("|")[0]
            for line in out.splitlines()
            if line.split("|")[1].startswith("nnopt_") and "Held" in line.split("|")[2]
        ]
        if held:
            return held
        time.sleep(0.5)
    return []


@pytest.mark.slurm
@pytest.mark.slow
def test_gpu_runs_ask_slurm_for_a_gpu(smoke_runs):
    """Submitted on hold (never runs: no GPU here), checked in Slurm's record, cancelled.

    sbatch refuses a request that no node could ever satisfy, so an accepted, held job is
    one that would start on the fake GPU. It reuses the Slurm smoke copy, whose prepared
    data the GPU study shares. Interrupting Snakemake (Ctrl-C) must cancel the held jobs.
    """
    _, remote, _ = smoke_runs
    config = _gpu_config(remote / SMOKE, remote / "config" / "gpu.yaml")
    cmd = [
        sys.executable, "-m", "snakemake", "train_all", "--configfile", str(config),
        *_slurm_args("--retries", "0", "--set-resources", "train:slurm_extra='--hold'"),
    ]  # fmt: skip
    with open(remote / "snakemake-gpu.out", "w") as log:
        env = {**os.environ, "NNOPT_GPUS": "0"}
        proc = subprocess.Popen(
            cmd, cwd=remote, stdout=log, stderr=subprocess.STDOUT, text=True, env=env
        )
        try:
            held = _held_jobs(timeout_s=90, proc=proc)
            jobs = [_job(job_id) for job_id in held]
        finally:
            proc.send_signal(signal.SIGINT)  # Snakemake cancels the held jobs it submitted
            proc.wait(timeout=60)
            states = {job_id: _job(job_id)["JobState"] for job_id in held}
            for job_id in _held_jobs(timeout_s=0.1):  # clean up whatever it did not cancel
                subprocess.run(["scancel", job_id], check=False)
    out = (remote / "snakemake-gpu.out").read_text()
    assert jobs, f"no held training job appeared in squeue:\n{out[-4000:]}"
    sbatch = [line for line in out.splitlines() if line.startswith("sbatch call:")]
    assert sbatch and all("--gpus=1" in line and " -p gpu " in line for line in sbatch)
    for job in jobs:
        assert job["Partition"] == "gpu"
        tres = job.get("TresPerJob", "") + job.get("TresPerNode", "")
        assert "gres:gpu:1" in tres, job
    assert set(states.values()) == {"CANCELLED"}, states
