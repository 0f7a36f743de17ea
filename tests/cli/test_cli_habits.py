"""CLI habits: --version, the status line with an ETA."""

import json
import subprocess
import sys

import pytest

import nnopt
from nnopt.cli.main import main
from nnopt.store.runs import RunResult, write_run
from nnopt.store.status import format_progress, read_progress


def test_version_prints_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"nnopt {nnopt.__version__}"


def _run(results, study, run_id, status, finished_at, wall_s=10.0):
    result = RunResult(status=status)
    result.metrics["wall_time_s"] = wall_s
    result.provenance = {"finished_at": finished_at}
    write_run(results / "runs" / study / run_id, result, run_id=run_id, study=study,
              factors={}, spec={})


def test_status_counts_runs_and_estimates_eta(tmp_path, capsys):
    # 3 runs finished 60 s apart -> 30 s per run; a plan of 6 -> 3 left (one failed) -> 90 s.
    for i, stamp in enumerate(["2026-01-01T10:00:00+00:00", "2026-01-01T10:00:30+00:00",
                               "2026-01-01T10:01:00+00:00"]):
        _run(tmp_path, "a", f"r{i}", "ok", stamp)
    _run(tmp_path, "b", "bad", "failed", "2026-01-01T10:01:10+00:00")
    progress = read_progress(tmp_path)
    assert (progress.done, progress.failed, progress.total) == (3, 1, 4)  # no plan: folders
    (tmp_path / "plan.json").write_text(json.dumps({"runs": [{} for _ in range(6)]}))
    progress = read_progress(tmp_path)
    assert (progress.total, progress.eta_s) == (6, 90.0)
    assert main(["status", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "runs 3/6 done (50%), 1 failed, ETA 1m 30s"


def test_status_eta_from_wall_time_with_one_run(tmp_path):
    _run(tmp_path, "a", "r0", "ok", "2026-01-01T10:00:00+00:00", wall_s=12.0)
    (tmp_path / "plan.json").write_text(json.dumps([{}, {}, {}]))
    assert read_progress(tmp_path).eta_s == 24.0
    assert "ETA 0m 24s" in format_progress(read_progress(tmp_path))


def test_status_of_missing_folder_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nnopt", "status", "--results",
                          str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--results" in out.stderr
