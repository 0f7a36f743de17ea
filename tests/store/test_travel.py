"""Results that travel: two hosts' trees merge to the union; a bundle with its manifest."""

import hashlib
import json
import tarfile

from nnopt.cli.main import main
from nnopt.store.runs import RunResult, read_run, write_run
from nnopt.store.travel import merge_results


def _run(results, study, run_id, host, accuracy=0.9, status="ok", wall_s=1.0):
    result = RunResult(status=status)
    result.metrics.update(test_accuracy=accuracy, wall_time_s=wall_s)
    result.provenance = {"hostname": host}
    write_run(results / "runs" / study / run_id, result, run_id=run_id, study=study,
              factors={}, spec={})


def _tree(results):
    return sorted(str(p.relative_to(results)) for p in (results / "runs").glob("*/*"))


def test_two_hosts_merge_to_the_union(tmp_path, capsys):
    a, b, dst = tmp_path / "host_a", tmp_path / "host_b", tmp_path / "merged"
    for run_id in ("r1", "r2"):
        _run(a, "s", run_id, "a")
    _run(b, "s", "r2", "b", wall_s=7.0)  # the same run, timed on another machine
    _run(b, "s", "r3", "b")
    _run(b, "t", "r4", "b", status="failed")
    _run(a, "t", "r4", "a")  # a finished copy of b's failed run
    assert main(["merge", str(a), str(b), "--into", str(dst)]) == 0
    assert _tree(dst) == ["runs/s/r1", "runs/s/r2", "runs/s/r3", "runs/t/r4"]
    assert read_run(dst / "runs/s/r2")["provenance"]["hostname"] == "a"  # first one kept
    assert read_run(dst / "runs/s/r3")["provenance"]["hostname"] == "b"
    assert read_run(dst / "runs/t/r4")["status"] == "ok"
    assert "4 copied" in capsys.readouterr().out
    # merging again changes nothing: every one of the 6 source folders is a duplicate now
    again = merge_results([a, b], dst)
    assert not again.copied and not again.conflicts and len(again.identical) == 6


def test_failed_record_is_replaced_by_a_finished_one(tmp_path):
    a, b, dst = tmp_path / "a", tmp_path / "b", tmp_path / "dst"
    _run(a, "s", "r1", "a", status="failed")
    _run(b, "s", "r1", "b")
    report = merge_results([a, b], dst)
    assert report.copied == ["s/r1"] and report.replaced_failed == ["s/r1"]
    assert read_run(dst / "runs/s/r1")["provenance"]["hostname"] == "b"


def test_conflicting_duplicate_is_reported_not_overwritten(tmp_path, capsys):
    a, b, dst = tmp_path / "a", tmp_path / "b", tmp_path / "dst"
    _run(a, "s", "r1", "a", accuracy=0.9)
    _run(b, "s", "r1", "b", accuracy=0.5)
    assert main(["merge", str(a), str(b), "--into", str(dst)]) == 1
    err = capsys.readouterr().err
    assert "conflict: s/r1:" in err and "test_accuracy" in err and "wall_time_s" not in err
    assert read_run(dst / "runs/s/r1")["metrics"]["test_accuracy"] == 0.9


def test_archive_bundles_config_tables_report_and_manifest(tmp_path, capsys):
    results, reports = tmp_path / "results", tmp_path / "reports"
    _run(results, "s", "r1", "a")
    (results / "runs.parquet").write_bytes(b"PAR1 fake table")
    (results / "config.json").write_text(json.dumps({"studies": []}))
    reports.mkdir()
    (reports / "report.html").write_text("<html></html>")
    config = tmp_path / "study.yaml"
    config.write_text("studies: []\n")
    out = tmp_path / "bundle.tar.gz"
    assert main(["archive", "--out", str(out), "--config", str(config), "--results",
                 str(results), "--reports", str(reports), "--runs"]) == 0
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = tar.extractfile("MANIFEST.sha256").read().decode().splitlines()
        for line in manifest:
            digest, name = line.split("  ")
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == digest
    assert {"config/study.yaml", "results/runs.parquet", "results/config.json",
            "reports/report.html", "results/runs/s/r1/metrics.json"} <= names
    assert len(manifest) == len(names) - 1  # every file but the manifest itself


def test_the_report_of_a_merge_equals_the_report_of_one_tree_with_all_runs(planned_results, tmp_path):
    """16.6: two hosts' overlapping trees merged give the very report one tree holding every
    run gives (the same bytes, the render time aside)."""
    import re
    import shutil

    runs = sorted((planned_results / "runs").glob("*/*"))
    third = len(runs) // 3
    hosts = {"a": runs[: 2 * third], "b": runs[third:]}  # the middle third is on both
    for host, own in hosts.items():
        for run in own:
            shutil.copytree(run, tmp_path / host / "runs" / run.parent.name / run.name)
    merged = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--into", str(merged)]) == 0
    assert _tree(merged) == _tree(planned_results)
    shutil.copy(planned_results / "plan.json", merged / "plan.json")

    def report(results):
        plan = str(results / "plan.json")
        assert main(["aggregate", "--plan", plan, "--runs", str(results / "runs"),
                     "--out", str(results)]) == 0  # fmt: skip
        html = results / "report.html"
        assert main(["report", "--plan", plan, "--results", str(results), "--html", str(html)]) == 0
        return re.sub(r"rendered \d{4}-\d\d-\d\d \d\d:\d\d UTC", "rendered T", html.read_text())

    whole = report(planned_results)
    assert 'id="claims"' not in whole  # no claims file given: no claims section
    assert report(merged) == whole
