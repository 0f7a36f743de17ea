"""Shared fixtures: a parsed small config, and a results folder as the workflow leaves it
(a plan file plus run folders written by the store's own writer), for the analysis, report
and CLI tests. Run folders come from tests/fixtures/make_runs.py (seeded numpy, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.make_runs import SMALL_CONFIG, make_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_config():
    from nnopt.config.studies import parse_config

    return parse_config(SMALL_CONFIG)


@pytest.fixture
def planned_results(tmp_path, small_config) -> Path:
    """tmp_path/results with plan.json and runs/{study}/{run_id}/ for every planned run."""
    from nnopt.plan.workflow import plan_document, write_plan

    results = tmp_path / "results"
    write_plan(results / "plan.json", plan_document(small_config, lambda data: data.name))
    make_runs(small_config, results / "runs")
    return results
