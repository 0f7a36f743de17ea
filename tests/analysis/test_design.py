"""nnopt.analysis.design: identical configurations, unreachable α, optima on a sweep edge."""

import polars as pl

from fixtures.make_runs import make_runs
from nnopt.analysis import aggregate as ag
from nnopt.analysis.claims import parse_claims
from nnopt.analysis.design import design_flags, edge_optima, identical_configurations
from nnopt.config.studies import parse_config

CONFIG = {
    "defaults": {"data": {"name": "mnist1d"}, "budget": {"epochs": 2}},
    "seeds": 5,
    "studies": [
        {"name": "optimizers", "grid": {"optimizer.name": ["sgd", "adam", "adamw", "momentum"]},
         "metrics": ["test_accuracy"]},
        {"name": "lr", "grid": {"optimizer.lr": [0.001, 0.01, 0.1]},
         "base": {"evaluation": {"target_val_accuracy": 0.5}},
         "metrics": ["test_accuracy", "epochs_to_target"]},
    ],
}


def test_adamw_without_decay_is_flagged_identical_to_adam():
    config = parse_config(CONFIG)
    assert identical_configurations(config.study("optimizers")) == [
        ("optimizer.name=adam", "optimizer.name=adamw")]
    momentum_zero = {**CONFIG, "studies": [
        {"name": "m", "grid": {"optimizer.name": ["sgd", "momentum"]},
         "base": {"optimizer": {"momentum": 0.0}}, "metrics": ["test_accuracy"]}]}
    assert len(identical_configurations(parse_config(momentum_zero).study("m"))) == 1
    assert identical_configurations(config.study("lr")) == []


def test_tuned_configurations_differ_by_their_ranges_and_count_confirmation_seeds():
    own = {"optimizer.name=adam": {"optimizer.lr": {"log_uniform": [0.001, 0.1]}},
           "optimizer.name=adamw": {"optimizer.lr": {"log_uniform": [0.001, 0.1]},
                                    "regularization.weight_decay": {"log_uniform": [0.01, 1.0]}}}
    tuned = {**CONFIG, "seeds": 1, "studies": [
        {"name": "t", "grid": {"optimizer.name": ["adam", "adamw"]}, "metrics": ["test_accuracy"],
         "tune": {"params_by_config": own, "trials": 4, "confirm_seeds": 3}}]}  # fmt: skip
    config = parse_config(tuned)
    assert identical_configurations(config.study("t")) == []  # AdamW's decay is tuned
    same = {label: {"optimizer.lr": {"log_uniform": [0.001, 0.1]}} for label in own}
    tuned["studies"][0]["tune"]["params_by_config"] = same
    assert len(identical_configurations(parse_config(tuned).study("t"))) == 1
    _, claims = parse_claims({"claims": [dict(id="fast", text="t", study="t", kind="less",
                                              metric="epochs_to_target", left="adam", right="adamw")]})
    flags = [f.message for f in design_flags(config, claims) if f.kind == "alpha"]
    assert len(flags) == 1 and "over 3 seeds" in flags[0]  # the confirmation seeds, not 1


def test_a_comparison_that_cannot_reach_alpha_with_its_seeds_is_flagged():
    config = parse_config(CONFIG)
    _, claims = parse_claims({"claims": [
        dict(id="fast", text="t", study="lr", metric="epochs_to_target", kind="less",
             left=0.1, right=0.001),
        dict(id="acc", text="t", study="lr", metric="test_accuracy", kind="greater",
             left=0.1, right=0.001),
        dict(id="div", text="t", study="lr", kind="diverges", left=0.1, right=0.001)]})
    flags = [f for f in design_flags(config, claims) if f.kind == "alpha"]
    text = " ".join(f.message for f in flags)
    # 5 seeds paired: 2/32 = 0.0625 > 0.05 already before Holm over the 3 tests; Fisher's
    # all-vs-none table at 5 vs 5 reaches 2/252 (x 3 < 0.05); a t-test has no floor
    assert [f.message.split(":")[0] for f in flags] == ["fast"]
    assert "0.0625" in text and "Holm over the 3 tests about study lr" in text
    assert "7 seeds would" in text  # 2/2^7 x 3 = 0.047
    three = parse_config({**CONFIG, "seeds": 3})
    flags = [f for f in design_flags(three, claims) if f.kind == "alpha"]
    assert [f.message.split(":")[0] for f in flags] == ["fast", "div"]  # Fisher 3 vs 3: 0.1


def test_an_optimum_on_the_edge_of_its_sweep_is_flagged(tmp_path):
    config = parse_config(CONFIG)
    labels = [r.config for r in config.study("lr").runs]
    rising = {("lr", c): {"test_accuracy": 0.5 + 0.1 * i}
              for i, c in enumerate(dict.fromkeys(labels))}  # lr 0.1 best: top edge
    make_runs(config, tmp_path, means=rising, sd=0.001)
    runs = ag.load_runs(config, tmp_path)
    flags = edge_optima(config.study("lr"), runs)
    assert len(flags) == 1 and "top edge" in flags[0].message and "(0.1)" in flags[0].message
    peaked = {("lr", c): {"test_accuracy": v}
              for c, v in zip(dict.fromkeys(labels), (0.5, 0.8, 0.6))}  # inside the range
    make_runs(config, tmp_path / "peak", means=peaked, sd=0.001)
    assert edge_optima(config.study("lr"), ag.load_runs(config, tmp_path / "peak")) == []
    # per problem: an edge on one problem is flagged for that problem
    two = pl.concat([runs.with_columns(problem=pl.lit("a")),
                     ag.load_runs(config, tmp_path / "peak").with_columns(problem=pl.lit("b"))])
    flags = edge_optima(config.study("lr"), two)
    assert len(flags) == 1 and "problem=a" in flags[0].message


def test_nnopt_check_prints_the_config_time_design_check(tmp_path, capsys):
    import json

    import yaml

    from nnopt import cli

    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    (tmp_path / "k.yaml").write_text(yaml.safe_dump({"claims": [
        dict(id="fast", text="t", study="lr", metric="epochs_to_target", kind="less",
             left=0.1, right=0.001)]}))
    rc = cli.main(["check", "--config", str(tmp_path / "c.json"), "--claims",
                   str(tmp_path / "k.yaml"), "--no-device-check"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[0].startswith("ok:")
    assert any(l.startswith("design: optimizers: optimizer.name=adam and") for l in out)
    assert any(l.startswith("design: lr: fast: a sign-flip") for l in out)


def test_a_zip_study_judges_each_group_on_its_own_sweep(tmp_path):
    # each optimizer at its own rates (zip): sgd swept 3 rates, adam 1, momentum 2
    config = parse_config({**CONFIG, "studies": [{
        "name": "gd", "zip": {"optimizer.name": ["sgd", "sgd", "sgd", "adam", "momentum",
                                                 "momentum"],
                              "optimizer.lr": [0.1, 0.3, 1.0, 0.01, 0.03, 0.1]},
        "metrics": ["test_accuracy"]}]})
    labels = list(dict.fromkeys(r.config for r in config.study("gd").runs))
    # sgd best at 0.3 (inside its own sweep); adam's single 0.01 and momentum's 0.1 would be
    # "bottom"/"inside" edges of the study's whole range 0.01-1.0
    accs = dict(zip(labels, (0.5, 0.7, 0.6, 0.8, 0.5, 0.75)))
    make_runs(config, tmp_path, means={("gd", c): {"test_accuracy": v} for c, v in accs.items()},
              sd=0.001)
    runs = ag.load_runs(config, tmp_path)
    assert edge_optima(config.study("gd"), runs) == []
    # sgd best at its own top rate (1.0): flagged, with sgd's range, not the study's
    accs[labels[2]] = 0.9
    make_runs(config, tmp_path / "top", means={("gd", c): {"test_accuracy": v}
                                               for c, v in accs.items()}, sd=0.001)
    flags = edge_optima(config.study("gd"), ag.load_runs(config, tmp_path / "top"))
    assert [f.message for f in flags] == [
        "the best optimizer.lr by best_val_accuracy (1) is on the top edge of its sweep 0.1–1 "
        "(at optimizer.name=sgd)"]


def test_a_pool_best_claim_over_one_configuration_is_flagged_untuned():
    config = parse_config({**CONFIG, "studies": [{
        "name": "gd", "zip": {"optimizer.name": ["sgd", "sgd", "adam"],
                              "optimizer.lr": [0.1, 0.3, 0.01]},
        "metrics": ["test_accuracy"]}]})
    claim = dict(id="adam-best", text="t", study="gd", metric="test_accuracy", kind="greater",
                 left="adam", right="sgd")
    _, plain = parse_claims({"claims": [claim]})
    _, tuned = parse_claims({"claims": [{**claim, "pool": "best"}]})
    assert [f for f in design_flags(config, plain) if f.kind == "untuned"] == []
    flags = [f for f in design_flags(config, tuned) if f.kind == "untuned"]
    assert [f.message for f in flags] == [
        "adam-best: pool: best has one configuration to choose from for optimizer.name=adam, "
        "so it is not tuned"]


def test_the_alpha_check_sees_a_study_replicated_over_problems():
    # claims name the configured study; its problems' copies ("lr__a", "lr__b") are checked
    problems = {**CONFIG, "problems": {"a": {}, "b": {"base": {"data": {"name": "digits"}}}},
                "studies": [{**CONFIG["studies"][1], "problems": ["a", "b"]}]}
    config = parse_config(problems)
    assert [s.name for s in config.studies] == ["lr__a", "lr__b"]
    _, claims = parse_claims({"claims": [
        dict(id="fast", text="t", study="lr", metric="epochs_to_target", kind="less",
             left=0.1, right=0.001)]})
    flags = [f for f in design_flags(config, claims) if f.kind == "alpha"]
    assert [(f.study, f.message.split(":")[0]) for f in flags] == [("lr", "fast")]


def test_an_optimum_at_the_factors_own_bound_is_no_edge(tmp_path):
    # dropout 0 best: nothing lies below 0, so the sweep did not stop too soon; 0.5 best is a
    # top edge (a higher rate exists)
    config = parse_config({**CONFIG, "studies": [{
        "name": "drop", "grid": {"model.dropout": [0.0, 0.3, 0.5]},
        "metrics": ["test_accuracy"]}]})
    labels = list(dict.fromkeys(r.config for r in config.study("drop").runs))
    falling = {("drop", c): {"test_accuracy": v} for c, v in zip(labels, (0.8, 0.7, 0.6))}
    make_runs(config, tmp_path, means=falling, sd=0.001)
    assert edge_optima(config.study("drop"), ag.load_runs(config, tmp_path)) == []
    rising = {("drop", c): {"test_accuracy": v} for c, v in zip(labels, (0.6, 0.7, 0.8))}
    make_runs(config, tmp_path / "up", means=rising, sd=0.001)
    flags = edge_optima(config.study("drop"), ag.load_runs(config, tmp_path / "up"))
    assert len(flags) == 1 and "top edge" in flags[0].message and "(0.5)" in flags[0].message
