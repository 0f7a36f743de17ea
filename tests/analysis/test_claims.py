"""nnopt.analysis.claims: grammar errors, and supported / contradicted / inconclusive / not run."""

from pathlib import Path

import numpy as np
import pytest

from fixtures.make_runs import SMALL_CONFIG, make_runs
from nnopt.analysis import aggregate as ag
from nnopt.analysis.claims import evaluate_claims, load_claims, parse_claims
from nnopt.analysis.labels import short_labels
from nnopt.config.spec import SpecError
from nnopt.config.studies import parse_config

MEANS = {
    ("activation", "model.activation=relu"): {"test_accuracy": 0.90, "train_time_s": 2.0,
                                              "steps_to_target": 300.0},
    ("activation", "model.activation=sigmoid"): {"test_accuracy": 0.70, "train_time_s": 4.0,
                                                 "steps_to_target": 600.0},
    ("activation", "model.activation=tanh"): {"test_accuracy": 0.70, "train_time_s": 4.0,
                                              "steps_to_target": 5000.0},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    config = parse_config(SMALL_CONFIG)
    tanh = [r for r in config.study("activation").runs if r.config.endswith("tanh")]
    make_runs(config, root, means=MEANS, sd=0.01,
              statuses={tanh[0].run_id: "diverged", tanh[1].run_id: "diverged"})
    return config, ag.load_runs(config, root)


def _claims(*items):
    return parse_claims({"claims": [dict(id=f"c{i}", text="t", **c) for i, c in enumerate(items)]})[1]


def _verdicts(world, *items):
    config, runs = world
    return [r.verdict for r in evaluate_claims(_claims(*items), config, runs)]


def test_greater_claim_supported_contradicted_and_underpowered(world):
    base = dict(study="activation", metric="test_accuracy", kind="greater")
    verdicts = _verdicts(world, {**base, "left": "relu", "right": "sigmoid"},
                         {**base, "left": "sigmoid", "right": "relu"},
                         {**base, "left": "tanh", "right": "sigmoid"})
    # tanh: 2 of 4 runs diverged and count as chance accuracy, so its spread is huge
    assert verdicts == ["supported", "contradicted", "underpowered"]


def test_claim_about_a_study_not_run_is_reported_not_raised(world):
    v = _verdicts(world, dict(study="parallel", metric="train_time_s", kind="less",
                              left=2, right=1))
    assert v == ["not run"]


def test_unknown_configuration_is_inconclusive_with_a_reason(world):
    config, runs = world
    res = evaluate_claims(_claims(dict(study="activation", metric="test_accuracy",
                                       kind="greater", left="gelu", right="relu")), config, runs)
    assert res[0].verdict == "inconclusive" and "gelu" in res[0].evidence[0]


def test_ordering_best_less_and_censored_claims(world):
    base = dict(study="activation")
    verdicts = _verdicts(
        world,
        {**base, "metric": "train_time_s", "kind": "ordering",
         "configs": ["relu", "sigmoid"], "direction": "increasing"},
        {**base, "metric": "test_accuracy", "kind": "best", "config": "relu",
         "among": ["sigmoid"]},
        {**base, "metric": "test_accuracy", "kind": "best", "config": "sigmoid"},
        # tanh never reaches the target (5000 steps > budget): censored, still comparable, but
        # a sign-flip test over 4 paired seeds cannot go below 2/16
        {**base, "metric": "steps_to_target", "kind": "less", "left": "relu", "right": "tanh"},
    )
    assert verdicts == ["supported", "supported", "contradicted", "underpowered"]


def test_ratio_and_divergence_claims(world):
    base = dict(study="activation")
    verdicts = _verdicts(
        world,
        {**base, "metric": "train_time_s", "kind": "ratio", "left": "sigmoid", "right": "relu",
         "at_least": 1.5},  # true ratio 2.0
        {**base, "metric": "train_time_s", "kind": "ratio", "left": "sigmoid", "right": "relu",
         "at_least": 3.0},
        {**base, "kind": "diverges", "left": "tanh", "right": "relu"},  # 2 of 4 vs 0 of 4
    )
    assert verdicts[:2] == ["supported", "contradicted"]
    assert verdicts[2] == "underpowered"  # Fisher p = 0.43 with 4 seeds: honest


def test_article_values_are_shown_beside_ours(world):
    config, runs = world
    res = evaluate_claims(_claims(dict(study="activation", metric="test_accuracy",
                                       kind="greater", left="relu", right="sigmoid",
                                       article={"relu": 95.6, "sigmoid": 92.3})), config, runs)
    rows = {r["label"]: r for r in res[0].article}
    assert rows["relu"]["article"] == 95.6
    assert float(rows["relu"]["ours"].split()[0]) == pytest.approx(90.0, abs=1.5)


@pytest.mark.parametrize("bad, where", [
    ({"claims": [{"id": "a", "text": "t", "study": "s", "kind": "bigger", "metric": "m"}]},
     "kind"),
    ({"claims": [{"id": "a", "text": "t", "study": "s", "kind": "greater", "metric": "m"}]},
     "left"),
    ({"claims": [{"id": "a", "text": "t", "study": "s", "kind": "less", "metric": "m",
                  "left": 1, "right": 2, "colour": "red"}]}, "colour"),
    ({"alpha": 2, "claims": []}, "alpha"),
])
def test_grammar_errors_name_the_key(bad, where):
    with pytest.raises(SpecError, match=where):
        parse_claims(bad)


def test_shipped_claims_file_parses():
    alpha, claims = load_claims(Path(__file__).parents[2] / "config" / "claims.yaml")
    assert 0 < alpha < 1 and len(claims) >= 15
    assert {c.kind for c in claims} >= {"greater", "less", "ordering", "best", "ratio"}


def test_pool_best_picks_the_best_configuration_of_a_selector(world):
    config, runs = world
    # Selector {budget.batch_size: 16} matches lr=0.01 and lr=0.001 in the grid study.
    claim = dict(study="hyperparameter_grid", metric="test_accuracy", kind="greater",
                 left={"budget.batch_size": 16}, right={"budget.batch_size": 64})
    pooled = evaluate_claims(_claims(claim), config, runs)[0]
    best = evaluate_claims(_claims({**claim, "pool": "best"}), config, runs)[0]
    assert pooled.chosen == {}
    assert set(best.chosen) == {"16", "64"}
    picked = best.chosen["16"]
    grid = runs.filter((runs["study"] == "hyperparameter_grid") & (runs["budget.batch_size"] == "16"))
    means = {c: grid.filter(grid["config"] == c)["test_accuracy"].mean()
             for c in grid["config"].unique()}
    names = short_labels(grid, config.study("hyperparameter_grid"))  # as the report names them
    assert picked == names[max(means, key=means.get)] == "lr=0.001, batch_size=16"
    assert "best configuration (by validation) used" in best.evidence[-1]


def test_shipped_claims_match_the_shipped_config():
    from nnopt.analysis.claims import check_claims
    from nnopt.config.studies import load_config

    root = Path(__file__).parents[2]
    _, claims = load_claims(root / "config" / "claims.yaml")
    problems = check_claims(claims, load_config(root / "config" / "config.yaml"))
    # Only the parallel study may lack configurations (world sizes the machine cannot run).
    assert all(p.split(":")[0].endswith("speedup") for p in problems), problems


def test_holm_family_is_the_claims_of_one_study(world):
    """Claims about different studies are adjusted apart; claims about one study together."""
    from nnopt.analysis import stats

    config, runs = world
    acc = dict(study="activation", metric="test_accuracy", kind="greater")
    grid = dict(study="hyperparameter_grid", metric="test_accuracy", kind="greater",
                left={"optimizer.lr": 0.01}, right={"optimizer.lr": 0.001})
    res = evaluate_claims(_claims({**acc, "left": "tanh", "right": "sigmoid"}, grid,
                                  {**acc, "left": "relu", "right": "tanh"}), config, runs)
    tanh_sigmoid, lr_grid, relu_tanh = (r.tests[0] for r in res)
    p = {k: t["result"].p for k, t in (("ts", tanh_sigmoid), ("lr", lr_grid), ("rt", relu_tanh))}
    assert lr_grid["p_holm"] == pytest.approx(p["lr"])  # alone in its study's family
    expected = stats.holm([p["ts"], p["rt"]])
    assert [tanh_sigmoid["p_holm"], relu_tanh["p_holm"]] == pytest.approx(list(expected))
    assert relu_tanh["p_holm"] == pytest.approx(2 * p["rt"])  # smallest of a family of 2
    assert res[0].family == ("Holm over the 2 tests of the 2 claims about study activation on "
                             "mnist1d-mlp")


def test_censored_evidence_says_never_reached_or_the_median_with_counts():
    import numpy as np

    from nnopt.analysis.claim_tests import describe_sample

    assert describe_sample(np.array([np.inf] * 5), "epochs_to_target", 5) == (
        "never reached (0 reached; n_used 5 of 5)")
    assert describe_sample(np.array([4.0, 6.0, np.inf]), "epochs_to_target", 4) == (
        "median 6.0 epochs (2 reached; n_used 3 of 4)")


# --- acceptance: pairing, status rule, equivalence, problems, the table ---------------------


def _copy_config(runs, study, src, dst):
    """Runs of configuration `dst` replaced by those of `src` seed by seed (identical work)."""
    import polars as pl

    metrics = [c for c in runs.columns if c in ("test_accuracy", "train_time_s",
                                                "best_val_accuracy", "final_val_loss")]
    src_rows = runs.filter((pl.col("study") == study) & (pl.col("config") == src))
    src_rows = src_rows.select("seed", *[pl.col(m).alias(f"_{m}") for m in metrics],
                               pl.col("status").alias("_status"))
    out = runs.join(src_rows, on="seed", how="left")
    is_dst = (pl.col("study") == study) & (pl.col("config") == dst)
    return out.with_columns(
        [pl.when(is_dst).then(pl.col(f"_{m}")).otherwise(pl.col(m)).alias(m) for m in metrics]
        + [pl.when(is_dst).then(pl.col("_status")).otherwise(pl.col("status")).alias("status")]
    ).drop([f"_{m}" for m in metrics] + ["_status"])


def test_identical_configurations_under_different_labels_are_equivalent_never_supported(world):
    config, runs = world
    same = _copy_config(runs, "activation", "model.activation=sigmoid", "model.activation=tanh")
    base = dict(study="activation", kind="greater", left="tanh", right="sigmoid")
    res = evaluate_claims(_claims({**base, "metric": "test_accuracy"},
                                  {**base, "metric": "train_time_s"},
                                  {**base, "kind": "less", "metric": "test_accuracy"}),
                          config, same)
    assert [r.verdict for r in res] == ["equivalent"] * 3
    best = evaluate_claims(_claims(dict(study="activation", kind="best", metric="test_accuracy",
                                        config="tanh", among=["sigmoid"])), config, same)[0]
    assert best.verdict == "equivalent" and "no best: tied with sigmoid" in best.evidence


def test_a_paired_test_is_used_when_seeds_match_and_said(world):
    config, runs = world
    base = dict(study="activation", metric="test_accuracy", kind="greater", right="sigmoid")
    paired = evaluate_claims(_claims({**base, "left": "relu"}), config, runs)[0]
    assert paired.tests[0]["result"].test == "paired_t" and paired.tests[0]["result"].paired
    assert "paired t-test (by seed)" in paired.evidence[0]
    grid = evaluate_claims(_claims(dict(
        study="hyperparameter_grid", metric="test_accuracy", kind="greater",
        left={"budget.batch_size": 16}, right={"budget.batch_size": 64})), config, runs)[0]
    # two learning rates pooled per side: seeds repeat, so there is nothing to pair
    assert grid.tests[0]["result"].test == "welch"
    assert "Welch" in grid.evidence[0]


def test_a_stalled_run_is_counted_in_a_did_not_learn_claim_and_accuracy(world):
    import polars as pl

    config, runs = world
    relu = pl.col("config") == "model.activation=relu"
    stalled = runs.with_columns(
        status=pl.when(relu).then(pl.lit("stalled")).otherwise(pl.col("status")),
        test_accuracy=pl.when(relu).then(0.1).otherwise(pl.col("test_accuracy")))
    res = evaluate_claims(_claims(
        dict(study="activation", kind="diverges", left="relu", right="sigmoid"),
        dict(study="activation", metric="test_accuracy", kind="less", left="relu",
             right="sigmoid")), config, stalled)
    assert "relu: 4 of 4 did not learn" in res[0].evidence[0]
    assert res[0].tests[0]["n_used"] == 8
    assert res[1].tests[0]["n_used"] == 8 and res[1].verdict == "supported"


def test_pool_best_selects_on_validation_not_on_the_tested_metric(world):
    import polars as pl

    config, runs = world
    # make lr=0.01 best on validation but worst on test: the validation pick must win
    lr = pl.col("optimizer.lr") == "0.01"
    flipped = runs.with_columns(
        best_val_accuracy=pl.when(lr).then(0.99).otherwise(0.5),
        test_accuracy=pl.when(lr).then(pl.col("test_accuracy") - 0.3)
        .otherwise(pl.col("test_accuracy")))
    res = evaluate_claims(_claims(dict(
        study="hyperparameter_grid", metric="test_accuracy", kind="greater", pool="best",
        left={"budget.batch_size": 16}, right={"budget.batch_size": 64})), config, flipped)[0]
    assert res.chosen["16"].startswith("lr=0.01,")


def test_each_problem_gets_a_verdict_and_an_overall_one(world):
    import polars as pl

    from nnopt.analysis.claims_table import CLAIMS_SCHEMA, claims_frame

    config, runs = world
    sigmoid = pl.col("config") == "model.activation=sigmoid"
    a = runs.with_columns(problem=pl.lit("mnist1d-mlp"))
    b = runs.with_columns(problem=pl.lit("digits-mlp"))
    c = runs.with_columns(problem=pl.lit("mnist1d-cnn1d"),  # sigmoid wins on this one
                          test_accuracy=pl.when(sigmoid).then(0.99)
                          .otherwise(pl.col("test_accuracy")))
    claim = dict(study="activation", metric="test_accuracy", kind="greater", left="relu",
                 right="sigmoid")
    res = evaluate_claims(_claims(claim), config, pl.concat([a, b, c]))[0]
    assert [p.verdict for p in res.problems] == ["supported", "supported", "contradicted"]
    assert res.verdict == "mixed" and res.summary == "holds on 2 of 3 problems"
    assert res.problems[2].family.endswith("on mnist1d-cnn1d")
    table = claims_frame([res])
    assert table.schema == pl.Schema(CLAIMS_SCHEMA)
    assert table["problem"].to_list() == ["mnist1d-mlp", "digits-mlp", "mnist1d-cnn1d",
                                          "overall"]
    row = table.row(0, named=True)
    assert row["test"] == "paired_t" and row["n"] == 8 and row["n_used"] == 8
    assert row["ci_low"] < row["effect"] < row["ci_high"] and row["margin"] == 0.01
    assert row["p_adjusted"] == pytest.approx(row["p"])
    assert table.row(3, named=True)["verdict"] == "mixed"
    one = claims_frame(evaluate_claims(_claims(claim), config, runs))
    assert one["problem"].to_list() == ["mnist1d-mlp", "overall"]  # no column: one problem


def test_margins_from_the_file_and_the_claim(world):
    config, runs = world
    doc = {"margins": {"test_accuracy": 0.5},
           "claims": [dict(id="a", text="t", study="activation", metric="test_accuracy",
                           kind="greater", left="relu", right="sigmoid"),
                      dict(id="b", text="t", study="activation", metric="test_accuracy",
                           kind="greater", left="relu", right="sigmoid", margin="1%")]}
    _, claims = parse_claims(doc)
    assert claims[0].margin == 0.5 and claims[1].margin == "1%"
    wide, narrow = evaluate_claims(claims, config, runs)
    assert wide.verdict == "equivalent"  # a 20-point gain inside a 50-point margin: trivial
    assert narrow.verdict == "supported"
    with pytest.raises(SpecError, match=r"claims\.a\.margin"):
        parse_claims({"claims": [{**doc["claims"][0], "margin": -1}]})
    with pytest.raises(SpecError, match="margins"):
        parse_claims({"margins": [1], "claims": []})


def test_forest_plot_draws_each_problem_with_its_verdict():
    from nnopt.report.figures import forest_plot

    rows = [{"problem": "mnist1d-mlp", "effect": 2.0, "ci_low": 1.0, "ci_high": 3.0,
             "verdict": "supported"},
            {"problem": "digits-mlp", "effect": -0.2, "ci_low": -0.5, "ci_high": 0.1,
             "verdict": "equivalent"},
            {"problem": "censored", "effect": None, "ci_low": None, "ci_high": None,
             "verdict": "inconclusive"}]
    svg = forest_plot(rows, margin=1.0, xlabel="difference in accuracy (%)")
    assert svg.startswith("<svg") and "mnist1d-mlp (supported)" in svg
    assert "digits-mlp (equivalent)" in svg and "censored" not in svg
    assert forest_plot(rows[2:]) is None


def test_report_claim_view_shows_each_problem_and_a_forest_plot(world):
    import polars as pl

    from nnopt.report.build import _claim_view

    config, runs = world
    both = pl.concat([runs.with_columns(problem=pl.lit(p)) for p in ("mnist1d-mlp", "digits-mlp")])
    res = evaluate_claims(_claims(dict(study="activation", metric="test_accuracy",
                                       kind="greater", left="relu", right="sigmoid")),
                          config, both)[0]
    view = _claim_view(res)
    assert [p["problem"] for p in view["problems"]] == ["mnist1d-mlp", "digits-mlp"]
    assert view["summary"] == "holds on 2 of 2 problems" and view["counts"] == "n 16, n_used 16"
    assert view["forest"].startswith("<svg") and "digits-mlp (supported)" in view["forest"]
    single = _claim_view(evaluate_claims(_claims(dict(
        study="activation", metric="test_accuracy", kind="greater", left="relu",
        right="sigmoid")), config, runs)[0])
    assert single["problems"] == [] and single["forest"] is None


def test_tables_written_before_n_classes_existed_still_judge(world):
    config, runs = world
    old = runs.drop("n_classes")
    res = evaluate_claims(_claims(dict(study="activation", metric="test_accuracy",
                                       kind="greater", left="relu", right="tanh")), config, old)
    assert res[0].tests[0]["n_used"] == 6  # tanh's 2 diverged runs: chance unknown, left out


def test_a_significant_difference_below_the_margin_does_not_support():
    from nnopt.analysis import inference

    rng = np.random.default_rng(4)
    b = rng.normal(0.80, 0.001, 8)
    a = b + 0.004 + rng.normal(0, 0.0005, 8)  # 0.4 points, clearly significant, below 1 point
    r = inference.two_sample(a, b, metric="test_accuracy", seeds_a=range(8), seeds_b=range(8))
    assert r.p < 1e-6 and r.margin == 0.01
    verdict, _ = inference.decide(r, want=1, p_adjusted=r.p, p_tost_adjusted=r.p_tost,
                                  alpha=0.05, family_size=1)
    assert verdict == "equivalent"
    wider = inference.two_sample(a, b, metric="test_accuracy", seeds_a=range(8),
                                 seeds_b=range(8), margin=0.002)
    assert inference.decide(wider, want=1, p_adjusted=wider.p, p_tost_adjusted=wider.p_tost,
                            alpha=0.05, family_size=1)[0] == "supported"
