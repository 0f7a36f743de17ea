"""The planner's cohorts (nnopt.plan.cohorts): who stacks, who trains alone, and job order."""

from nnopt.config.cohort_key import cohort_key, why_single
from nnopt.config.spec import parse_spec
from nnopt.config.studies import parse_config
from nnopt.plan import cohorts, packing

SHIPPED = {"data": {"name": "mnist1d", "n_samples": 600}, "model": {"width": 64},
           "budget": {"epochs": 1}}  # fmt: skip


def config(*studies, defaults=SHIPPED):
    return parse_config({"defaults": defaults, "seeds": 5, "studies": list(studies)})


LR = {"name": "lr", "grid": {"optimizer.lr": [0.001, 0.01]}, "metrics": ["test_accuracy"]}


def test_seeds_and_per_member_values_share_a_cohort_and_shape_does_not():
    a = parse_spec({"seed": 1, "optimizer": {"lr": 0.1, "beta1": 0.8}, "init": {"name": "normal"},
                    "regularization": {"l2": 1e-3}, "model": {"dropout": 0.2}})  # fmt: skip
    b = parse_spec({"seed": 2, "model": {"dropout": 0.5}})
    assert cohort_key(a) == cohort_key(b)
    assert cohort_key(parse_spec({"model": {"width": 32}})) != cohort_key(b)
    assert cohort_key(parse_spec({"optimizer": {"name": "adamw"}})) == cohort_key(parse_spec({}))
    assert cohort_key(parse_spec({"optimizer": {"name": "nadam"}})) is None
    assert "cnn1d" in why_single(parse_spec({"model": {"kind": "cnn1d"}}))


def test_a_small_model_study_trains_its_configurations_as_cohorts():
    batches = packing.plan_batches(config(LR), cores=1)
    stacked = [ids for b in batches for ids in b.cohorts]
    assert sorted(len(c) for c in stacked) == [10]  # one signature: 2 lrs x 5 seeds
    assert not any(b.exclusive for b in batches)
    batch = batches[0]
    items = packing.run_items(batch, "runs")
    assert {i["cohort"] for i in items} == {f"{batch.batch_id}-c0"}


def test_cohorts_keep_every_core_busy():
    batches = packing.plan_batches(config(LR), cores=2)
    assert len(batches) == 2 and all(len(b.cohorts) == 1 for b in batches)


def test_timing_studies_train_single_and_exclusive():
    timing = {**LR, "name": "t", "metrics": ["test_accuracy", "train_time_s"]}
    batches = packing.plan_batches(config(timing), cores=2)
    assert all(b.cohorts == () and b.exclusive for b in batches)
    assert all(i["cohort"] is None for b in batches for i in packing.run_items(b, "runs"))
    assert cohorts.is_timing_study(["step_time_median_s"])


def test_a_study_opts_out_and_wide_models_train_single():
    off = packing.plan_batches(config({**LR, "cohorts": False}), cores=1)
    assert all(b.cohorts == () for b in off)
    wide = packing.plan_batches(config(LR, defaults={**SHIPPED, "model": {"width": 512}}), cores=1)
    assert all(b.cohorts == () for b in wide)  # stacking loses for wide models on CPU
    spec = parse_spec({"model": {"width": 512}})
    assert cohorts.cohort_speedup(spec, 25) < 1 < cohorts.cohort_speedup(parse_spec({}), 25)
    assert cohorts.cohort_speedup(spec, 25, on_gpu=True) > 1
    narrow = parse_spec({"model": {"width": 64}})
    assert cohorts.cohort_speedup(narrow, 25) > cohorts.cohort_speedup(narrow, 5) > 1


def test_the_memory_cap_splits_a_large_cohort_evenly():
    spec = parse_spec({"model": {"width": 64}})
    cap = cohorts.max_cohort_size(spec, memory_mb=2.0)
    assert 1 < cap < 30
    many = config({**LR, "grid": {"optimizer.lr": [0.001 * k for k in range(1, 7)]}})
    units = cohorts.plan_units(many.runs)
    assert sum(len(u) for u in units) == 30
    assert max(len(u) for u in units) <= cohorts.max_cohort_size(many.runs[0].spec)


def test_run_order_inside_a_job_is_a_seeded_shuffle():
    c = parse_config({"defaults": SHIPPED, "seeds": 5, "studies": [{**LR, "cohorts": False}]})
    batch = packing.plan_batches(c, cores=1)[0]
    order = [i["out"] for i in packing.run_items(batch, "runs")]
    assert order == [i["out"] for i in packing.run_items(batch, "runs")]  # deterministic
    assert order != [f"runs/lr/{r.run_id}" for r in batch.runs]  # not config by config
    assert sorted(order) == sorted(f"runs/lr/{r.run_id}" for r in batch.runs)
