"""Plug-ins: a user's models.py, loader and optimizer beside their spec, run end to end."""

import json
import re

import pytest

from nnopt.cli.main import main
from nnopt.config.check import check_spec_file
from nnopt.config.spec import SpecError, parse_spec
from nnopt.store.runs import read_run
from nnopt.train.plugin_check import check_plugins
from nnopt.train.runner import run_batch

MODELS_PY = '''
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer = nn.Linear(width, width)

    def forward(self, x):
        return x + torch.relu(self.layer(x))


def residual_mlp(input_shape, n_classes, width=16, blocks=2):
    n_in = 1
    for s in input_shape:
        n_in *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width),
                         *[Residual(width) for _ in range(blocks)], nn.Linear(width, n_classes))


def wrong_shape(input_shape, n_classes, **kwargs):
    return nn.Linear(input_shape[0], n_classes + 1)


def not_a_module(input_shape, n_classes, **kwargs):
    return "mlp"


NOT_CALLABLE = 3
'''

LOADER_PY = '''
import numpy as np


def two_blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(size=(n, 2)) + 3.0 * y[:, None], y


def bad_labels(**kwargs):
    return np.zeros((10, 2)), np.full(10, 0.5)
'''

OPTIM_PY = '''
import torch


def plain_sgd(params, lr, momentum=0.0):
    return torch.optim.SGD(params, lr=lr, momentum=momentum)
'''


def _study(folder, model="models:residual_mlp", optimizer=None):
    """A user folder: models.py, rings.py, myoptim.py and run.yaml beside each other."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.py").write_text(MODELS_PY)
    (folder / "rings.py").write_text(LOADER_PY)
    (folder / "myoptim.py").write_text(OPTIM_PY)
    spec = {
        "data": {"name": "python", "loader": "rings:two_blobs", "kwargs": {"n": 240}},
        "model": {"kind": "python", "factory": model, "kwargs": {"width": 12}},
        "optimizer": optimizer or {"name": "adam", "lr": 0.01},
        "budget": {"epochs": 5, "batch_size": 32},
    }
    (folder / "run.yaml").write_text(json.dumps(spec))
    return folder / "run.yaml"


def test_train_cli_runs_user_model_loader_and_optimizer(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the modules are found beside the spec, not in the cwd
    optimizer = {"name": "python", "factory": "myoptim:plain_sgd", "lr": 0.1,
                 "kwargs": {"momentum": 0.9}}
    spec_file = _study(tmp_path / "mystudy", optimizer=optimizer)
    out = tmp_path / "results" / "run1"
    assert main(["train", "--spec", str(spec_file), "--out", str(out)]) == 0
    record = read_run(out)
    assert record["status"] == "ok", record.get("error")
    assert record["metrics"]["test_accuracy"] > 0.85  # two blobs 3 std apart: ~93% separable
    plugins = record["provenance"]["plugins"]
    assert plugins["model"]["path"] == str((tmp_path / "mystudy" / "models.py").resolve())
    assert plugins["model"]["sha256"] == record["spec"]["model"]["source_sha256"]
    assert set(plugins) == {"model", "data", "optimizer"}
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "steps" in printed


def test_editing_models_py_changes_exactly_its_runs(tmp_path):
    spec_file = _study(tmp_path / "s")
    user = check_spec_file(spec_file)
    builtin = parse_spec({"data": {"name": "blobs"}, "budget": {"epochs": 1}})
    items = [{"study": "mine", "spec": user, "out": tmp_path / "runs" / user.run_id},
             {"study": "mine", "spec": builtin, "out": tmp_path / "runs" / builtin.run_id}]
    first = run_batch(items)
    assert [r["trained"] for r in first] == [True, True]
    models = tmp_path / "s" / "models.py"
    models.write_text(models.read_text().replace("blocks=2", "blocks=1"))
    edited = check_spec_file(spec_file)
    assert edited.run_id != user.run_id
    assert edited.data == user.data  # the loader file did not change
    items[0] = {**items[0], "spec": edited, "out": tmp_path / "runs" / edited.run_id}
    second = run_batch(items)
    assert [r["trained"] for r in second] == [True, False]  # only the edited model reruns
    assert read_run(items[0]["out"])["status"] == "ok"


def test_spec_round_trip_keeps_the_hash_and_refuses_a_changed_file(tmp_path):
    spec = check_spec_file(_study(tmp_path / "s"))
    again = parse_spec(spec.to_dict())  # what a job does with the planned spec
    assert again.run_id == spec.run_id and again.model.code_root == spec.model.code_root
    (tmp_path / "s" / "models.py").write_text(MODELS_PY + "\n# edited\n")
    with pytest.raises(SpecError, match="model.source_sha256: .*models.py changed"):
        parse_spec(spec.to_dict())


def test_run_id_does_not_depend_on_the_folder(tmp_path):
    a = check_spec_file(_study(tmp_path / "host_a"))
    b = check_spec_file(_study(tmp_path / "host_b"))
    assert a.run_id == b.run_id and a.model.code_root != b.model.code_root


BAD = [
    ({"model": "nomodule:net"}, "model.factory: module 'nomodule' not found in "),
    ({"model": "models:missing"}, "model.factory: .*models.py has no attribute 'missing'"),
    ({"model": "models:NOT_CALLABLE"}, "model.factory: .*'NOT_CALLABLE' is a int, not callable"),
    ({"model": "models:not_a_module"}, ("model.factory: models:not_a_module returned str, "
                                        "expected a torch.nn.Module")),
    ({"model": "models:wrong_shape"}, (r"model.factory: models:wrong_shape maps a batch of shape "
                                       r"\(2, 2\) to \(2, 3\); expected logits of shape \(2, 2\)")),
    ({"model": "models.residual_mlp"}, "model.factory: expected 'module.path:callable'"),
    ({"model": "models:residual_mlp", "kwargs": {"depth": 3}},
     r"model.factory: models:residual_mlp \(.*models.py\) raised TypeError: .*'depth'"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[str(c) for c, _ in BAD])
def test_bad_plugins_are_one_line_at_check_time(tmp_path, capsys, change, message):
    spec_file = _study(tmp_path / "s", model=change["model"])
    if "kwargs" in change:
        raw = json.loads(spec_file.read_text())
        raw["model"]["kwargs"] = change["kwargs"]
        spec_file.write_text(json.dumps(raw))
    assert main(["check", "--spec", str(spec_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_loader_contract_is_checked(tmp_path):
    spec_file = _study(tmp_path / "s")
    raw = json.loads(spec_file.read_text())
    raw["data"]["loader"] = "rings:bad_labels"
    with pytest.raises(SpecError, match="data.loader: rings:bad_labels: y must be integer"):
        check_plugins(parse_spec(raw, code_root=tmp_path / "s"))


def test_plugin_keys_need_their_switch():
    with pytest.raises(SpecError, match="model.factory: only read when model.kind is 'python'"):
        parse_spec({"model": {"factory": "models:net"}})
    with pytest.raises(SpecError, match="model.factory: required for model.kind 'python'"):
        parse_spec({"model": {"kind": "python"}})
    with pytest.raises(SpecError, match="optimizer.kwargs: expected a mapping"):
        parse_spec({"optimizer": {"name": "python", "factory": "m:f", "kwargs": [1]}})


def test_study_config_and_train_batch_job_use_the_plugins(tmp_path, monkeypatch):
    """The workflow's path: parse_config expands a study (file_root = the config's folder),
    packing writes spec.to_dict() to a runs file, `nnopt train-batch` re-parses and trains."""
    from nnopt.config.studies import parse_config

    folder = tmp_path / "mystudy"
    _study(folder)
    raw = json.loads((folder / "run.yaml").read_text())
    config = parse_config({"defaults": raw, "seeds": 1, "studies": [
        {"name": "mine", "grid": {"optimizer.name": ["sgd", "adam"]},
         "metrics": ["test_accuracy"]}]}, file_root=folder)
    specs = [r.spec for r in config.runs]
    assert len({s.run_id for s in specs}) == 2
    assert {s.model.code_root for s in specs} == {str(folder.resolve())}
    monkeypatch.chdir(tmp_path)  # a job runs elsewhere; the spec says where the code is
    items = [{"study": "mine", "spec": s.to_dict(), "out": str(tmp_path / "runs" / s.run_id)}
             for s in specs]
    (tmp_path / "runs.json").write_text(json.dumps(items))
    assert main(["train-batch", "--runs", str(tmp_path / "runs.json"),
                 "--manifest", str(tmp_path / "manifest.json")]) == 0
    rows = json.loads((tmp_path / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
