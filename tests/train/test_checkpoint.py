"""Checkpoints: an interrupted run resumes to exactly the uninterrupted result."""

import pytest

from nnopt.train.checkpoint import CHECKPOINT_NAME, checkpoint_dir_for, load_checkpoint, save_checkpoint
from nnopt.train.data import load_dataset
from nnopt.train.engine import Hooks, train
from nnopt.store.runs import read_run
from nnopt.train.runner import run_one
from nnopt.config.spec import parse_spec

TIMING = {"train_time_s", "eval_time_s", "wall_time_s", "samples_per_s", "peak_rss_mb",
          "time_to_target_s", "time_to_target_loss_s", "step_time_median_s", "step_time_iqr_s"}


class Interrupt(Exception):
    pass


def _spec(**extra):
    raw = {
        "data": {"name": "spirals", "n_samples": 200},
        "model": {"width": 16, "dropout": 0.2},  # dropout: the global RNG must be restored
        "optimizer": {"name": "adam", "lr": 0.01},
        "schedule": {"name": "plateau", "patience": 1, "warmup_epochs": 0.5},
        "budget": {"epochs": 6, "batch_size": 32},
        "evaluation": {"every_steps": 4, "target_val_accuracy": 0.6},  # not epoch-aligned
        "checkpoint": {"every_epochs": 1},
        "seed": 1,
        **extra,
    }
    return parse_spec(raw)


@pytest.fixture(scope="module")
def spirals():
    return load_dataset(_spec().data)


def _stop_after(epoch):
    def hook(done):
        if done == epoch:
            raise Interrupt

    return Hooks(on_epoch_end=hook)


def _same(a, b):
    assert {k: v for k, v in a.metrics.items() if k not in TIMING} == {
        k: v for k, v in b.metrics.items() if k not in TIMING
    }
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]  # noqa: E731
    assert strip(a.curve) == strip(b.curve)


def test_resume_gives_identical_metrics(tmp_path, spirals):
    spec = _spec()
    whole = train(spec, dataset=spirals)
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(3))
    state = load_checkpoint(tmp_path)
    assert state["epochs_done"] == 3 and state["run_id"] == spec.run_id
    seen = []
    resumed = train(spec, dataset=spirals, checkpoint_dir=tmp_path,
                    hooks=Hooks(progress=lambda row: seen.append(row["step"])))
    assert min(seen) > 3 * 5  # evaluated only after the 3 epochs (5 steps each) it resumed from
    _same(whole, resumed)


def test_corrupt_checkpoint_warns_and_restarts(tmp_path, spirals):
    spec = _spec()
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(2))
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint"):
        assert load_checkpoint(tmp_path) is None
    with pytest.warns(UserWarning):
        restarted = train(spec, dataset=spirals, checkpoint_dir=tmp_path)
    _same(train(spec, dataset=spirals), restarted)


def test_checkpoint_of_other_run_is_ignored(tmp_path, spirals):
    with pytest.raises(Interrupt):
        train(_spec(seed=2), dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(2))
    _same(train(_spec(), dataset=spirals), train(_spec(), dataset=spirals, checkpoint_dir=tmp_path))


def test_checkpoint_of_an_older_format_warns_and_restarts(tmp_path, spirals):
    spec = _spec()
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(2))
    old = load_checkpoint(tmp_path)
    del old["format"], old["memory"]  # what the engine wrote before TrainState
    save_checkpoint(tmp_path, old)
    with pytest.warns(UserWarning, match="checkpoint format 1"):
        restarted = train(spec, dataset=spirals, checkpoint_dir=tmp_path)
    _same(train(spec, dataset=spirals), restarted)


def test_resumed_state_keeps_the_memory_and_step_times(tmp_path, spirals):
    """Memory is measured at the first step only: a resumed run reports what it measured."""
    spec = _spec()
    whole = train(spec, dataset=spirals).metrics
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(3))
    assert len(load_checkpoint(tmp_path)["step_samples_s"]) == 3 * 5 - 10  # after warm-up
    resumed = train(spec, dataset=spirals, checkpoint_dir=tmp_path).metrics
    for key in ("grad_bytes", "activation_peak_bytes", "train_step_memory_bytes"):
        assert resumed[key] == whole[key] is not None


def test_save_load_roundtrip_and_garbage(tmp_path):
    save_checkpoint(tmp_path, {"step": 3, "curve": [{"a": 1.0, "b": None, "c": [1.0]}]})
    assert load_checkpoint(tmp_path) == {"step": 3, "curve": [{"a": 1.0, "b": None, "c": [1.0]}]}
    assert load_checkpoint(tmp_path / "missing") is None
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="header"):
        assert load_checkpoint(tmp_path) is None


def test_runner_resumes_then_removes_checkpoint(tmp_path, spirals):
    spec = _spec()
    out = tmp_path / "runs" / spec.run_id
    ckpt = checkpoint_dir_for(out)
    assert ckpt == tmp_path / "runs" / f"{spec.run_id}.ckpt"
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=ckpt, hooks=_stop_after(4))
    assert (ckpt / CHECKPOINT_NAME).exists()
    assert run_one(spec, out, study="s") == "ok"
    assert not ckpt.exists()
    whole = train(spec, dataset=spirals)
    recorded = read_run(out)["metrics"]
    assert recorded["test_accuracy"] == whole.metrics["test_accuracy"]
    assert recorded["steps"] == whole.metrics["steps"]


def test_every_seconds_checkpoints_at_epoch_ends(tmp_path, spirals):
    spec = _spec(checkpoint={"every_seconds": 1e-6})
    with pytest.raises(Interrupt):
        train(spec, dataset=spirals, checkpoint_dir=tmp_path, hooks=_stop_after(2))
    assert load_checkpoint(tmp_path)["epochs_done"] == 2
