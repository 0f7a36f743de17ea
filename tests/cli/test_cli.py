"""The CLI, the runner and the run directory (atomic writes, finished/failed records)."""

import json
import subprocess
import sys

import polars as pl
import pytest

from nnopt.store import runs as results
from nnopt.cli.main import VERBS, main
from nnopt.store.runs import RunResult, is_finished, read_curve, read_run, write_run
from nnopt.train.runner import run_batch, run_one
from nnopt.config.spec import parse_spec

TINY = {"data": {"name": "blobs", "n_samples": 120}, "model": {"width": 8},
        "budget": {"epochs": 2, "batch_size": 32}}


def _write_yaml(path, text):
    path.write_text(text)
    return str(path)


def test_help_is_readable():
    out = subprocess.run([sys.executable, "-m", "nnopt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for verb in ("train", "train-batch", "prepare-data"):
        assert verb in out.stdout
    assert {"train", "train-batch", "prepare-data"} <= set(VERBS)


def test_train_writes_run_directory(tmp_path, capsys):
    spec_file = _write_yaml(tmp_path / "run.yaml", json.dumps(TINY))
    out = tmp_path / "runs" / "one"
    assert main(["train", "--spec", spec_file, "--out", str(out), "--study", "demo"]) == 0
    record = read_run(out)
    spec = parse_spec(TINY)
    assert record["run_id"] == spec.run_id and record["study"] == "demo"
    assert record["status"] == "ok" and record["spec"] == spec.to_dict()
    assert set(record["metrics"]) == set(results.METRIC_NAMES)
    assert record["provenance"]["torch"] and record["provenance"]["threads"] == 1
    curve = read_curve(out)
    assert curve.schema["step"] == pl.Int64 and curve.schema["layer_grad_norms"] == pl.List(pl.Float64)
    assert curve.height == 3 and curve["step"].to_list()[0] == 0
    assert spec.run_id in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["one"]  # no temp or checkpoint left


def test_bad_spec_exits_2_without_traceback(tmp_path, capsys):
    spec_file = _write_yaml(tmp_path / "bad.yaml", "optimizer: {name: adamm}\n")
    assert main(["train", "--spec", spec_file, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "optimizer.name: unknown value 'adamm'" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_train_batch_survives_a_failure(tmp_path, capsys):
    bad_table = tmp_path / "bad.csv"
    bad_table.write_text("a,label\nx,0\ny,1\n" * 20)  # non-numeric feature: fails at load
    runs = [
        {"study": "s", "factors": {"seed": 0}, "spec": TINY, "out": str(tmp_path / "r" / "a")},
        {"study": "s", "factors": {}, "spec": {"data": {"name": "table", "path": str(bad_table)}},
         "out": str(tmp_path / "r" / "b")},
        {"study": "s", "factors": {"seed": 1}, "spec": {**TINY, "seed": 1}, "out": str(tmp_path / "r" / "c")},
    ]
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    manifest = tmp_path / "manifest.json"
    args = ["train-batch", "--runs", str(tmp_path / "runs.json"), "--manifest", str(manifest), "--threads", "1"]
    assert main(args) == 0
    rows = json.loads(manifest.read_text())["runs"]  # the workflow's manifest format
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert all(r["trained"] for r in rows)
    failed = read_run(tmp_path / "r" / "b")
    assert "column 'a' is String, not numeric" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["metrics"]["test_accuracy"] is None
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # one log line per run
    # a second pass skips the finished runs and retries the failed one
    assert main(args) == 0
    assert [r["trained"] for r in json.loads(manifest.read_text())["runs"]] == [False, True, False]


def test_run_batch_skips_finished(tmp_path):
    spec = parse_spec(TINY)
    item = {"study": "s", "factors": {}, "spec": spec, "out": tmp_path / "a"}
    first = run_batch([item])
    again = run_batch([item])
    assert first[0]["trained"] and not again[0]["trained"]
    assert again[0] == {**first[0], "trained": False}


def test_is_finished_rules(tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "run"
    assert not is_finished(out, spec.run_id)
    for status, finished in (("failed", False), ("diverged", True), ("ok", True)):
        write_run(out, RunResult(status=status), run_id=spec.run_id, study="s", factors={}, spec=spec.to_dict())
        assert is_finished(out, spec.run_id) is finished
    assert not is_finished(out, "0" * 16)  # another run's id
    (out / "metrics.json").write_text("{truncated")
    assert not is_finished(out, spec.run_id)


def test_write_is_atomic(tmp_path, monkeypatch):
    spec = parse_spec(TINY)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_run(tmp_path / "run", RunResult(status="ok"), run_id=spec.run_id, study="s",
                  factors={}, spec=spec.to_dict())
    assert list(tmp_path.iterdir()) == []  # neither the run nor a temp directory


def test_non_finite_numbers_become_null(tmp_path):
    spec = parse_spec(TINY)
    result = RunResult(status="diverged", diverged_at_step=5)
    result.metrics["final_train_loss"] = float("nan")
    write_run(tmp_path / "run", result, run_id=spec.run_id, study="s", factors={}, spec=spec.to_dict())
    record = read_run(tmp_path / "run")
    assert record["metrics"]["final_train_loss"] is None and record["diverged_at_step"] == 5


def test_run_one_force_retrains(tmp_path):
    spec = parse_spec(TINY)
    assert run_one(spec, tmp_path / "a") == "ok"
    stamp = lambda: (tmp_path / "a" / "metrics.json").stat().st_ino  # noqa: E731  new dir, new inode
    before = stamp()
    assert run_one(spec, tmp_path / "a") == "ok"  # skipped
    assert stamp() == before
    assert run_one(spec, tmp_path / "a", force=True) == "ok"
    assert stamp() != before


def test_prepare_data(tmp_path, capsys):
    spec_file = _write_yaml(tmp_path / "run.yaml", json.dumps(TINY))
    assert main(["prepare-data", "--spec", spec_file, "--cache", str(tmp_path / "cache")]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith(".npz") and (tmp_path / "cache").exists()


def test_progress_line():
    import io

    from nnopt.train.runner import progress_printer

    stream = io.StringIO()
    show = progress_printer(stream, "s/abc")
    show({"step": 5, "total_steps": 10, "epoch": 0.5, "train_loss": 1.25, "val_accuracy": 0.5})
    text = stream.getvalue()
    assert text.startswith("\rs/abc  step 5/10  epoch 0.50  train loss 1.2500  val acc 0.500")


def test_batch_runs_are_independent_of_their_neighbours(tmp_path):
    """A run trained after another in the same process equals the run trained alone."""
    a, b = parse_spec({**TINY, "seed": 4, "model": {"width": 8, "dropout": 0.3}}), parse_spec(TINY)
    run_batch([{"study": "s", "spec": a, "out": tmp_path / "a"},
               {"study": "s", "spec": b, "out": tmp_path / "b"}])
    run_batch([{"study": "s", "spec": b, "out": tmp_path / "b_alone"}])
    timing = {"train_time_s", "eval_time_s", "wall_time_s", "samples_per_s", "peak_rss_mb"}
    metrics = [{k: v for k, v in read_run(tmp_path / d)["metrics"].items() if k not in timing}
               for d in ("b", "b_alone")]
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_packed_runs_equal_runs_trained_one_per_process(tmp_path):
    """Speed must not change results: three runs trained one after another in one process
    (`train-batch`, as a Snakemake job does) equal the same runs each in its own process."""
    import yaml

    specs = [{**TINY, "seed": s, "optimizer": {"name": name}, "model": {"width": 8, "dropout": d}}
             for s, name, d in ((0, "adam", 0.0), (1, "momentum", 0.3), (2, "rmsprop", 0.0))]
    items = [{"study": "s", "spec": spec, "out": str(tmp_path / "packed" / str(i))}
             for i, spec in enumerate(specs)]
    (tmp_path / "runs.json").write_text(json.dumps(items))
    nnopt = [sys.executable, "-m", "nnopt"]
    subprocess.run([*nnopt, "train-batch", "--runs", str(tmp_path / "runs.json"),
                    "--manifest", str(tmp_path / "manifest.json"), "--threads", "1"],
                   check=True, capture_output=True)
    for i, spec in enumerate(specs):
        path = tmp_path / f"spec{i}.yaml"
        path.write_text(yaml.safe_dump(spec))
        subprocess.run([*nnopt, "train", "--spec", str(path), "--out", str(tmp_path / "alone" / str(i))],
                       check=True, capture_output=True)
    timing = {"train_time_s", "eval_time_s", "wall_time_s", "samples_per_s", "peak_rss_mb",
              "time_to_target_s", "time_to_target_loss_s"}
    for i in range(len(specs)):
        packed, alone = (read_run(tmp_path / kind / str(i)) for kind in ("packed", "alone"))
        assert packed["run_id"] == alone["run_id"] and packed["status"] == "ok"
        assert ({k: v for k, v in packed["metrics"].items() if k not in timing}
                == {k: v for k, v in alone["metrics"].items() if k not in timing})
        strip = ["train_time_s"]
        assert (read_curve(tmp_path / "packed" / str(i)).drop(strip).equals(
                read_curve(tmp_path / "alone" / str(i)).drop(strip)))


def test_every_verb_of_the_verb_modules_is_dispatched():
    """Each run_<verb> a cli verb module exports is the run of a verb in VERBS (a function
    left behind by a move or a merge fails here), and each VERBS pair comes from them."""
    from nnopt.cli import results_verbs, run_verbs, search_verbs, store_verbs, study_verbs

    modules = (results_verbs, run_verbs, search_verbs, store_verbs, study_verbs)
    exported = {getattr(m, n) for m in modules for n in m.__all__ if n.startswith("run_")}
    dispatched = {run for _, _, run in VERBS.values()}
    assert exported == dispatched
    assert all(add_args.__module__ in {m.__name__ for m in modules} for _, add_args, _ in VERBS.values())


def test_no_verb_imports_torch_or_polars_to_parse_its_arguments():
    """`nnopt VERB --help` stays instant: torch and polars are imported only by the run_*
    functions that need them (one process asks every verb for its help)."""
    probe = (
        "import sys\nfrom nnopt.cli.main import VERBS, main\n"
        "for verb in VERBS:\n"
        "    try:\n        main([verb, '--help'])\n    except SystemExit as exit:\n"
        "        assert exit.code == 0, verb\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'polars')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
