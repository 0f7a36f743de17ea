"""The bad-input corpus (tests/bad_inputs): every case gives one clear line, no traceback.

Each corpus file starts with `# expect: <substring>`; `config_*` files are study configs and
`spec_*` files are run specs. Data paths inside them are relative to the repository root.
The cases run three ways: in-process through `nnopt.config.check` (all of them), through the
`nnopt check` command line (all, in-process), and through `snakemake -n` / `nnopt train`
(a handful each, in tests/workflow/test_reliability.py and below, marked slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nnopt import cli
from nnopt.config import check
from nnopt.config.spec import SpecError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "bad_inputs"
CASES = sorted(CORPUS.glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


def checker(path: Path):
    return check.check_config_file if path.name.startswith("config_") else check.check_spec_file


@pytest.fixture(autouse=True)
def _at_root(monkeypatch, request):
    monkeypatch.chdir(ROOT)  # corpus data paths are relative to the repository root
    path = getattr(request.node, "callspec", None) and request.node.callspec.params.get("path")
    if path is not None and "torchvision_not_installed" in path.name:
        import importlib.util

        if importlib.util.find_spec("torchvision") is not None:
            pytest.skip("torchvision is installed here")


def test_corpus_is_large_and_well_formed():
    assert len(CASES) >= 40
    assert {p.name.split("_")[0] for p in CASES} == {"config", "spec"}
    for path in CASES:
        assert expected(path).strip(), path.name


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_check_refuses_with_one_clear_line(path):
    with pytest.raises(SpecError) as info:
        checker(path)(path.relative_to(ROOT))
    message = str(info.value)
    assert expected(path) in message
    assert message.startswith(f"{path.relative_to(ROOT)}: ")
    assert "\n" not in message and "Traceback" not in message
    assert len(message) < 600, "messages stay readable, even for huge values"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_check_command_prints_one_line_and_exits_2(path, capsys):
    flag = "--config" if path.name.startswith("config_") else "--spec"
    assert cli.main(["check", flag, str(path.relative_to(ROOT))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected(path) in lines[0]


# --- good inputs pass (so that the corpus tests cannot pass by refusing everything) ------

GOOD_CONFIG = """
defaults: {budget: {epochs: 1, batch_size: 32}, data: {name: blobs, n_samples: 120}}
seeds: 2
studies:
  - name: act
    grid: {model.activation: [relu, tanh]}
    baseline: {model.activation: relu}
    metrics: [test_accuracy, train_time_s]
    columns: {test_accuracy: "Accuracy"}
  - name: lr
    random: {n: 3, seed: 1, params: {optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}}}
    seeds: [7]
"""


def test_good_config_passes_and_expands(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD_CONFIG)
    config = check.check_config_file(path)
    assert [s.name for s in config.studies] == ["act", "lr"]
    assert len(config.runs) == 2 * 2 + 3 * 1
    assert cli.main(["check", "--config", str(path)]) == 0


def test_good_table_spec_passes_and_loads(tmp_path):
    from nnopt.train.data import load_dataset

    path = tmp_path / "spec.yaml"
    path.write_text("data: {name: table, path: tests/bad_inputs/data/good.csv}\n")
    spec = check.check_spec_file(path)
    data = load_dataset(spec.data)  # the engine's loader agrees that the file is fine
    assert data.n_classes == 3
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 12


def test_yaml_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "defaults: &d {budget: {epochs: 1}}\n"
        "studies:\n  - name: a\n    base: {<<: *d, model: {depth: 1}}\n"
    )
    config = check.check_config_file(path)
    assert config.runs[0].spec.budget.epochs == 1


# --- code is never evaluated -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/apply:pathlib.Path.touch ["{marker}"]',
        '!!python/object/new:pathlib.Path ["{marker}"]',
    ],
)
def test_python_tags_are_refused_and_not_run(tmp_path, payload):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text("studies:\n  - name: " + payload.format(marker=marker) + "\n")
    with pytest.raises(SpecError, match="is refused"):
        check.check_config_file(path)
    assert not marker.exists()


def test_yte_code_in_config_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text(
        "__use_yte__: true\nstudies:\n"
        f"  - name: ?__import__('pathlib').Path('{marker}').touch() or 'a'\n"
    )
    with pytest.raises(SpecError, match="__use_yte__: refused"):
        check.check_config_file(path)
    assert not marker.exists()


# --- files that are not there or not files ------------------------------------------------


def test_missing_config_file_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli.main(["check", "--config", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: file not found"


def test_folder_given_as_spec(tmp_path, capsys):
    assert cli.main(["check", "--spec", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_binary_file_given_as_config(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert cli.main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and len(err.splitlines()) == 1


def test_data_file_deleted_after_parse_is_caught(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text((CORPUS / "data" / "good.csv").read_text())
    raw = {"data": {"name": "table", "path": str(data)}}
    spec = check.check_spec(raw)
    data.unlink()
    with pytest.raises(SpecError, match=f"data.path: file or folder not found: {data}"):
        check.check_data(spec.data)


def test_parquet_tables_are_checked_too(tmp_path):
    import polars as pl

    path = tmp_path / "t.parquet"
    pl.DataFrame({"x": [1.0, float("inf"), 2.0, 3.0], "label": [0, 1, 0, 1]}).write_parquet(path)
    with pytest.raises(SpecError, match="column 'x' has 1 missing, NaN or inf values"):
        check.check_table(path, "label")


# --- the same specs through `nnopt train`: refused before training, nothing written -------

SPECS = [p for p in CASES if p.name.startswith("spec_")]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_train_refuses_bad_spec_before_training(path, tmp_path, capsys):
    from nnopt import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--spec", str(path.relative_to(ROOT)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("nnopt train: error: ")
    assert expected(path) in err
    assert not tmp_path.joinpath("run").exists()


A_FEW_SPECS = ["spec_python_tag", "spec_table_nan", "spec_unknown_field", "spec_yaml_syntax"]


@pytest.mark.slow
@pytest.mark.parametrize("name", A_FEW_SPECS)
def test_train_command_refuses_bad_spec(name, tmp_path):
    import subprocess

    path = CORPUS / f"{name}.yaml"
    done = subprocess.run(
        ["nnopt", "train", "--spec", str(path), "--out", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert expected(path) in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# --- paths from a config never lead outside the working folder ----------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from(["a\n", "..", ".", "../x", "/etc", "a/../../b", "~", "con", "-rf", "a\x00b", "ä"]),
))  # fmt: skip
def test_study_names_either_refused_or_confined(name):
    from nnopt.train.data import cache_path
    from nnopt.config.studies import parse_config

    raw = {"defaults": {"data": {"name": "blobs", "n_samples": 60}}, "studies": [{"name": name}]}
    try:
        config = parse_config(raw)
    except SpecError as err:
        assert "\n" not in str(err)
        return
    here = Path.cwd().resolve()
    for run in config.runs:
        for written in (Path("results/runs", run.study, run.run_id), cache_path(run.spec.data, "results/data")):
            resolved = written.resolve()
            assert resolved.is_relative_to(here / "results"), (name, resolved)
            assert ".." not in written.parts and not written.is_absolute()
