"""Failures stay local and nothing finished is lost: failed runs, full disks, read-only
folders, missing data, concurrent writers; and (slow) the workflow under `--cores 1` vs 2,
two studies at once, and bad configs refused by `snakemake -n` before any job.

Runs are tiny (blobs, 120 samples, one hidden layer of 8): ~0.1 s each once torch is loaded.
Real read-only and full file systems need root (a tmpfs mount); without it those tests skip
and the simulated versions still run.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnopt.config import check

from nnopt import cli
from nnopt.store.runs import RunResult, is_finished, read_run, write_run
from nnopt.config.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
GOOD_CSV = ROOT / "tests" / "bad_inputs" / "data" / "good.csv"

TINY = {
    "data": {"name": "blobs", "n_samples": 120},
    "model": {"depth": 1, "width": 8},
    "budget": {"epochs": 2, "batch_size": 32},
}


def tiny_spec(**changes):
    raw = {**TINY, **changes}
    return parse_spec(raw)


def stat_key(run_dir: Path) -> tuple[int, int]:
    """inode and mtime of metrics.json: unchanged means the run was not rewritten."""
    st = (run_dir / "metrics.json").stat()
    return st.st_ino, st.st_mtime_ns


def items_for(tmp_path: Path, specs) -> list[dict]:
    return [
        {"study": "s", "factors": {"i": i}, "spec": spec, "out": tmp_path / "runs" / spec.run_id}
        for i, spec in enumerate(specs)
    ]


# --- a failing run fails alone; a rerun retries only it -----------------------------------


def test_failed_run_is_recorded_others_go_on_and_rerun_retries_only_it(tmp_path):
    from nnopt.train.runner import run_batch

    table = tmp_path / "t.csv"
    shutil.copy(GOOD_CSV, table)
    bad = parse_spec({**TINY, "data": {"name": "table", "path": str(table)}})
    specs = [tiny_spec(seed=0), bad, tiny_spec(seed=1)]
    table.unlink()  # the file vanishes after validation: the run raises inside training
    items = items_for(tmp_path, specs)

    rows = run_batch(items)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    record = read_run(items[1]["out"])
    assert record["status"] == "failed"
    assert str(table) in record["error"] and "Traceback" in record["traceback"]
    assert all(v is None for v in record["metrics"].values())
    assert not is_finished(items[1]["out"], bad.run_id)
    kept = [stat_key(items[i]["out"]) for i in (0, 2)]

    shutil.copy(GOOD_CSV, table)  # fixed: the rerun retries the failed run only
    rows = run_batch(items)
    assert [r["trained"] for r in rows] == [False, True, False]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert [stat_key(items[i]["out"]) for i in (0, 2)] == kept


def test_out_of_memory_in_one_run_is_recorded(tmp_path, monkeypatch):
    from nnopt.train import runner

    real_train = runner._train
    specs = [tiny_spec(seed=0), tiny_spec(seed=1)]

    def train(spec, *args):
        if spec.seed == 1:
            raise MemoryError("simulated: cannot allocate 64 GiB")
        return real_train(spec, *args)

    monkeypatch.setattr(runner, "_train", train)
    rows = runner.run_batch(items_for(tmp_path, specs))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "MemoryError: simulated" in read_run(rows[1]["out"])["error"]


# --- partial outputs are never taken for finished ones ------------------------------------


def test_temp_and_truncated_run_dirs_are_not_finished(tmp_path):
    from nnopt.train.runner import run_batch

    spec = tiny_spec()
    runs = tmp_path / "runs"
    write_run(runs / "ref", RunResult(status="ok"), run_id=spec.run_id, study="s", factors={},
              spec=spec.to_dict())  # fmt: skip
    good_json = (runs / "ref" / "metrics.json").read_text()
    # A complete-looking temp dir of a killed writer, and a final dir with a cut-off file.
    (runs / f".{spec.run_id}.tmp-killed").mkdir()
    (runs / f".{spec.run_id}.tmp-killed" / "metrics.json").write_text(good_json)
    out = runs / spec.run_id
    out.mkdir()
    (out / "metrics.json").write_text(good_json[: len(good_json) // 2])
    assert not is_finished(out, spec.run_id)

    rows = run_batch([{"study": "s", "spec": spec, "out": out}])
    assert rows[0]["trained"] and rows[0]["status"] == "ok"
    assert read_run(out)["metrics"]["test_accuracy"] is not None


def test_wrong_run_id_in_a_dir_is_not_finished(tmp_path):
    a, b = tiny_spec(seed=0), tiny_spec(seed=1)
    write_run(tmp_path / "x", RunResult(status="ok"), run_id=a.run_id, study="s", factors={},
              spec=a.to_dict())  # fmt: skip
    assert is_finished(tmp_path / "x", a.run_id)
    assert not is_finished(tmp_path / "x", b.run_id)


# --- full disks and read-only folders ------------------------------------------------------


def test_disk_full_while_writing_keeps_the_old_run_and_names_the_file(tmp_path, monkeypatch):
    from nnopt.store import runs as results

    spec = tiny_spec()
    out = tmp_path / "runs" / spec.run_id
    write_run(out, RunResult(status="ok"), run_id=spec.run_id, study="s", factors={},
              spec=spec.to_dict())  # fmt: skip
    before = (out / "metrics.json").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(OSError) as info:
        write_run(out, RunResult(status="failed", error="x"), run_id=spec.run_id, study="s",
                  factors={}, spec=spec.to_dict())  # fmt: skip
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path / "runs") in info.value.filename
    assert (out / "metrics.json").read_bytes() == before  # the finished run is untouched
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [spec.run_id]  # no temp


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into: a read-only tmpfs (root) or mode 0555 (others)."""
    path = tmp_path / "ro"
    if os.geteuid() != 0:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
    elif _mount_tmpfs(path, "ro,size=64k"):
        yield path
        subprocess.run(["umount", str(path)], check=True)
    else:
        pytest.skip("root without mount rights: cannot make a read-only folder")


@pytest.fixture
def full_dir(tmp_path):
    """A tmpfs with 64 KiB, filled up: writes fail with ENOSPC (needs root)."""
    path = tmp_path / "full"
    if not _mount_tmpfs(path, "size=64k"):
        pytest.skip("needs root and tmpfs to fill a real file system")
    try:
        with open(path / "filler", "wb") as handle:
            handle.write(b"\0" * 64 * 1024)
    except OSError:
        pass  # full now
    yield path
    subprocess.run(["umount", str(path)], check=True)


def write_spec(tmp_path: Path, raw: dict) -> Path:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("where", ["read_only_dir", "full_dir"])
def test_train_into_unwritable_folder_fails_first_with_one_line(where, request, tmp_path, capsys):
    folder = request.getfixturevalue(where)
    spec = write_spec(tmp_path, TINY)
    code = cli.main(["train", "--spec", str(spec), "--out", str(folder / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"nnopt train: error: --out: cannot write to {folder}")
    why = "No space left on device" if where == "full_dir" else ("Read-only", "Permission denied")
    assert any(w in err for w in ([why] if isinstance(why, str) else why))


def test_check_writable_names_a_file_in_the_way(tmp_path):
    (tmp_path / "results").write_text("a file where a folder should be")
    with pytest.raises(check.SpecError, match=f"out: cannot write to {tmp_path / 'results'}"):
        check.check_writable(tmp_path / "results" / "runs")


def test_missing_dataset_file_is_refused_before_training(tmp_path, capsys):
    missing = tmp_path / "gone.csv"
    spec = write_spec(tmp_path, {**TINY, "data": {"name": "table", "path": str(missing)}})
    code = cli.main(["train", "--spec", str(spec), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"data.path: file or folder not found: {missing}" in err
    assert not (tmp_path / "run").exists()


# --- concurrent writers of one run directory -----------------------------------------------


WRITER = """
import sys
from nnopt.store.runs import RunResult, write_run
out, value = sys.argv[1], float(sys.argv[2])
for _ in range(15):
    result = RunResult(status="ok")
    result.metrics["test_accuracy"] = value
    write_run(out, result, run_id="r1", study="s", factors={}, spec={"seed": 0})
"""


def test_concurrent_writers_of_one_run_never_crash_or_leave_debris(tmp_path):
    # Separate interpreters, not fork: polars' thread pool does not survive a fork.
    out = str(tmp_path / "runs" / "r1")
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, out, str(v)], stderr=subprocess.PIPE)
        for v in range(3)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r1"]
    assert read_run(out)["metrics"]["test_accuracy"] in (0.0, 1.0, 2.0)


# --- resuming after kill -9: stale Snakemake locks and incomplete markers ------------------

HOLDER = """
import sys, time
from nnopt.plan.recovery import claim_working_dir
print(claim_working_dir(sys.argv[1]) is not None, flush=True)
time.sleep(60)
"""


def _marker(state: Path, output: str) -> Path:
    import base64

    marker = state / "incomplete" / base64.urlsafe_b64encode(output.encode()).decode()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("{}")
    return marker


def test_claim_clears_what_a_killed_instance_left(tmp_path, monkeypatch):
    from nnopt.plan.recovery import claim_working_dir

    monkeypatch.chdir(tmp_path)
    state = Path(".snakemake")
    (state / "locks").mkdir(parents=True)
    (state / "locks" / "0.output.lock").write_text("results/summary.parquet\n")
    partial = Path("results/batches/b-0123456789.json")
    partial.parent.mkdir(parents=True)
    partial.write_text('{"runs": [')  # cut off by the kill
    marker = _marker(state, str(partial))
    outside = tmp_path.parent / "outside.txt"
    outside.write_text("not ours")
    _marker(state, str(outside))  # a marker pointing outside the folder is never followed
    keep = Path("results/batches/b-9876543210.json")
    keep.write_text("{}")

    cleaned = claim_working_dir(state)
    assert cleaned == [str(state / "locks"), str(partial)]
    assert not (state / "locks").exists() and not partial.exists() and not marker.exists()
    assert keep.exists() and outside.exists()


def test_claim_is_free_again_once_the_holder_is_killed(tmp_path):
    from nnopt.plan.recovery import claim_working_dir

    state = tmp_path / ".snakemake"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "True"
    (state / "locks").mkdir()
    (state / "locks" / "0.output.lock").write_text("results/x\n")  # what Snakemake leaves
    holder.kill()  # SIGKILL: the kernel drops its flock
    holder.wait()
    assert claim_working_dir(state) == [str(state / "locks")]


def test_a_clean_exit_leaves_nothing_to_report(tmp_path):
    """13.16: an empty locks folder (what a finished Snakemake leaves) is no leftover."""
    from nnopt.plan.recovery import claim_working_dir

    state = tmp_path / ".snakemake"
    (state / "locks").mkdir(parents=True)
    assert claim_working_dir(state) == []


def test_claim_leaves_a_live_instance_alone(tmp_path):
    from nnopt.plan.recovery import claim_working_dir

    state = tmp_path / ".snakemake"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "True"
        (state / "locks").mkdir()
        assert claim_working_dir(state) is None
        assert (state / "locks").exists()  # the live instance's locks stay
        # A second live instance (here: this test process) keeps its shared lock after the
        # first one dies, so a third instance still must not clean.
        holder.kill()
        holder.wait()
        third = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(60)", ""),
                                str(state)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert third.stdout.strip() == "False"
        assert (state / "locks").exists()
    finally:
        holder.kill()
        holder.wait()


# --- bad configs through `snakemake -n`: one line naming the key, nothing started ----------

SNAKEMAKE_CASES = {  # corpus file -> what stderr must name
    "config_duplicate_yaml_key": "duplicate key 'studies'",
    "config_use_yte": "__use_yte__: refused",
    "config_alias_bomb": "aliases expand",
    "config_nan_data": "data.path: tests/bad_inputs/data/nan.csv column 'x1'",
    "config_missing_data_file": "data.path: file or folder not found",
    "config_unknown_study_key": "studies.s.gird: unknown key",
    "config_python_object_apply": "not valid JSON or YAML",  # Snakemake's own loader refuses
}


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory):
    dest = tmp_path_factory.mktemp("wf")
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "bad_inputs", dest / "tests" / "bad_inputs")
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SNAKEMAKE_CASES))
def test_snakemake_dry_run_refuses_bad_config(workflow_dir, name):
    done = subprocess.run(
        ["snakemake", "-n", "--cores", "1", "--configfile", f"tests/bad_inputs/{name}.yaml"],
        cwd=workflow_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert SNAKEMAKE_CASES[name] in output
    assert "Traceback" not in output
    assert max(map(len, output.splitlines())) < 600
    assert not (workflow_dir / "results").exists()


@pytest.mark.slow
def test_snakemake_with_read_only_results_names_the_folder(tmp_path):
    dest = tmp_path / "wf"
    dest.mkdir()
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    results = dest / "results"
    if os.geteuid() != 0:
        results.mkdir()
        results.chmod(0o555)
    elif not _mount_tmpfs(results, "ro,size=64k"):
        pytest.skip("root without mount rights: cannot make a read-only folder")
    try:
        done = subprocess.run(
            ["snakemake", "results/summary.parquet", "--cores", "1", "--configfile",
             "config/smoke.yaml"], cwd=dest, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(results)], check=True)
        else:
            results.chmod(0o755)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    assert "nnopt: error: results: cannot write to " in done.stderr
    assert not (dest / "logs" / "train").exists()  # no job started


def test_device_check_can_be_left_to_the_machines_that_run_the_jobs(monkeypatch):
    from nnopt.config.check_io import NO_DEVICE_CHECK, check_device
    from nnopt.config.spec import DeviceSpec

    many = DeviceSpec(device="cuda", world_size=64)
    with pytest.raises(check.SpecError, match=f"device.*{NO_DEVICE_CHECK}=1|device.world_size"):
        check_device(many)
    monkeypatch.setenv(NO_DEVICE_CHECK, "1")
    check_device(many)  # a Slurm submit host without GPUs: the GPU nodes decide
