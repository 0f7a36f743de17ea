"""Study expansion: grid/zip/random counts, a reproducible sampler, stable run ids, labels."""

from pathlib import Path

import pytest

from nnopt.config.spec import SpecError
from nnopt.config.check import check_config
from nnopt.config.studies import config_label, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
TINY = {"data": {"name": "blobs", "n_samples": 60}, "budget": {"epochs": 1}}


def config(*studies, **top):
    return {"defaults": TINY, "seeds": 2, "studies": list(studies), **top}


def test_grid_is_a_cartesian_product_times_seeds():
    c = parse_config(config({"name": "g", "grid": {"model.depth": [1, 2, 3], "optimizer.lr": [0.1, 0.01]}}))
    runs = c.study("g").runs
    assert len(runs) == 3 * 2 * 2
    assert {r.spec.model.depth for r in runs} == {1, 2, 3}
    assert {r.seed for r in runs} == {0, 1}
    assert len({r.run_id for r in runs}) == len(runs)


def test_zip_pairs_values_and_unequal_lengths_are_refused():
    c = parse_config(config({"name": "z", "zip": {"optimizer.name": ["sgd", "adam"], "optimizer.lr": [0.1, 0.001]}}))
    pairs = {(r.spec.optimizer.name, r.spec.optimizer.lr) for r in c.runs}
    assert pairs == {("sgd", 0.1), ("adam", 0.001)}
    with pytest.raises(SpecError, match=r"studies.z.zip: lists must have equal lengths"):
        parse_config(config({"name": "z", "zip": {"optimizer.name": ["sgd"], "optimizer.lr": [0.1, 0.2]}}))


def test_grid_zip_and_random_combine_as_a_product():
    study = {
        "name": "p",
        "grid": {"model.depth": [1, 2]},
        "zip": {"optimizer.name": ["sgd", "adam"], "optimizer.lr": [0.1, 0.001]},
        "random": {"n": 3, "seed": 7, "params": {"model.dropout": {"uniform": [0.0, 0.5]}}},
        "seeds": 1,
    }
    assert len(parse_config(config(study)).runs) == 2 * 2 * 3


def test_random_sampler_is_reproducible_and_seeded():
    def sample(seed):
        params = {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}, "model.activation": {"choice": ["relu", "tanh"]}}
        c = parse_config(config({"name": "r", "random": {"n": 4, "seed": seed, "params": params}, "seeds": 1}))
        return [dict(r.factors) for r in c.runs]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)
    assert all(1e-4 <= f["optimizer.lr"] <= 1e-1 for f in sample(3))


def test_run_ids_are_stable_across_parses_and_independent_of_other_studies():
    one = parse_config(config({"name": "a", "grid": {"model.depth": [1, 2]}}))
    two = parse_config(config({"name": "b", "grid": {"model.width": [4]}}, {"name": "a", "grid": {"model.depth": [1, 2]}}))
    assert [r.run_id for r in one.study("a").runs] == [r.run_id for r in two.study("a").runs]
    # A run id is the spec's hash: the same spec in another study has the same id.
    assert len(one.study("a").runs[0].run_id) == 16


def test_defaults_apply_and_a_study_overrides_only_what_it_changes():
    c = parse_config(config({"name": "s", "base": {"model": {"width": 7}}}))
    spec = c.runs[0].spec
    assert spec.model.width == 7 and spec.model.depth == 2  # depth: the spec default
    assert spec.data.name == "blobs" and spec.data.n_samples == 60  # from defaults


def test_seeds_as_list_and_per_study_override():
    c = parse_config(config({"name": "s", "seeds": [3, 9]}, {"name": "t"}))
    assert [r.seed for r in c.study("s").runs] == [3, 9]
    assert [r.seed for r in c.study("t").runs] == [0, 1]


def test_label_factors_name_configurations_without_changing_specs():
    study = {
        "name": "reg",
        "zip": {"label.reg": ["none", "l2"], "regularization.l2": [0.0, 0.01]},
        "rows": "label.reg",
        "seeds": 1,
    }
    runs = parse_config(config(study)).runs
    assert [dict(r.factors)["label.reg"] for r in runs] == ["none", "l2"]
    plain = parse_config(config({"name": "reg", "grid": {"regularization.l2": [0.0, 0.01]}, "seeds": 1}))
    assert [r.run_id for r in runs] == [r.run_id for r in plain.runs]  # labels are not hashed


def test_identical_configurations_are_refused():
    with pytest.raises(SpecError, match="give identical runs"):
        parse_config(config({"name": "d", "grid": {"label.x": ["a", "b"]}}))
    with pytest.raises(SpecError, match="give identical runs"):
        parse_config(config({"name": "d", "grid": {"model.depth": [1, 1]}}))


def test_zero_runs_and_too_many_runs_are_reported():
    with pytest.raises(SpecError, match=r"studies.big: expands to 12 runs, more than max_runs_per_study \(10\)"):
        parse_config(config({"name": "big", "grid": {"model.depth": [1, 2, 3, 4, 5, 6]}}, max_runs_per_study=10))
    with pytest.raises(SpecError, match=r"studies.empty.grid.model.depth: empty list"):
        parse_config(config({"name": "empty", "grid": {"model.depth": []}}))


def test_config_label_is_readable_and_stable():
    assert config_label({"optimizer.lr": 0.001, "model.batch_norm": True}) == "optimizer.lr=0.001, model.batch_norm=true"
    assert config_label({}) == "base"


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_shipped_configs_parse(name, monkeypatch):
    from nnopt.config.check import merged_config

    monkeypatch.chdir(ROOT)  # smoke.yaml says `inherit: shipped`: merged as the workflow does
    c = parse_config(merged_config(["config/config.yaml", f"config/{name}"]))
    assert all(len(s.runs) >= 1 for s in c.studies)


def test_shipped_studies_have_the_names_the_claims_use():
    c = load_config(ROOT / "config" / "config.yaml")
    names = {s.family or s.name for s in c.studies}  # replicated studies: one per problem
    assert names >= {
        "activation", "gradient_descent", "lr_schedule", "batch_size", "regularization",
        "dropout", "initialization", "optimizers", "parallel", "precision",
        "hyperparameter_grid", "momentum", "batch_norm", "learning_rate",
    }  # fmt: skip
    # a tuned study's comparisons use its confirmation seeds (its own runs are the untuned default)
    assert all(len(s.tune.confirm_seeds if s.tune else s.seeds) >= 3 for s in c.studies)


# The workflow's only validation is check_config (the JSON schema that repeated it is gone):
# each bad config is one line that starts with the key at fault and says what is allowed.
BAD_CONFIGS = [
    ({"studies": [{"name": "a", "grdi": {}}]}, "studies.a.grdi: unknown key; allowed: name, title", "did you mean 'grid'"),
    ({"studies": [{"name": "a", "seeds": "five"}]}, "studies.a.seeds: expected a positive number", "got 'five'"),
    ({"studies": [{"name": "a b"}]}, "studies[0].name: expected letters, digits", "got 'a b'"),
    ({"studies": [{"name": "a", "grid": {"optimizer": [1]}}]}, "studies.a: optimizer: expected a mapping", "got 1"),
    ({"studies": []}, "studies: expected a non-empty list of studies", "studies"),
    ({"studis": []}, "studis: unknown top-level key; allowed: defaults", "did you mean 'studies'"),
    ({"studies": [{"name": "a", "random": {"n": 2, "params": {"optimizer.lr": {"normal": [0, 1]}}}}]},
     "studies.a.random.params.optimizer.lr: expected one of", "{log_uniform: [lo, hi]}"),
    ({"studies": [{"name": "a"}], "runs_per_job": 0}, "runs_per_job: expected 'auto' or an integer >= 1", "got 0"),
    ({"defaults": {"modle": {}}, "studies": [{"name": "a"}]}, "studies.a: modle: unknown key", "did you mean 'model'"),
]


@pytest.mark.parametrize("raw, where, hint", BAD_CONFIGS, ids=[c[1].split(":")[0] for c in BAD_CONFIGS])
def test_bad_configs_become_one_line_naming_the_key(raw, where, hint):
    with pytest.raises(SpecError) as caught:
        check_config(raw, devices=False)
    message = str(caught.value)
    assert message.startswith(where), message
    assert hint in message
    assert "\n" not in message
