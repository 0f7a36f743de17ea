"""The Snakemake workflow: lint and format clean, bad configs stopped before any job, and an
end-to-end smoke run that reruns nothing, retries only failed runs, retrains only the runs a
changed factor touches, and gives the same results on 1 and 2 cores.

Each test copies Snakefile, workflow/ and config/ into a temporary folder and runs there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def copy_workflow(dest: Path) -> Path:
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snakemake(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["snakemake", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def manifests(cwd: Path) -> dict[str, dict]:
    paths = (cwd / "results" / "batches").glob("*.json")
    return {p.stem: json.loads(p.read_text()) for p in paths if not p.name.endswith(".todo.json")}


def write_config(cwd: Path, name: str, raw: dict) -> str:
    (cwd / "config" / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return f"config/{name}"


# --- static checks --------------------------------------------------------------------------


def test_snakefmt_check_is_clean():
    done = subprocess.run(
        ["snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_lint_is_clean(tmp_path):
    done = snakemake(copy_workflow(tmp_path), "--lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations" in done.stdout + done.stderr


def test_dry_run_lists_every_study_with_its_runs(tmp_path):
    done = snakemake(copy_workflow(tmp_path), "-n", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    header = next(line for line in done.stderr.splitlines() if line.startswith("study "))
    assert header.split()[:5] == ["study", "configs", "seeds", "runs", "finished"]
    for study in smoke["studies"]:
        assert any(line.startswith(study["name"] + " ") for line in done.stderr.splitlines())
    assert "0 finished" in done.stderr and "train" in done.stdout
    assert not (tmp_path / "results" / "runs").exists()
    # The plan (and its per-study slices, the report sections' inputs) is the only thing a
    # dry run writes, so downstream steps have it to read.
    written = {p.relative_to(tmp_path / "results") for p in (tmp_path / "results").rglob("*")
               if p.is_file()}  # fmt: skip
    slices = {Path("plan") / f"{s['name']}.json" for s in smoke["studies"]}
    assert written == {Path("plan.json"), *slices}
    assert not (tmp_path / "logs").exists()


def test_default_profile_is_valid(tmp_path):
    done = snakemake(
        copy_workflow(tmp_path), "-n", "--workflow-profile", "workflow/profiles/default",
        "--configfile", "config/smoke.yaml",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Using workflow specific profile workflow/profiles/default" in done.stdout + done.stderr


# --- bad configs: one line naming the key, exit 1, nothing started --------------------------

BAD = [
    ({"studies": [{"name": "a", "grid": {"model.activation": ["relu", "swish"]}}]},
     "studies.a: model.activation: unknown value 'swish'; allowed: sigmoid"),
    ({"studies": [{"name": "a", "grdi": {"model.depth": [1]}}]},
     "studies.a.grdi: unknown key; allowed: name"),
    ({"max_runs_per_study": 0, "studies": [{"name": "a"}]}, "max_runs_per_study: expected an integer >= 1"),
    ({"max_runs_per_study": 3, "studies": [{"name": "a", "grid": {"model.depth": [1, 2]}, "seeds": 2}]},
     "studies.a: expands to 4 runs, more than max_runs_per_study (3)"),
    ({"studies": [{"name": "a", "metrics": ["accuracy"]}]},
     "studies.a.metrics: unknown metric 'accuracy'; allowed: a metric of docs/contract.md §2 (test_accuracy"),
    ({"studies": [{"name": "a", "zip": {"optimizer.lr": [0.1, 0.01], "model.depth": [1]}}]},
     "studies.a.zip: lists must have equal lengths"),
]  # fmt: skip


@pytest.mark.parametrize("raw, message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_config_stops_before_any_job_with_one_line(tmp_path, raw, message):
    cwd = copy_workflow(tmp_path)
    done = snakemake(cwd, "-n", "--configfile", write_config(cwd, "bad.yaml", raw))
    assert done.returncode == 1
    assert done.stderr.strip() == f"nnopt: config error: {message}" or (
        done.stderr.strip().startswith(f"nnopt: config error: {message}")
        and "\n" not in done.stderr.strip()
    ), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (cwd / "results").exists() and not (cwd / "logs").exists()


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    cwd = copy_workflow(tmp_path_factory.mktemp("smoke"))
    done = snakemake(cwd, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd


@pytest.mark.slow
def test_smoke_run_writes_every_output(smoke_run):
    cwd = smoke_run
    for path in ("reports/report.html", "reports/report.pdf", "results/runs.parquet",
                 "results/summary.parquet", "results/plan.json",
                 "results/landscape/activation/sharpness.parquet"):  # fmt: skip
        assert (cwd / path).stat().st_size > 0, path
    sharpness = pl.read_parquet(cwd / "results/landscape/activation/sharpness.parquet")
    assert sharpness.height == 2 and sharpness["reproduced"].all()  # sigmoid, relu: best seed
    assert "Loss landscape" in (cwd / "reports" / "report.html").read_text()
    batches = manifests(cwd)
    rows = [row for m in batches.values() for row in m["runs"]]
    assert all(row["trained"] and row["status"] in ("ok", "diverged") for row in rows)
    assert any(row["status"] == "diverged" for row in rows)  # learning_rate 1000
    for row in rows:
        assert (cwd / row["out"] / "metrics.json").exists()
        assert row["out"] == f"results/runs/{row['study']}/{row['run_id']}"
    assert {p.stem for p in (cwd / "logs" / "train").glob("*.log")} == set(batches)
    plan = json.loads((cwd / "results" / "plan.json").read_text())
    assert [s["name"] for s in plan["studies"]] == [
        s["name"] for s in yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["studies"]
    ]
    # 13.1: the tables hold exactly the runs that were trained (random samples included).
    runs = pl.read_parquet(cwd / "results" / "runs.parquet")
    assert set(runs["status"]) <= {"ok", "stalled", "diverged"}  # stalled: set by the aggregate
    trained = {(p.parent.name, p.name) for p in (cwd / "results" / "runs").glob("*/*")}
    assert set(zip(runs["study"], runs["run_id"])) == trained
    # 13.18: tables and run folders readable by group and others (the umask here is 022).
    for path in (cwd / "results" / "summary.parquet", cwd / rows[0]["out"] / "metrics.json"):
        assert path.stat().st_mode & 0o044 == 0o044, path


@pytest.mark.slow
def test_snakemake_report_carries_the_html_and_pdf_report(smoke_run, tmp_path):
    out = tmp_path / "snakemake-report.html"
    done = snakemake(smoke_run, "--report", str(out), "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "reports/report.pdf" in text and "reports/report.html" in text


@pytest.mark.slow
def test_rerun_does_nothing(smoke_run):
    done = snakemake(smoke_run, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr
    assert "removed leftover" not in done.stderr  # 13.16: nothing was interrupted
    dry = snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")
    assert "Params have changed" not in dry.stdout + dry.stderr  # 13.18


@pytest.mark.slow
def test_failed_run_is_retried_alone(smoke_run):
    cwd = smoke_run
    name, batch = sorted(manifests(cwd).items())[0]
    victim = batch["runs"][0]
    metrics = cwd / victim["out"] / "metrics.json"
    record = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**record, "status": "failed", "error": "simulated"}))
    before = manifests(cwd)
    stamps = {p: p.stat().st_mtime_ns for p in (cwd / "results").rglob("*") if p.is_file()}

    dry = snakemake(cwd, "-n", "--configfile", "config/smoke.yaml")  # 13.3: changes nothing
    assert dry.returncode == 0 and f"retrying 1 failed or damaged runs of study {victim['study']}" in dry.stderr
    assert {p: p.stat().st_mtime_ns for p in (cwd / "results").rglob("*") if p.is_file()} == stamps

    done = snakemake(cwd, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    new = {k: v for k, v in manifests(cwd).items() if k not in before}
    assert [r["run_id"] for m in new.values() for r in m["runs"] if r["trained"]] == [victim["run_id"]]
    assert json.loads(metrics.read_text())["status"] in ("ok", "diverged")
    assert {k: v for k, v in manifests(cwd).items() if k in before} == before  # nothing else
    again = snakemake(cwd, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_changing_one_factor_retrains_only_its_runs(smoke_run):
    cwd = smoke_run
    raw = yaml.safe_load((cwd / "config" / "smoke.yaml").read_text())
    study = next(s for s in raw["studies"] if s["name"] == "activation")
    study["grid"]["model.activation"] = ["sigmoid", "tanh"]  # relu -> tanh
    before = manifests(cwd)
    done = snakemake(cwd, "train_all", "--cores", "2", "--configfile", write_config(cwd, "changed.yaml", raw))
    assert done.returncode == 0, done.stderr[-3000:]
    new = {k: v for k, v in manifests(cwd).items() if k not in before}
    assert new and all(k.startswith("activation-") for k in new)
    trained = [r for m in new.values() for r in m["runs"] if r["trained"]]
    assert len(trained) == len(raw["seeds"] if isinstance(raw["seeds"], list) else range(raw["seeds"]))
    for row in trained:
        spec = json.loads((cwd / row["out"] / "metrics.json").read_text())["spec"]
        assert spec["model"]["activation"] == "tanh"


def test_changing_one_factor_rerenders_only_its_report_section(smoke_run):
    raw = yaml.safe_load((smoke_run / "config" / "smoke.yaml").read_text())
    study = next(s for s in raw["studies"] if s["name"] == "learning_rate")
    study["grid"]["optimizer.lr"] = [0.01, 100.0]
    done = snakemake(smoke_run, "-n", "--cores", "2", "--configfile",
                     write_config(smoke_run, "one_factor.yaml", raw))
    assert done.returncode == 0, done.stderr[-3000:]
    sections = set(re.findall(r"output: results/report/([^/.\s]+)\.html", done.stdout))
    assert "learning_rate" in sections
    # Studies without landscapes whose runs did not change keep their cached sections.
    assert not sections & {"regularization", "random_search", "precision"}, sections


@pytest.mark.slow
def test_one_and_two_cores_give_identical_results(smoke_run, tmp_path):
    cwd = copy_workflow(tmp_path)
    raw = yaml.safe_load((cwd / "config" / "smoke.yaml").read_text())
    raw["studies"] = [s for s in raw["studies"] if s["name"] in ("activation", "learning_rate")]
    subset = write_config(cwd, "subset.yaml", raw)  # the same runs, packed differently
    done = snakemake(cwd, "train_all", "--cores", "1", "--configfile", subset)
    assert done.returncode == 0, done.stderr[-3000:]

    def results(root: Path) -> dict:
        out = {}
        for path in (root / "results" / "runs").glob("*/*/metrics.json"):
            record = json.loads(path.read_text())
            m = record["metrics"]
            out[path.parent.name, record["study"]] = (record["status"], m["test_accuracy"], m["final_train_loss"])
        return out

    one, two = results(cwd), results(smoke_run)
    assert one and all(two[key] == value for key, value in one.items())


# --- the package's workflow logic (nnopt.plan.workflow, nnopt.store.plan_file): no Snakemake --

TINY_SET = {
    "defaults": {"data": {"name": "blobs", "n_samples": 60}, "budget": {"epochs": 1}},
    "seeds": 2,
    "studies": [
        {"name": "a", "grid": {"model.depth": [1, 2]}},
        {"name": "b", "grid": {"model.depth": [1]}},  # shares run ids with study a
        # params not in alphabetical order: a sorted-keys dump would sample other values
        {"name": "r", "random": {"n": 2, "seed": 0, "params": {
            "optimizer.lr": {"log_uniform": [1e-4, 1e-2]}, "model.dropout": {"uniform": [0, 0.5]}}}},
    ],
}  # fmt: skip


def _state(tmp_path, raw=TINY_SET, **kwargs):
    from nnopt.config.check import check_config
    from nnopt.plan.workflow import WorkflowState

    config = check_config(raw, devices=False)
    state = WorkflowState.build(config, tmp_path / "results", dataset_name=lambda d: d.name,
                                cores=2, cuda_present=False, **kwargs)  # fmt: skip
    return config, state


def _finish(tmp_path, study: str, run, *, rows: int = 2) -> Path:
    from nnopt.store.runs import RunResult, write_run

    result = RunResult(status="ok", curve=[{"step": i, "epoch": float(i)} for i in range(rows)])
    out = tmp_path / "results" / "runs" / study / run.run_id
    return write_run(out, result, run_id=run.run_id, study=study, factors={}, spec=run.spec.to_dict())


def test_plan_reads_back_the_same_runs_in_order(tmp_path):
    from nnopt.store.plan_file import Plan

    config, _ = _state(tmp_path)
    plan = Plan.load(tmp_path / "results" / "plan.json")
    again = plan.config()
    assert [(r.study, r.run_id, r.config) for r in again.runs] == [
        (r.study, r.run_id, r.config) for r in config.runs
    ]
    assert list(plan.raw_config["studies"][2]["random"]["params"]) == ["optimizer.lr", "model.dropout"]
    assert again.study("a").grid == config.study("a").grid
    # specs read back are hashable like parsed ones (batches key their datasets by spec.data)
    assert {r.spec.data for r in again.runs} == {r.spec.data for r in config.runs}
    assert [hash(r.spec) for r in again.runs] == [hash(r.spec) for r in config.runs]


def test_plan_is_rewritten_only_when_its_content_changes(tmp_path):
    from nnopt.plan.workflow import plan_document, write_plan

    config, _ = _state(tmp_path)
    path = tmp_path / "results" / "plan.json"
    stamp = path.stat().st_mtime_ns
    assert not write_plan(path, plan_document(config, lambda d: d.name))
    assert path.stat().st_mtime_ns == stamp
    changed = {**TINY_SET, "seeds": 3}
    _state(tmp_path, changed)
    assert path.stat().st_mtime_ns != stamp


def test_only_unfinished_runs_are_batched_and_twins_never_vouch(tmp_path):
    config, state = _state(tmp_path)
    assert sum(len(b.runs) for b in state.batches.values()) == len(config.runs)
    shared = config.study("b").runs[0]
    assert shared.run_id in {r.run_id for r in config.study("a").runs}
    _finish(tmp_path, "a", shared)  # finished in study a only
    _, state = _state(tmp_path)
    todo = {(b.study, i) for b in state.batches.values() for i in b.run_ids}
    assert ("a", shared.run_id) not in todo and ("b", shared.run_id) in todo
    for run in config.runs:
        _finish(tmp_path, run.study, run)
    _, state = _state(tmp_path)
    assert state.batches == {} and "0 to train" in state.table()


@pytest.mark.parametrize("damage", ["delete_curve", "truncate_metrics", "short_curve", "other_id", "failed"])
def test_a_damaged_run_folder_is_not_finished(tmp_path, damage):
    from nnopt.store.runs import is_finished, write_run, RunResult

    config, _ = _state(tmp_path)
    run = config.runs[0]
    out = _finish(tmp_path, run.study, run, rows=3)
    assert is_finished(out, run.run_id)
    metrics = out / "metrics.json"
    if damage == "delete_curve":
        (out / "curve.parquet").unlink()
    elif damage == "truncate_metrics":
        metrics.write_text(metrics.read_text()[:50])
    elif damage == "short_curve":
        pl.read_parquet(out / "curve.parquet").head(2).write_parquet(out / "curve.parquet")
    elif damage == "other_id":
        metrics.write_text(metrics.read_text().replace(run.run_id, "0" * 16))
    else:
        write_run(out, RunResult(status="failed"), run_id=run.run_id, study=run.study,
                  factors={}, spec=run.spec.to_dict())  # fmt: skip
    assert not is_finished(out, run.run_id)
    _, state = _state(tmp_path)
    assert any(run.run_id in b.run_ids and b.study == run.study for b in state.batches.values())


def test_a_retried_batch_gets_a_new_id_and_earlier_manifests_stay_inputs(tmp_path):
    from nnopt.store.atomic import write_json_atomic

    config, state = _state(tmp_path)
    first = dict(state.batches)
    _, again = _state(tmp_path)
    assert set(again.batches) == set(first)  # nothing tried yet: the same ids, run after run
    for batch_id, batch in first.items():  # every batch ran; one run failed
        write_json_atomic(tmp_path / "results" / "batches" / f"{batch_id}.json",
                          {"runs": [{"study": batch.study, "run_id": i} for i in batch.run_ids]})
    failed = config.runs[0]
    for run in config.runs[1:]:
        _finish(tmp_path, run.study, run)
    _, retry = _state(tmp_path)
    (new_id, batch), = retry.batches.items()
    assert new_id not in first and batch.run_ids == (failed.run_id,)
    assert retry.retry_lines() == [f"retrying 1 failed or damaged runs of study {failed.study} in batch {new_id}"]
    manifests = [Path(p).stem for p in retry.manifests()]
    assert set(manifests) == set(first) | {new_id}  # the aggregate's inputs only grow
    _finish(tmp_path, failed.study, failed)
    write_json_atomic(tmp_path / "results" / "batches" / f"{new_id}.json",
                      {"runs": [{"study": failed.study, "run_id": failed.run_id}]})
    _, done = _state(tmp_path)
    assert done.batches == {} and done.manifests() == retry.manifests()


def test_remote_jobs_read_the_batches_the_main_process_recorded(tmp_path):
    _, state = _state(tmp_path)
    state.write_todo()
    (tmp_path / "results" / "runs").mkdir(parents=True, exist_ok=True)
    _, remote = _state(tmp_path, main_process=False)
    assert {k: v.run_ids for k, v in remote.batches.items()} == {
        k: v.run_ids for k, v in state.batches.items()
    }
    some = next(iter(state.batches))
    assert remote.batch_resources(some) == state.batch_resources(some)


def test_reports_read_the_plan_after_the_data_file_moved(tmp_path):
    from nnopt.analysis.aggregate import read_config

    table = tmp_path / "table.csv"
    table.write_text("x1,x2,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60)))
    raw = {"defaults": {"data": {"name": "table", "path": str(table)}, "budget": {"epochs": 1}},
           "studies": [{"name": "t", "grid": {"model.depth": [1]}}]}  # fmt: skip
    config, _ = _state(tmp_path, raw)
    table.rename(tmp_path / "moved.csv")
    again = read_config(tmp_path / "results" / "plan.json")
    assert [r.run_id for r in again.runs] == [r.run_id for r in config.runs]


def test_run_ids_follow_the_data_file_content(tmp_path):
    from nnopt.config.fingerprint import verify_fingerprint
    from nnopt.config.spec import SpecError, parse_spec

    table = tmp_path / "table.csv"
    table.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    raw = {"data": {"name": "table", "path": str(table)}}
    before = parse_spec(raw)
    assert before.data.fingerprint.startswith("sha256:")
    assert parse_spec(before.to_dict()).run_id == before.run_id  # a planned spec keeps its id
    table.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(30)))
    assert parse_spec(raw).run_id != before.run_id
    with pytest.raises(SpecError, match="changed since this run was planned"):
        verify_fingerprint("table", str(table), before.data.fingerprint)


def test_a_config_inherits_the_shipped_one_only_when_it_says_so(tmp_path, monkeypatch):
    from nnopt.config.check import merged_config
    from nnopt.config.spec import SpecError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("seeds: 5\nstudies: [{name: shipped}]\n")
    own = tmp_path / "own.yaml"
    own.write_text("studies: [{name: mine}]\n")
    shipped = "config/config.yaml"
    assert merged_config([shipped, own]) == {"studies": [{"name": "mine"}]}
    own.write_text("inherit: shipped\nstudies: [{name: mine}]\n")
    assert merged_config([own, shipped]) == {"seeds": 5, "studies": [{"name": "mine"}]}
    assert merged_config([shipped]) == {"seeds": 5, "studies": [{"name": "shipped"}]}
    own.write_text("inherit: everything\n")
    with pytest.raises(SpecError, match="inherit: 'everything' is not allowed; allowed: shipped"):
        merged_config([shipped, own])


def test_aggregate_verb_reads_the_plan(planned_results, small_config):
    from nnopt.cli.main import main

    rc = main(["aggregate", "--plan", str(planned_results / "plan.json"),
               "--runs", str(planned_results / "runs"), "--out", str(planned_results)])  # fmt: skip
    assert rc == 0
    runs = pl.read_parquet(planned_results / "runs.parquet")
    assert list(zip(runs["study"], runs["run_id"])) == [(r.study, r.run_id) for r in small_config.runs]
    assert set(runs["status"]) == {"ok"}
    curves = pl.read_parquet(planned_results / "curves.parquet")
    assert curves.height == 10 * runs.height  # every finished run's curve, none lost
