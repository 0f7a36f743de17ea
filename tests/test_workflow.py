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

ROOT = Path(__file__).resolve().parents[1]


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
    return {p.stem: json.loads(p.read_text()) for p in (cwd / "results" / "batches").glob("*.json")}


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
    ({"seeds": 0, "studies": [{"name": "a"}]}, "seeds: 0 is not valid; expected a number of seeds"),
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
                 "results/summary.parquet", "results/config.json",
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
    resolved = json.loads((cwd / "results" / "config.json").read_text())
    assert [s["name"] for s in resolved["studies"]] == [
        s["name"] for s in yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["studies"]
    ]


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


@pytest.mark.slow
def test_failed_run_is_retried_alone(smoke_run):
    cwd = smoke_run
    name, batch = sorted(manifests(cwd).items())[0]
    victim = batch["runs"][0]
    metrics = cwd / victim["out"] / "metrics.json"
    record = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**record, "status": "failed", "error": "simulated"}))
    batch["runs"][0]["status"] = "failed"
    (cwd / "results" / "batches" / f"{name}.json").write_text(json.dumps(batch))
    others = {p: p.stat().st_mtime_ns for p in (cwd / "results" / "batches").glob("*.json") if p.stem != name}

    done = snakemake(cwd, "train_all", "--cores", "2", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"retrying 1 failed runs of batch {name}" in done.stderr
    rows = manifests(cwd)[name]["runs"]
    assert [r["run_id"] for r in rows if r["trained"]] == [victim["run_id"]]
    assert all(r["status"] in ("ok", "diverged") for r in rows)
    assert {p: p.stat().st_mtime_ns for p in others} == others


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
