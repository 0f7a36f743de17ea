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
from nnopt.config.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
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
from nnopt.config.spec import SpecError
from nnopt.plan.recovery import claim_working_dir
try:
    print(claim_working_dir(*sys.argv[1:]) is not None, flush=True)
except SpecError as err:
    print("refused:", err, flush=True)
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


# --- issue 13: hostile input (--out, bounds, fast refusal, one reader, split sizes) -------


def snapshot(root: Path) -> dict:
    """Every entry under `root` (and root's siblings): name -> (kind, bytes or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            out[str(path)] = ("file", path.read_bytes())
        else:
            out[str(path)] = ("other", None)
    return out


def _train(tmp_path: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    spec = write_spec(tmp_path / "spec", TINY) if (tmp_path / "spec").mkdir() is None else None
    code = cli.main(["train", "--spec", str(spec), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def _user_folder(base: Path) -> Path:
    (base / "thesis").mkdir()
    (base / "thesis" / "chapter1.tex").write_text("years of work")
    return base / "thesis"


def _user_file(base: Path) -> Path:
    (base / "notes.txt").write_text("keep me")
    return base / "notes.txt"


def _symlink(base: Path) -> Path:
    (base / "elsewhere").mkdir()
    (base / "elsewhere" / "data.bin").write_text("x")
    (base / "link").symlink_to(base / "elsewhere")
    return base / "link"


def _fifo(base: Path) -> Path:
    os.mkfifo(base / "pipe")
    return base / "pipe"


def _fake_run_folder(base: Path) -> Path:
    (base / "looks").mkdir()
    (base / "looks" / "metrics.json").write_text('["not", "a", "run"]')
    (base / "looks" / "mine.csv").write_text("a,b")
    return base / "looks"


@pytest.mark.parametrize(
    "make, what",
    [(_user_folder, "a folder that is not a run directory"), (_user_file, "a file"),
     (_symlink, "a symbolic link"), (_fifo, "not a folder"),
     (_fake_run_folder, "a folder that is not a run directory")],
    ids=["user_folder", "file", "symlink", "fifo", "bad_metrics_json"],
)  # fmt: skip
def test_train_out_refuses_what_is_not_a_run_and_changes_nothing(make, what, tmp_path, capsys):
    base = tmp_path / "home"
    base.mkdir()
    out = make(base)
    before = snapshot(base)
    code, err = _train(tmp_path, out, capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"--out: {out} is {what}" in err and "nothing was written" in err
    assert snapshot(base) == before  # nothing emptied, hidden or renamed aside


def test_train_out_refuses_a_device_node(tmp_path, capsys):
    code, err = _train(tmp_path, Path("/dev/null"), capsys)
    assert code == 2 and "--out: /dev/null is not a folder (a device, socket or pipe)" in err
    assert Path("/dev/null").is_char_device()


def test_train_out_refuses_a_read_only_mount_point_before_training(read_only_dir, tmp_path, capsys):
    if not os.path.ismount(read_only_dir):
        pytest.skip("needs root to mount a read-only tmpfs")
    code, err = _train(tmp_path, read_only_dir, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--out: {read_only_dir} is a mount point, which cannot be replaced" in err


def test_train_out_replaces_an_earlier_run_and_an_empty_folder(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code, _ = _train(tmp_path, out, capsys)
    assert code == 0 and read_run(out)["status"] == "ok"
    first = stat_key(out)
    assert cli.main(["train", "--spec", str(tmp_path / "spec" / "spec.yaml"), "--out", str(out),
                     "--force"]) == 0  # fmt: skip
    assert stat_key(out) != first and read_run(out)["status"] == "ok"
    assert sorted(p.name for p in out.parent.iterdir()) == ["empty", "spec"]  # no debris


def test_size_limit_names_the_override_and_the_override_works(monkeypatch):
    from nnopt.config.spec import SpecError

    with pytest.raises(SpecError, match=r"NNOPT_LIMITS=model.width=20000\)"):
        parse_spec({"model": {"width": 20000}})
    monkeypatch.setenv("NNOPT_LIMITS", "model.width=20000")
    assert parse_spec({"model": {"width": 20000}}).model.width == 20000
    monkeypatch.setenv("NNOPT_LIMITS", "model.widht=20000")
    with pytest.raises(SpecError, match="NNOPT_LIMITS: unknown limit 'model.widht'.*did you mean"):
        parse_spec({"model": {"width": 20000}})


def test_seed_bound_is_what_torch_and_the_tables_accept():
    import torch

    from nnopt.config.limits import MAX_SEED
    from nnopt.config.spec import SpecError

    torch.Generator().manual_seed(MAX_SEED)  # the largest accepted seed really seeds
    assert parse_spec({"seed": MAX_SEED}).seed == MAX_SEED
    with pytest.raises(SpecError, match="seed: .* out of range"):
        parse_spec({"seed": MAX_SEED + 1})


@pytest.mark.parametrize(
    "study",
    [{"name": "s", "grid": {"optimizer.lr": [0.1 * i for i in range(1, 101)],
                            "model.width": list(range(1, 101))}},
     {"name": "s", "random": {"n": 10**9, "params": {"optimizer.lr": {"uniform": [0, 1]}}}},
     {"name": "s", "seeds": 10**15}],
    ids=["grid", "random", "seeds"],
)  # fmt: skip
def test_big_expansion_is_refused_before_any_spec_is_built(study, monkeypatch):
    from nnopt.config import studies

    def no_spec(*args, **kwargs):
        raise AssertionError("a spec was built before the run count was checked")

    monkeypatch.setattr(studies, "parse_spec", no_spec)
    with pytest.raises(check.SpecError, match="max_runs_per_study"):
        studies.parse_config({"max_runs_per_study": 1000, "studies": [study]})


def test_random_draws_that_print_alike_are_one_configuration():
    from nnopt.config.studies import parse_config

    config = parse_config({"max_runs_per_study": 5000, "studies": [{"name": "s", "random": {
        "n": 3000, "params": {"optimizer.lr": {"uniform": [0.1, 0.1001]}}}}]})  # fmt: skip
    runs = config.runs
    labels = [r.config for r in runs]
    assert len(set(labels)) == len(labels) < 3000  # repeats dropped, never pooled
    assert len({r.spec.optimizer.lr for r in runs}) == len(runs)


@pytest.mark.parametrize(
    "data",
    [{"name": "blobs", "n_samples": 120, "n_classes": 7}, {"name": "spirals", "n_samples": 31},
     {"name": "table", "path": str(GOOD_CSV), "val_fraction": 0.2, "test_fraction": 0.3},
     {"name": "table", "path": "BIG", "n_samples": 41}],
    ids=["blobs", "spirals", "table", "table_subsampled"],
)  # fmt: skip
def test_check_split_sizes_equal_the_loaders(data, tmp_path):
    """The check's arithmetic (fast) agrees with the loader's real split (slow reference)."""
    from nnopt.config.check_io import check_data
    from nnopt.config.splits import split_sizes
    from nnopt.train.data import load_dataset

    if data.get("path") == "BIG":  # 90 rows in 3 unequal classes, subsampled to 41
        big = tmp_path / "big.csv"
        big.write_text("x,label\n" + "".join(f"{i},{min(i % 5, 2)}\n" for i in range(90)))
        data = {**data, "path": str(big)}

    spec = parse_spec({"data": data})
    sizes = split_sizes(check_data(spec.data), spec.data.val_fraction, spec.data.test_fraction)
    ds = load_dataset(spec.data)
    assert sizes == (len(ds.y_train), len(ds.y_val), len(ds.y_test))


def test_check_and_loader_read_a_late_decimal_column_alike(tmp_path):
    """200 integer rows, then decimals: both read the column as numbers (one reader)."""
    from nnopt.train.data import load_dataset

    rows = ["x,label"] + [f"{i},{i % 2}" for i in range(200)] + [f"{i}.5,{i % 2}" for i in range(20)]
    table = tmp_path / "late.csv"
    table.write_text("\n".join(rows) + "\n")
    spec = check.check_spec({"data": {"name": "table", "path": str(table), "standardize": False}})
    ds = load_dataset(spec.data)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 220
    assert 0.5 in {float(v) % 1 for v in ds.x_test.ravel()} | {float(v) % 1 for v in ds.x_train.ravel()}


def test_loader_refuses_values_beyond_float32_too(tmp_path):
    from nnopt.train.data import load_dataset

    table = tmp_path / "big.csv"
    table.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(10)) + "-1e308,0\n")
    spec = parse_spec({"data": {"name": "table", "path": str(table)}})
    with pytest.raises(check.SpecError, match="NaN or inf values .or values beyond float32"):
        load_dataset(spec.data)
    with pytest.raises(check.SpecError, match="beyond float32's range counts as inf"):
        check.check_spec({"data": {"name": "table", "path": str(table)}})


# --- the report: control characters, long titles and missing glyphs (13.19) -----------------

LONG_TOKEN = "Unbroken" * 40  # 320 letters, no space: wider than any page


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    import json

    import yaml

    from fixtures.make_runs import make_runs
    from nnopt.analysis import aggregate as ag
    from nnopt.config.studies import parse_config

    root = tmp_path_factory.mktemp("hostile_report")
    raw = {"defaults": {"budget": {"epochs": 2}}, "seeds": 2, "studies": [{
        "name": "s", "title": f"{LONG_TOKEN} nul\x00 esc\x1b[31m rlo\u202eevil cjk中文",
        "description": "bidi \u2066isolate\u2069 and zero\u200bwidth",
        "grid": {"optimizer.lr": [0.1, 0.01]}}]}  # fmt: skip
    config = parse_config(raw)
    make_runs(config, root / "runs", means={}, sd=0.01)
    (root / "config.json").write_text(json.dumps(raw))
    (root / "claims.yaml").write_text(yaml.safe_dump({"claims": []}))
    ag.aggregate(config, root / "runs", root)
    assert cli.main(["report", "--config", str(root / "config.json"), "--results", str(root),
                     "--claims", str(root / "claims.yaml"), "--html", str(root / "r.html"),
                     "--pdf", str(root / "r.pdf")]) == 0  # fmt: skip
    return root


def test_report_html_shows_control_and_bidi_characters_as_text(hostile_report):
    html = (hostile_report / "r.html").read_text(encoding="utf-8")
    for raw in ("\x00", "\x1b", "\u202e", "\u2066", "\u2069", "\u200b"):
        assert raw not in html
    for shown in (r"nul\x00", r"esc\x1b[31m", r"rlo\u202eevil", r"\u2066isolate\u2069"):
        assert shown in html
    assert "cjk中文" in html  # the HTML keeps every printable character (browsers have fonts)


def test_report_pdf_wraps_a_long_title_and_marks_missing_glyphs(hostile_report):
    from weasyprint import HTML

    from nnopt.report.build import printable
    from nnopt.report.glyphs import covered_codepoints, pdf_placeholders

    html = (hostile_report / "r.html").read_text(encoding="utf-8")
    document = HTML(string=pdf_placeholders(printable(html))).render()  # as write_pdf lays it out
    for page in document.pages:
        right_edges = [box.position_x + box.margin_width()
                       for box in page._page_box.descendants()
                       if getattr(box, "text", None)]  # fmt: skip
        assert max(right_edges, default=0) <= page.width + 0.5  # nothing runs off the page
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(hostile_report / "r.pdf").pages)
    if ord("中") in covered_codepoints():
        assert "中" in text
    else:  # a visible placeholder, never an empty box
        assert "[U+4E2D]" in text and "[U+6587]" in text


def test_pdf_placeholders_keep_covered_text_and_mark_the_rest():
    from nnopt.report.glyphs import pdf_placeholders

    covered = frozenset(map(ord, "é"))
    assert pdf_placeholders("café 中 ok", covered) == "café [U+4E2D] ok"


def test_engine_schedule_refuses_a_warmup_longer_than_the_budget():
    import torch

    from nnopt.config.spec import ScheduleSpec, SpecError
    from nnopt.train.optim import build_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(SpecError, match=r"schedule.warmup_epochs: 5 \(50 steps\) is longer"):
        build_schedule(opt, ScheduleSpec(warmup_epochs=5), steps_per_epoch=10, total_steps=20)
    assert build_schedule(opt, ScheduleSpec(warmup_epochs=2), steps_per_epoch=10,
                          total_steps=20).warmup_steps == 20  # fmt: skip


def test_train_threads_option_is_bounded_like_device_threads(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY)
    code = cli.main(["train", "--spec", str(spec), "--out", str(tmp_path / "run"),
                     "--threads", "100000"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--threads: 100000 is above the limit 1024" in err
    assert "NNOPT_LIMITS=device.threads=100000" in err and not (tmp_path / "run").exists()


def _hold(state: Path, *digest: str) -> subprocess.Popen:
    """A live instance (its own process) that claimed `state`, with a plan digest if given."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), *digest],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "True"
    return holder


def test_a_second_instance_of_another_plan_is_refused_until_the_first_dies(tmp_path):
    """13 (second instance): another plan in a live folder gets one line and no lock; once
    the live instance is killed (the kernel drops its flock) the next one takes over."""
    from nnopt.plan.recovery import claim_working_dir, live_plan

    state = tmp_path / ".snakemake"
    holder = _hold(state, "a" * 64)
    try:
        (state / "locks").mkdir()
        (state / "locks" / "0.output.lock").write_text("results/x\n")  # the live one's
        with pytest.raises(SpecError) as info:
            claim_working_dir(state, "b" * 64, ["config/other.yaml"])
        message = str(info.value)
        assert "another snakemake instance runs in this folder with another plan" in message
        assert f"pid {holder.pid}" in message and "\n" not in message
        assert "allowed: wait until it ends" in message
        assert (state / "locks" / "0.output.lock").exists()  # nothing cleaned
        assert live_plan(state)["plan"] == "a" * 64  # nothing recorded
    finally:
        holder.kill()
        holder.wait()
    assert claim_working_dir(state, "b" * 64, ["config/other.yaml"]) == [str(state / "locks")]
    assert live_plan(state) == {"plan": "b" * 64, "configfiles": ["config/other.yaml"],
                                "pid": os.getpid()}  # fmt: skip


def test_a_second_instance_of_the_same_plan_joins_and_keeps_it(tmp_path):
    """The same plan twice at once is allowed (Snakemake's own lock decides about files);
    the joined instance keeps the plan held after the first one ends."""
    from nnopt.plan.recovery import claim_working_dir

    state = tmp_path / ".snakemake"
    holder = _hold(state, "a" * 64)
    try:
        assert claim_working_dir(state, "a" * 64) is None
    finally:
        holder.kill()
        holder.wait()
    once = HOLDER.replace("time.sleep(60)", "")
    third = subprocess.run([sys.executable, "-c", once, str(state), "c" * 64],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert third.stdout.startswith("refused:"), third.stdout + third.stderr


def test_a_live_folder_without_a_plan_record_refuses_a_plan(tmp_path):
    """A live instance whose record is missing or damaged: refuse rather than guess."""
    from nnopt.plan.recovery import PLAN_NAME, claim_working_dir

    state = tmp_path / ".snakemake"
    holder = _hold(state)  # claims without a digest: nothing recorded
    try:
        (state / PLAN_NAME).write_text("{not json")
        with pytest.raises(SpecError, match="with a plan it did not record"):
            claim_working_dir(state, "a" * 64)
    finally:
        holder.kill()
        holder.wait()


# --- the re-probe (issue 13, second round): each class a test ------------------------------

CLAIM = dict(id="c", text="t", study="act", metric="test_accuracy", kind="greater",
             left="relu", right="tanh")  # fmt: skip


@pytest.mark.parametrize("change, message", [
    ({"article": 5}, "claims.c.article: expected {value: number, ...}"),  # crashed the report
    ({"article": {"relu": float("nan")}}, "claims.c.article: expected finite numbers"),
    ({"kind": "ratio", "at_least": -1}, "claims.c.at_least: expected a positive number"),
    ({"metric": "test_acc"}, "claims.c.metric: unknown metric 'test_acc'; allowed: a metric"),
    ({"right": "relu"}, "claims.c.left/right: a configuration is named twice"),
    ({"kind": "ordering", "configs": ["relu", "relu"]}, "claims.c.configs: a configuration is"),
    ({"id": "a\x1bb"}, "claims[0].id: expected letters, digits, '-' or '_'"),
    ({"id": "a" * 5000}, "claims[0].id: expected letters, digits"),
])  # fmt: skip
def test_claim_values_that_broke_or_misled_the_report_are_refused(change, message):
    from nnopt.analysis.claims import parse_claims

    claim = {k: v for k, v in {**CLAIM, **change}.items() if v is not None}
    with pytest.raises(SpecError) as info:
        parse_claims({"claims": [claim]})
    assert message in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 400


def test_claims_margin_of_an_unknown_metric_is_refused():
    from nnopt.analysis.claims import parse_claims

    with pytest.raises(SpecError, match=r"margins.test_acc: unknown metric.*did you mean"):
        parse_claims({"margins": {"test_acc": 0.1}, "claims": [CLAIM]})


def test_claims_file_that_is_a_device_or_bad_value_fails_nnopt_check(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("defaults: {data: {name: blobs, n_samples: 120}}\nclaims: /dev/null\n"
                      "studies: [{name: act, grid: {model.activation: [relu, tanh]}}]\n")  # fmt: skip
    assert cli.main(["check", "--config", str(config)]) == 2
    assert "/dev/null: is not a regular file" in capsys.readouterr().err
    (tmp_path / "claims.yaml").write_text(f"claims: [{ {**CLAIM, 'article': 5} }]\n")
    config.write_text(config.read_text().replace("/dev/null", "claims.yaml"))
    assert cli.main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "claims.c.article: expected" in err and err.count("\n") == 1


def test_a_claim_naming_no_configuration_is_a_design_line(tmp_path):
    from nnopt.analysis.design import design_lines
    from nnopt.config.studies import parse_config

    config = parse_config({"defaults": {"data": {"name": "blobs", "n_samples": 120}},
                           "studies": [{"name": "act",
                                        "grid": {"model.activation": ["relu", "tanh"]}}]})  # fmt: skip
    claims = tmp_path / "claims.yaml"
    other = dict(CLAIM, id="d", study="elsewhere")  # another study: "not run", no line
    claims.write_text(f"claims: [{ {**CLAIM, 'left': 'gelu'} }, {other}]\n")
    lines = design_lines(config, claims)
    assert lines == ["design: claims: c: no configuration of act has model.activation=gelu"]


@pytest.mark.parametrize("output, message", [
    ("a\0b", "output: a path cannot hold a NUL byte"),  # was a ValueError traceback
    ("data.csv", "output: {root}/data.csv is a file; allowed: a folder path"),
    ("/dev/null", "output: /dev/null is not a folder (a device, socket or pipe)"),
])  # fmt: skip
def test_output_that_is_no_writable_folder_is_refused(tmp_path, output, message):
    (tmp_path / "data.csv").write_text("x,label\n1,0\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"output: {output!r}\nstudies: [{{name: a}}]\n".replace("'", '"')
                      .replace("\\x00", "\\0"))  # fmt: skip
    with pytest.raises(SpecError) as info:
        check.study_set([config])
    assert message.format(root=tmp_path) in str(info.value)
    assert str(info.value).startswith(f"{config}: ")


def test_output_in_a_read_only_folder_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    config = tmp_path / "config.yaml"
    config.write_text("output: locked/new\nstudies: [{name: a}]\n")
    try:
        with pytest.raises(SpecError, match=f"output: cannot write to {locked}"):
            check.study_set([config])
    finally:
        locked.chmod(0o755)


def test_train_out_keeps_a_users_file_beside_a_run_record(tmp_path, capsys):
    """13.2, second round: a metrics.json naming a run made the whole folder "a run" and
    replacing it deleted the user's files beside it."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.json").write_text('{"run_id": "x"}')
    (out / "thesis.tex").write_text("three years of work")
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {name: blobs, n_samples: 60}\nmodel: {kind: mlp, depth: 1, width: 4}\n"
                    "budget: {epochs: 1, batch_size: 32}\n")  # fmt: skip
    assert cli.main(["train", "--spec", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a folder that is not a run directory" in err and err.count("\n") == 1
    assert (out / "thesis.tex").read_text() == "three years of work"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "thesis.tex"]


PIPE_READER = """
import os, sys
from pathlib import Path
from nnopt.config.check_io import check_out_dir
from nnopt.config.spec import SpecError
from nnopt.store.runs import is_finished
folder = Path(sys.argv[1])
for name in ("metrics.json", "curve.parquet"):
    run = folder / name.split(".")[0]
    run.mkdir()
    if name == "curve.parquet":
        (run / "metrics.json").write_text('{"run_id": "r", "status": "ok", "curve_rows": 1}')
    os.mkfifo(run / name)
    print(is_finished(run, "r"))
try:
    check_out_dir(folder / "metrics")
except SpecError as err:
    print("refused:", err)
"""


def test_a_pipe_in_a_run_folder_never_blocks(tmp_path):
    """A FIFO named metrics.json or curve.parquet blocked `snakemake -n` (finished runs are
    read at parse time) and `nnopt train --out` forever: only regular files are read."""
    done = subprocess.run([sys.executable, "-c", PIPE_READER, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[:2] == ["False", "False"], done.stderr
    assert lines[2].startswith("refused: --out:") and "not a run directory" in lines[2]


def test_run_dir_files_are_what_a_run_writes(tmp_path):
    """check_io.RUN_DIR_FILES (config may not import store or train) names every file a run
    directory holds."""
    from nnopt.config.check_io import RUN_DIR_FILES
    from nnopt.train.strategy import SNAPSHOTS_NAME

    out = tmp_path / "r1"
    result = RunResult(status="ok", files={SNAPSHOTS_NAME: b"x"})
    write_run(out, result, run_id="r1", study="s", factors={}, spec={"seed": 0})
    assert {p.name for p in out.iterdir()} <= set(RUN_DIR_FILES)
    assert SNAPSHOTS_NAME in RUN_DIR_FILES


def test_the_depth_walk_only_runs_after_the_size_bound(tmp_path, monkeypatch):
    """Walking a 10**7-value alias bomb for its depth took 30-50 s before the size check
    refused it; the size check (bounded work) now comes first."""
    from nnopt.config import yaml_strict

    monkeypatch.setattr(yaml_strict, "_depth", lambda *a: pytest.fail("depth walked first"))
    bomb = ROOT / "tests" / "bad_inputs" / "config_alias_bomb_ten_million.yaml"
    with pytest.raises(SpecError, match="aliases expand to more than 100000 values"):
        yaml_strict.read_yaml(bomb)


PLAN_PIPES = """
import os, sys
from pathlib import Path
from nnopt.plan.recovery import live_plan
from nnopt.config.studies import parse_config
from nnopt.plan.workflow import read_todo, tried_by, write_plan
folder = Path(sys.argv[1])
config = parse_config({"studies": [{"name": "s"}]})
for name in ("b-0123456789.json", "b-0123456789.todo.json", "plan.json", "nnopt-main.plan"):
    os.mkfifo(folder / name)
print(tried_by(folder, {("s", "r")}), read_todo(folder, config), live_plan(folder))
print(write_plan(folder / "plan.json", {"runs": []}), (folder / "plan.json").is_file())
"""


def test_pipes_in_the_plan_folders_never_block_parsing(tmp_path):
    """A FIFO as a batch manifest, a batch record, the plan or the live-plan record made
    `snakemake -n` hang at parse time: only regular files are read; the plan replaces it."""
    done = subprocess.run([sys.executable, "-c", PLAN_PIPES, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout.splitlines() == ["{} {} None", "True True"], done.stderr


def test_a_plugin_that_calls_sys_exit_is_one_line_not_an_exit(tmp_path, capsys):
    """A model factory calling sys.exit(3) ended `nnopt check` with code 3 and no word."""
    (tmp_path / "models.py").write_text("import sys\ndef build(input_shape, n_classes):\n"
                                        "    sys.exit(3)\n")  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text("defaults: {data: {name: blobs, n_samples: 60}, "
                      "model: {kind: python, factory: 'models:build'}}\nstudies: [{name: a}]\n")
    assert cli.main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.factory: models:build" in err and "raised SystemExit: 3" in err
    assert err.count("\n") == 1


def test_a_pipe_or_device_as_data_file_is_named_as_such(tmp_path):
    from nnopt.config.spec import parse_spec

    os.mkfifo(tmp_path / "fifo.csv")
    spec = parse_spec({"data": {"name": "table", "path": str(tmp_path / "fifo.csv")}})
    with pytest.raises(SpecError, match="fifo.csv must be a .csv or .parquet file, not a device"):
        check.check_data(spec.data)


def test_the_config_wide_run_limit_counts_problems_and_is_overridable(monkeypatch):
    from nnopt.config.studies import parse_config

    raw = {"defaults": {"data": {"name": "blobs", "n_samples": 60}}, "seeds": 2,
           "problems": {"p": {}, "q": {}}, "studies": [{"name": "s", "problems": ["p", "q"]}]}
    assert len(parse_config(raw).runs) == 4
    monkeypatch.setenv("NNOPT_LIMITS", "config.runs=3")
    with pytest.raises(SpecError) as info:
        parse_config(raw)
    assert str(info.value) == (
        "studies: 2 studies expand to 4 runs in all; 4 is above the limit 3; allowed: at most 3 "
        "(if you truly mean it, set NNOPT_LIMITS=config.runs=4)"
    )
