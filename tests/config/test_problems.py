"""The problems axis: a study replicated on other data/architectures, one study per problem."""

from __future__ import annotations

import pytest

from nnopt.config.spec import SpecError
from nnopt.config.studies import parse_config

CONFIG = {
    "defaults": {"data": {"name": "spirals", "n_samples": 60}, "budget": {"epochs": 1}},
    "problems": {
        "spirals_mlp": {"title": "spirals, MLP"},
        "blobs_wide": {"title": "blobs, wide MLP",
                       "base": {"data": {"name": "blobs"}, "model": {"width": 32}}},
    },
    "studies": [
        {"name": "lr", "grid": {"optimizer.lr": [0.01, 0.1]}, "seeds": 2,
         "base": {"model": {"depth": 1}}, "problems": ["spirals_mlp", "blobs_wide"]},
        {"name": "plain", "grid": {"optimizer.lr": [0.01]}},
    ],
}  # fmt: skip


def test_each_problem_is_its_own_study_with_family_and_problem():
    config = parse_config(CONFIG)
    names = [s.name for s in config.studies]
    assert names == ["lr__spirals_mlp", "lr__blobs_wide", "plain"]
    wide = config.study("lr__blobs_wide")
    assert (wide.family, wide.problem, wide.title) == ("lr", "blobs_wide", "lr (blobs, wide MLP)")
    assert len(wide.runs) == 4
    spec = wide.runs[0].spec
    # defaults < problem base < study base: blobs and width 32 from the problem, depth from the study
    assert (spec.data.name, spec.model.width, spec.model.depth) == ("blobs", 32, 1)
    assert config.study("plain").problem is None and config.study("plain").family == "plain"
    # the same configuration on two problems is two different runs
    ids = {s.name: {r.run_id for r in s.runs} for s in config.studies}
    assert not ids["lr__spirals_mlp"] & ids["lr__blobs_wide"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"problems": {"a__b": {}}}, r"problems\.a__b: expected letters"),
        ({"problems": {"p": {"seeds": 3}}}, r"problems\.p\.seeds: unknown key; allowed: title, base"),
        ({"problems": {"p": {"base": 3}}}, r"problems\.p\.base: expected a mapping"),
    ],
)
def test_bad_problems_are_one_line(change, message):
    with pytest.raises(SpecError, match=message):
        parse_config({**CONFIG, **change})


def test_a_study_naming_an_unknown_problem_is_refused():
    bad = {**CONFIG, "studies": [{**CONFIG["studies"][0], "problems": ["spirals_mpl"]}]}
    with pytest.raises(SpecError, match=r"studies\.lr\.problems: unknown problem 'spirals_mpl'.*did you mean 'spirals_mlp'"):
        parse_config(bad)


def test_claims_about_a_replicated_study_are_judged_per_problem(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from fixtures.make_runs import make_runs

    from nnopt.analysis.aggregate import load_runs
    from nnopt.analysis.claims import evaluate_claims, parse_claims

    config = parse_config(CONFIG)
    means = {  # lr 0.1 better on spirals, worse on blobs
        ("lr__spirals_mlp", "optimizer.lr=0.1"): {"test_accuracy": 0.9},
        ("lr__spirals_mlp", "optimizer.lr=0.01"): {"test_accuracy": 0.7},
        ("lr__blobs_wide", "optimizer.lr=0.1"): {"test_accuracy": 0.6},
        ("lr__blobs_wide", "optimizer.lr=0.01"): {"test_accuracy": 0.8},
    }
    make_runs(config, tmp_path, means=means, sd=0.01)
    runs = load_runs(config, tmp_path)
    assert set(runs["family"]) == {"lr", "plain"}
    assert runs.filter(runs["family"] == "lr")["problem"].unique().sort().to_list() == [
        "blobs_wide", "spirals_mlp"]
    _, claims = parse_claims({"claims": [dict(
        id="big-lr", text="0.1 beats 0.01", source="t", study="lr", metric="test_accuracy",
        kind="greater", left={"optimizer.lr": 0.1}, right={"optimizer.lr": 0.01})]})
    res = evaluate_claims(claims, config, runs)[0]
    assert [p.problem for p in res.problems] == ["spirals_mlp", "blobs_wide"]
    assert [p.verdict for p in res.problems] == ["supported", "contradicted"]
    assert res.verdict == "mixed"
