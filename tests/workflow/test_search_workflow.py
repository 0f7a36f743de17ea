"""A tuned study through real `snakemake`: rounds planned and trained by Snakemake (sobol
trials, successive halving, fresh confirmation seeds), trial runs with their phase and
`pruned` status in runs.parquet, comparisons on the confirmation runs, the report's search
section; a second run does nothing and `-n` changes no file."""

from __future__ import annotations

import polars as pl
import pytest

from test_workflow import copy_workflow, snakemake, write_config

TUNED = {
    "defaults": {
        "data": {"name": "blobs", "n_samples": 200},
        "model": {"kind": "mlp", "depth": 1, "width": 8},
        "budget": {"epochs": 2, "batch_size": 32},
        "evaluation": {"every_epochs": 1},
    },
    "seeds": 2,
    "studies": [{
        "name": "tuned", "title": "Tuned optimizers (test)",
        "grid": {"optimizer.name": ["sgd", "adam"]}, "metrics": ["test_accuracy"],
        "tune": {
            "params": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]}}, "trials": 4,
            "sampler": "sobol", "seeds": [0, 1], "confirm_seeds": 2,
            "asha": {"eta": 2, "min_epochs": 1, "max_epochs": 2},
        },
    }],
}  # fmt: skip
TARGET = "report"  # the rule of the whole HTML report (its PDF is printed by another)


def files(cwd) -> dict[str, tuple[int, int]]:
    """Every file the workflow wrote: path -> (size, mtime in ns)."""
    out = {}
    for folder in ("results", "reports", "logs"):
        for p in (cwd / folder).rglob("*"):
            if p.is_file():
                out[str(p.relative_to(cwd))] = (p.stat().st_size, p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    cwd = copy_workflow(tmp_path_factory.mktemp("tuned"))
    config = write_config(cwd, "tuned.yaml", TUNED)
    dry = snakemake(cwd, "-n", TARGET, "--configfile", config)
    assert dry.returncode == 0, dry.stderr[-3000:]
    written_by_dry_run = sorted(files(cwd))
    done = snakemake(cwd, "--cores", "2", TARGET, "--configfile", config, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, config, dry, written_by_dry_run


def test_dry_run_plans_the_rounds_and_writes_only_the_plan(tuned_run):
    _, _, dry, written = tuned_run
    assert ("nnopt: search tuned: sobol k=4 per configuration × 2 configurations, halving "
            "rungs [1, 2] epochs; trial runs planned 0; rounds done 0/3, left 3") in dry.stderr
    for rule, count in (("search_round", 3), ("search_train", 3), ("search_summary", 1)):
        assert any(line.split() == [rule, str(count)] for line in dry.stdout.splitlines())
    assert written == ["results/plan.json", "results/plan/tuned.json"]


def test_trials_pruned_and_confirmation_runs_are_in_runs_parquet(tuned_run):
    cwd = tuned_run[0]
    runs = pl.read_parquet(cwd / "results" / "runs.parquet")
    by_phase = {p: part for (p,), part in runs.group_by("phase")}
    assert set(by_phase) == {"default", "trial", "confirm"}
    trial = by_phase["trial"]
    # rung 0: 4 trials x 2 tuning seeds x 2 configurations; rung 1 keeps 4 // 2 = 2 each.
    assert trial.height == 16 + 8
    assert (trial["status"] == "pruned").sum() == 2 * 2 * 2  # 2 trials x 2 seeds x 2 configs
    assert set(trial["seed"]) == {0, 1}
    confirm = by_phase["confirm"]
    assert sorted(confirm["seed"]) == [2, 2, 3, 3]  # fresh seeds, disjoint from tuning seeds
    assert set(confirm["status"]) <= {"ok", "stalled"}
    assert set(runs["config"]) == {"optimizer.name=sgd", "optimizer.name=adam"}


def test_comparisons_and_claims_use_the_confirmation_runs(tuned_run):
    cwd = tuned_run[0]
    from nnopt.analysis.aggregate import compared_runs

    runs = pl.read_parquet(cwd / "results" / "runs.parquet")
    assert set(compared_runs(runs)["phase"]) == {"confirm"}
    summary = pl.read_parquet(cwd / "results" / "summary.parquet")
    assert set(summary["n"]) == {2}  # 2 confirmation seeds per configuration, no trials
    comparisons = pl.read_parquet(cwd / "results" / "comparisons.parquet")
    assert set(comparisons["n"]) == {2} and set(comparisons["n_base"]) == {2}


def test_report_has_the_search_section(tuned_run):
    cwd = tuned_run[0]
    html = (cwd / "reports" / "report.html").read_text(encoding="utf-8")
    for title in ("Tuning: best so far", "Tuning: expected best of k trials",
                  "Tuning: chosen values, tuned vs default"):  # fmt: skip
        assert title in html
    trials = pl.read_parquet(cwd / "results" / "search" / "tuned" / "trials.parquet")
    assert set(trials["phase"]) == {"trial", "confirm", "default"}


def test_second_run_does_nothing_and_dry_run_changes_no_file(tuned_run):
    cwd, config, _, _ = tuned_run
    before = files(cwd)
    dry = snakemake(cwd, "-n", TARGET, "--configfile", config)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "rounds done 3/3, left 0" in dry.stderr and "trial runs planned 24" in dry.stderr
    assert files(cwd) == before
    again = snakemake(cwd, "--cores", "2", TARGET, "--configfile", config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    assert files(cwd) == before
