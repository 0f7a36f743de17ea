"""A study set of one's own (issue 16.2): its own title, claims file or none, output folder;
paths resolved against the config file; `nnopt init`; and the end-to-end acceptance run with
real `snakemake` (a residual-MLP plug-in and a custom loader beside the config)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nnopt.cli.main import main
from nnopt.config.check import file_root, merged_config, study_set
from nnopt.config.spec import SpecError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "config.yaml"
TINY = "defaults: {data: {name: blobs, n_samples: 120}, budget: {epochs: 1}}\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- where a study set's paths point ------------------------------------------------------


def test_a_config_of_its_own_writes_beside_itself_and_has_no_claims(tmp_path):
    own = _write(tmp_path / "mine" / "config.yaml", TINY + "studies: [{name: s}]\n")
    found = study_set([SHIPPED, own], shipped=SHIPPED, devices=False)
    assert found.root == found.output == own.parent.resolve()
    assert found.claims is None
    assert [s.name for s in found.config.studies] == ["s"]


def test_the_shipped_config_writes_to_the_repository_root_with_its_claims():
    found = study_set([SHIPPED], shipped=SHIPPED, devices=False)
    assert found.root == found.output == ROOT
    assert found.claims == ROOT / "config" / "claims.yaml"
    assert file_root(ROOT / "config" / "smoke.yaml", SHIPPED) == ROOT  # files of config/


def test_claims_and_output_resolve_against_the_file_that_sets_them(tmp_path):
    _write(tmp_path / "mine" / "claims.yaml", "claims: []\n")
    own = _write(tmp_path / "mine" / "config.yaml",
                 TINY + "claims: claims.yaml\noutput: ../out\nstudies: [{name: s}]\n")  # fmt: skip
    raw = merged_config([own], shipped=SHIPPED)
    assert raw["claims"] == str(tmp_path / "mine" / "claims.yaml")
    assert raw["output"] == str(tmp_path / "out")
    found = study_set([own], shipped=SHIPPED, devices=False)
    assert found.output == tmp_path / "out" and found.root == tmp_path / "mine"
    # inheriting the shipped config inherits its claims (resolved against the repository)
    inherits = _write(tmp_path / "other" / "c.yaml", "inherit: shipped\n" + TINY
                      + "studies: [{name: s}]\n")  # fmt: skip
    assert merged_config([inherits], shipped=SHIPPED)["claims"] == str(SHIPPED.parent / "claims.yaml")
    assert study_set([inherits], shipped=SHIPPED, devices=False).output == tmp_path / "other"


def test_a_data_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    _write(folder / "t.csv", "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(60)))
    own = _write(folder / "config.yaml", "defaults: {data: {name: table, path: t.csv}, "
                 "budget: {epochs: 1}}\nstudies: [{name: s}]\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)  # not the config's folder
    found = study_set([own], shipped=SHIPPED, devices=False)
    assert found.config.runs[0].spec.data.path == "t.csv"
    assert found.config.runs[0].spec.data.fingerprint.startswith("sha256:")
    own.write_text(own.read_text() + "output: elsewhere\n")
    with pytest.raises(SpecError, match=r"config.yaml: studies.s: data.path: 't.csv' is relative"):
        study_set([own], shipped=SHIPPED, devices=False, name_file=True)


@pytest.mark.parametrize("value", ["", 3, ["a"]])
def test_a_bad_claims_or_output_value_is_one_line_naming_the_key(tmp_path, value):
    for key in ("claims", "output"):
        own = _write(tmp_path / "c.yaml", TINY + f"{key}: {value!r}\nstudies: [{{name: s}}]\n")
        with pytest.raises(SpecError, match=rf"c.yaml: {key}: expected a"):
            merged_config([own], shipped=SHIPPED)


def test_a_planned_spec_with_plugin_kwargs_stays_hashable(tmp_path):
    """The plan's specs come back with Kwargs (the run that found it: a python loader's
    kwargs made `spec.data` an unhashable dict in the training job)."""
    from nnopt.store.plan_file import spec_from_canonical

    _write(tmp_path / "mydata.py", "def load(n=40):\n    return [[i] for i in range(n)], "
           "[i % 2 for i in range(n)]\n")  # fmt: skip
    own = _write(tmp_path / "c.yaml", "defaults: {data: {name: python, loader: 'mydata:load', "
                 "kwargs: {n: 40}}, budget: {epochs: 1}}\nstudies: [{name: s}]\n")  # fmt: skip
    spec = study_set([own], shipped=SHIPPED, devices=False).config.runs[0].spec
    again = spec_from_canonical(spec.to_dict())
    assert hash(again.data) == hash(spec.data) and again.run_id == spec.run_id


# --- nnopt init ---------------------------------------------------------------------------


def test_init_writes_a_study_folder_that_checks_and_refuses_a_non_empty_one(tmp_path, capsys):
    folder = tmp_path / "study"
    assert main(["init", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.yaml", "data.py",
                                                         "models.py"]  # fmt: skip
    assert "snakemake --cores all --configfile" in (folder / "README.md").read_text()
    capsys.readouterr()
    assert main(["check", "--config", str(folder / "config.yaml")]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {folder / 'config.yaml'}: 1 studies, 6 runs")
    assert main(["init", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty; allowed: a new or empty folder" in err
    (tmp_path / "file").write_text("x")
    assert main(["init", str(tmp_path / "file")]) == 2


# --- acceptance: a study set of one's own, end to end with real snakemake ------------------

ACCEPTANCE = """\
title: "Residual MLP, two optimizers"
defaults:
  data: {name: python, loader: "data:two_moons", kwargs: {n: 200}}
  budget: {epochs: 2, batch_size: 32}
seeds: 1
studies:
  - name: optimizers
    base: {model: {kind: python, factory: "models:residual_mlp", kwargs: {width: 8, blocks: 1}}}
    grid: {optimizer.name: [momentum, adam]}
    metrics: [test_accuracy, final_train_loss]
  - name: builtin
    base: {model: {kind: mlp, depth: 1, width: 8}}
"""


def _snakemake(repo: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "--cores", "2", "--configfile", str(config)],
                          cwd=repo, capture_output=True, text=True, timeout=600)  # fmt: skip


def _run_dirs(folder: Path) -> dict[str, int]:
    """study/run_id -> metrics.json mtime of every finished run."""
    return {f"{p.parent.parent.name}/{p.parent.name}": p.stat().st_mtime_ns
            for p in (folder / "results" / "runs").glob("*/*/metrics.json")}  # fmt: skip


@pytest.mark.slow
def test_own_study_set_runs_to_its_own_report_and_reruns_an_edited_model(tmp_path):
    repo = tmp_path / "repo"  # a copy of the workflow; the study lives elsewhere
    repo.mkdir()
    shutil.copy(ROOT / "Snakefile", repo / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    study = tmp_path / "study"
    assert main(["init", str(study)]) == 0  # its models.py and data.py, our small config
    config = _write(study / "config.yaml", ACCEPTANCE)

    first = _snakemake(repo, config)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not any((repo / d).exists() for d in ("results", "reports", "logs"))
    html = (study / "reports" / "report.html").read_text()
    assert '<h1 class="doc-title">Residual MLP, two optimizers</h1>' in html
    assert 'id="claims"' not in html and "not run" not in html and "claims:" not in html
    assert (study / "reports" / "report.pdf").stat().st_size > 0
    before = _run_dirs(study)
    assert sorted(k.split("/")[0] for k in before) == ["builtin", "optimizers", "optimizers"]

    models = study / "models.py"
    models.write_text(models.read_text() + "\n# edited: a new line changes the source hash\n")
    again = _snakemake(repo, config)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _run_dirs(study)
    new = sorted(set(after) - set(before))
    assert [k.split("/")[0] for k in new] == ["optimizers", "optimizers"]  # exactly those
    builtin = [k for k in before if k.startswith("builtin/")]
    assert {k: after[k] for k in builtin} == {k: before[k] for k in builtin}  # not retrained
