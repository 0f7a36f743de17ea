"""benchmarks/gpu.sh without a GPU: a clear refusal, or the CPU fallback end to end."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(**env):
    full = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable,
            "OMP_NUM_THREADS": "1", **env}  # fmt: skip
    return subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_without_cuda_the_script_says_so_and_exits_3():
    done = run_script()
    assert done.returncode == 3
    assert "no CUDA device" in done.stderr


def test_the_cpu_fallback_runs_every_check():
    done = run_script(NNOPT_GPU_FALLBACK="cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "equality on cpu" in out and "(ok," in out
    assert "speed-up" in out
    assert "studyset on cpu:" in out and "all checks passed" in out
