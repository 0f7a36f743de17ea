"""The run spec: each bad input names its key and what is allowed; ids are stable."""

import pytest

from nnopt.config.spec import RunSpec, SpecError, load_spec, parse_spec

BAD_SPECS = [
    ({"optimizer": {"name": "adamm"}}, "optimizer.name: unknown value 'adamm'; allowed: sgd"),
    ({"optimizer": {"name": "adamm"}}, "did you mean 'adam'"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr: 0 is out of range; expected a number > 0"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr: expected a number > 0, got 'fast' (str)"),
    ({"optimizer": {"lr": "1e-3"}}, "YAML reads this as text"),
    ({"optimizer": {"lrate": 0.1}}, "optimizer.lrate: unknown key; allowed: name, lr"),
    ({"model": {"activation": "swish"}}, "model.activation: unknown value 'swish'; allowed: sigmoid"),
    ({"model": {"depth": 2.5}}, "model.depth: expected an integer >= 0"),
    ({"model": {"dropout": 1.0}}, "model.dropout: 1.0 is out of range; expected a number >= 0 and < 1"),
    ({"model": {"batch_norm": "yes"}}, "model.batch_norm: expected true or false, got 'yes'"),
    ({"budget": {"epochs": True}}, "budget.epochs: expected an integer >= 1 or null, got True (bool)"),
    ({"budget": {"epochs": 3, "steps": 5}}, "budget: set exactly one of budget.epochs and budget.steps"),
    ({"budget": {"batch_size": 0}}, "budget.batch_size: 0 is out of range"),
    ({"data": {"name": "cifar"}}, "data.name: unknown value 'cifar'; allowed: mnist1d, digits"),
    ({"data": {"val_fraction": 0.6, "test_fraction": 0.5}}, "data.val_fraction + data.test_fraction: must be < 1"),
    ({"data": {"name": "table"}}, "data.path: required for data.name 'table'"),
    ({"data": {"name": "table", "path": "/nonexistent/x.csv"}}, "data.path: file or folder not found"),
    ({"schedule": {"name": "cosine_warm"}}, "schedule.name: unknown value 'cosine_warm'"),
    ({"schedule": {"milestones": [5, 3]}}, "schedule.milestones: expected strictly increasing epochs"),
    ({"schedule": {"name": "plateau"}, "data": {"val_fraction": 0}}, "schedule.name: 'plateau' needs validation data"),
    ({"init": {"name": "he"}}, "init.name: unknown value 'he'; allowed: default, zero"),
    ({"device": {"precision": "fp16"}}, "device.precision: 'fp16' needs device 'cuda'"),
    ({"device": {"device": "tpu"}}, "device.device: unknown value 'tpu'; allowed: cpu, cuda, auto"),
    ({"regularization": {"l2": -1}}, "regularization.l2: -1 is out of range; expected a number >= 0"),
    ({"regularization": {"early_stopping_patience": 3}, "data": {"val_fraction": 0}},
     "regularization.early_stopping_patience: needs validation data"),
    ({"evaluation": {"target_val_accuracy": 1.5}}, "evaluation.target_val_accuracy: 1.5 is out of range"),
    ({"seed": -1}, "seed: -1 is out of range"),
    ({"sed": 1}, "sed: unknown key; allowed: data, model"),
    ({"model": "mlp"}, "model: expected a mapping of settings"),
    ({"model": {"kind": "cnn2d"}}, "model.kind: 'cnn2d' needs image data"),
    ({"model": {"kind": "cnn1d", "kernel_size": 4}}, "model.kernel_size: must be odd"),
]


@pytest.mark.parametrize("raw, message", BAD_SPECS, ids=[m[:40] for _, m in BAD_SPECS])
def test_bad_spec_names_key_and_allowed(raw, message):
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert message in str(info.value)


def test_defaults_and_canonical_form():
    spec = parse_spec({})
    # Every field default, plus the data's fingerprint (the generator's version: part of run_id).
    assert spec.replace(data=RunSpec().data.__class__(fingerprint=spec.data.fingerprint)) == spec
    assert spec.data.fingerprint.startswith("mnist1d ")
    canonical = spec.to_dict()
    assert canonical["optimizer"]["name"] == "adam"
    assert canonical["schedule"]["milestones"] == []  # tuples become lists
    assert parse_spec(canonical) == spec  # the canonical dict round-trips


def test_run_id_stable_and_sensitive():
    a = parse_spec({"optimizer": {"lr": 0.01}, "seed": 1})
    b = parse_spec({"seed": 1, "optimizer": {"lr": 0.01, "name": "adam"}})  # key order, defaults
    assert a.run_id == b.run_id and len(a.run_id) == 16
    assert parse_spec({"optimizer": {"lr": 0.02}, "seed": 1}).run_id != a.run_id
    assert parse_spec({"seed": 2, "optimizer": {"lr": 0.01}}).run_id != a.run_id
    # checkpoint cadence does not change results, so it does not change the id
    assert parse_spec({**a.to_dict(), "checkpoint": {"every_epochs": 2}}).run_id == a.run_id


def test_steps_alone_switches_epochs_off():
    spec = parse_spec({"budget": {"steps": 50}, "evaluation": {"every_steps": 10}})
    assert spec.budget.epochs is None and spec.budget.steps == 50
    assert spec.evaluation.every_epochs is None


def test_load_spec_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optimizer: {name: sgd, lr: 0.1}\nseed: 3\n")
    spec = load_spec(path)
    assert (spec.optimizer.name, spec.optimizer.lr, spec.seed) == ("sgd", 0.1, 3)
    path.write_text("optimizer: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
