"""Data-parallel runs: world size 2 against 1, failing ranks, the store's port, the checks.

Ranks are forked from a forkserver that imports torch once per test process (~2-4 s, paid by
the first test that trains with world size 2); each later world-size-2 run starts in ~0.2 s.
"""

import math
import socket
import subprocess
import sys
import threading

import pytest
import torch

from nnopt.train.data import load_dataset
from nnopt.train.distributed import TIMEOUT_ENV, check_shards, check_world_size, rank_threads
from nnopt.train.launch import FAIL_ENV, RankError, open_store
from nnopt.train.engine import Hooks, train
from nnopt.store.runs import read_run
from nnopt.train.runner import run_one
from nnopt.config.spec import SpecError, parse_spec

# 169 train samples: the last global batch of 16 holds 9, split 5 / 4 over two ranks, so
# the uneven-shard loss scaling is exercised every epoch.
BLOBS = {"name": "blobs", "n_samples": 241, "n_classes": 3, "noise": 0.3}


def _spec(world_size: int, **sections):
    raw = {
        "data": BLOBS,
        "model": {"width": 16, "depth": 2},  # no dropout, no batch norm: exact comparison
        "optimizer": {"name": "adam", "lr": 0.02},
        "budget": {"epochs": 3, "batch_size": 16},
        "device": {"world_size": world_size},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_spec(raw)


@pytest.fixture(scope="module")
def blobs():
    return load_dataset(_spec(1).data)


def _bounded(fn, seconds: float = 120.0):
    """Run fn in a thread; fail (instead of hanging the suite) if it has not returned."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} s: a hang"
    if "error" in box:
        raise box["error"]
    return box["value"]


# Plateau lr cuts and early stopping are decided on every rank from rank 0's numbers: if the
# ranks disagreed, one would stop or change its lr alone and the comparison would fail.
STEERED = {
    "optimizer": {"lr": 0.05},
    "schedule": {"name": "plateau", "patience": 0, "factor": 0.5},
    "regularization": {"early_stopping_patience": 4},
    "budget": {"epochs": 8},
    "evaluation": {"every_steps": 4},
}


def test_world_size_2_matches_world_size_1(blobs, tmp_path):
    assert len(blobs.y_train) % 16 % 2 == 1  # an uneven last shard, as promised above
    one = train(_spec(1, **STEERED), dataset=blobs)
    rows = []
    out = tmp_path / "ws2"
    spec = _spec(2, **STEERED)
    status = _bounded(lambda: run_one(spec, out, hooks=Hooks(progress=rows.append)))
    assert status == "ok"
    two = read_run(out)  # written by the calling process from rank 0's result
    m1, m2 = one.metrics, two["metrics"]
    assert m1["final_train_loss"] < one.curve[0]["train_loss"] - 0.3  # it learned something
    assert abs(m1["final_train_loss"] - m2["final_train_loss"]) < 1e-5
    assert abs(m1["final_val_loss"] - m2["final_val_loss"]) < 1e-5
    assert abs(m1["test_accuracy"] - m2["test_accuracy"]) <= 1 / len(blobs.y_test)
    assert m1["steps"] == m2["steps"] < 8 * math.ceil(169 / 16)  # stopped early, together
    assert m1["final_lr"] == m2["final_lr"] < 0.05  # the plateau schedule cut the lr
    assert m1["best_val_step"] == m2["best_val_step"]
    assert m2["samples_per_s"] > 0 and m2["train_time_s"] > 0  # global samples, rank-0 time
    prov = two["provenance"]
    assert prov["world_size"] == 2 and prov["backend"] == "gloo" and prov["threads"] == 1
    assert prov["launch_time_s"] >= m2["train_time_s"]
    # rank 0's progress reached the caller's hook, one row per evaluation point
    assert [r["step"] for r in rows] == [r["step"] for r in one.curve]
    assert abs(rows[-1]["train_loss"] - m2["final_train_loss"]) < 1e-12


def test_world_size_4_matches_too(blobs):
    # 4 ranks on 2 cores: slower, same updates (shards of 4; last batch of 9 -> 3, 2, 2, 2)
    one = train(_spec(1), dataset=blobs)
    four = _bounded(lambda: train(_spec(4), dataset=blobs))
    assert four.provenance["world_size"] == 4
    assert abs(one.metrics["final_train_loss"] - four.metrics["final_train_loss"]) < 1e-5
    assert one.metrics["steps"] == four.metrics["steps"]


def test_interrupted_run_resumes_from_rank_0_checkpoint(blobs, tmp_path):
    class Stop(Exception):
        pass

    def stop(epochs: int) -> None:  # forwarded from rank 0 to this process
        if epochs >= 2:
            raise Stop

    spec = _spec(2, budget={"epochs": 4}, checkpoint={"every_epochs": 1})
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Stop):
        hooks = Hooks(on_epoch_end=stop)
        _bounded(lambda: train(spec, dataset=blobs, checkpoint_dir=ckpt, hooks=hooks))
    assert (ckpt / "ckpt.pt").exists()  # written by rank 0; the ranks were terminated
    resumed = _bounded(lambda: train(spec, dataset=blobs, checkpoint_dir=ckpt))
    reference = train(_spec(1, budget={"epochs": 4}), dataset=blobs)
    assert [r["step"] for r in resumed.curve] == [r["step"] for r in reference.curve]
    assert abs(resumed.metrics["final_train_loss"] - reference.metrics["final_train_loss"]) < 1e-5


def test_rank_that_raises_fails_the_run_with_its_error(blobs, tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1:11")  # rank 1 raises at its first evaluation (step 11)
    out = tmp_path / "run"
    status = _bounded(lambda: run_one(_spec(2), out))
    assert status == "failed"
    record = read_run(out)
    assert record["error"].startswith("RankError: data-parallel run (world_size 2) failed: rank 1:")
    assert "injected failure on rank 1 at step 11" in record["error"]
    assert "injected failure" in record["traceback"]  # the rank's own traceback is kept
    assert record["metrics"]["test_accuracy"] is None


def test_rank_that_dies_ends_the_others(blobs, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "0:11:exit")  # rank 0 vanishes: no message, no result
    with pytest.raises(RankError, match=r"rank 0 died \(exit code 3\)"):
        _bounded(lambda: train(_spec(2), dataset=blobs))


@pytest.mark.slow  # waits out a 3 s collective timeout
def test_hung_rank_hits_the_collective_timeout(blobs, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1:11:hang")
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    with pytest.raises(RankError) as info:
        _bounded(lambda: train(_spec(2), dataset=blobs))
    text = str(info.value)
    assert "rank 0:" in text and "rank 1 still running, terminated" in text


def test_model_hooks_are_refused_before_spawning(blobs):
    with pytest.raises(ValueError, match="hooks.on_train_end / hooks.on_evaluate"):
        train(_spec(2), dataset=blobs, hooks=Hooks(on_evaluate=lambda step, model: None))


def test_store_binds_a_free_loopback_port():
    first, second = open_store(5.0), open_store(5.0)
    assert first.port > 0 and second.port > 0 and first.port != second.port
    with socket.socket() as probe:  # the port is really taken, on loopback
        with pytest.raises(OSError):
            probe.bind(("127.0.0.1", first.port))
    client = torch.distributed.TCPStore("127.0.0.1", first.port, None, False)
    client.set("key", "value")
    assert first.get("key") == b"value"


def test_check_world_size(monkeypatch):
    check_world_size(_spec(4))  # cpu ranks may outnumber the cores
    spec = parse_spec({"device": {"device": "cuda", "world_size": 4}, "budget": {"batch_size": 64}})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="device.device: 'cuda'"):
        check_world_size(spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SpecError, match=r"device.world_size: 4 .* has 2; allowed: 1 to 2"):
        check_world_size(spec)


def test_rank_threads():
    spec = _spec(2, device={"threads": 3})
    assert rank_threads(spec) == 3  # each rank: device.threads
    assert rank_threads(spec, 6) == 3 and rank_threads(spec, 1) == 1  # a job total, split


def test_batch_size_must_split_over_ranks():
    with pytest.raises(SpecError, match="batch_size: 15 must be divisible by device.world_size 2"):
        _spec(2, budget={"batch_size": 15})


def test_batch_norm_shards_of_one_sample_are_refused(blobs):
    spec = _spec(2, model={"batch_norm": True})
    check_shards(spec, 169)  # shards of 8, last batch 9 -> 5 and 4
    check_shards(spec, 161)  # a last batch of 1 sample is dropped (splits.steps_per_epoch)
    with pytest.raises(SpecError, match="model.batch_norm: .* a rank gets a shard of 1 sample"):
        check_shards(spec, 162)  # last batch of 2 samples -> shards of 1 and 1
    with pytest.raises(SpecError, match="shard of 1 sample"):
        check_shards(_spec(4, model={"batch_norm": True}, budget={"batch_size": 4}), 160)
    check_shards(_spec(2), 161)  # without batch norm an empty shard is fine (sum loss 0)


UNGUARDED = """
print("main ran", flush=True)
from nnopt.train.engine import train
from nnopt.config.spec import parse_spec
spec = parse_spec({"data": {"name": "blobs", "n_samples": 120}, "model": {"width": 8},
                   "budget": {"epochs": 1, "batch_size": 16}, "device": {"world_size": 2}})
print("status", train(spec).status, flush=True)
"""


@pytest.mark.slow  # a fresh interpreter and forkserver
def test_ranks_do_not_rerun_an_unguarded_main_script(tmp_path):
    # Snakemake's `script:` runs its file without an `if __name__ == "__main__"` guard.
    script = tmp_path / "job.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["main ran", "status ok"]
