"""The landscape's fast paths against their references: K points per batched pass
(nnopt.landscape.batched) against one point at a time, the Hessian of a conv net, and the
cohort engine's weight snapshots (so a landscape of a cohort member needs no re-training)."""

from __future__ import annotations

import io
import math

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnopt.config.spec import merge, parse_spec
from nnopt.landscape import surface as ls
from nnopt.landscape.batched import (
    make_batched_evaluator,
    points_per_pass,
    with_fallback,
)
from nnopt.train.cohort import train_cohort
from nnopt.train.data import Dataset
from nnopt.train.engine import train
from nnopt.train.strategy import SNAPSHOTS_NAME


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5),
                         nn.Linear(8, 3))  # fmt: skip


def _cnn(batch_norm: bool = True) -> nn.Module:
    """Two strided convs, as the MNIST-1D CNN: the second one's weight has a non-contiguous
    second derivative."""
    torch.manual_seed(0)
    norm = [nn.BatchNorm1d(4)] if batch_norm else []
    return nn.Sequential(nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 4, 3, stride=2, padding=1),
                         *norm, nn.Tanh(), nn.Conv1d(4, 4, 3, stride=2, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(8, 3))  # fmt: skip


def _splits(n_train: int = 50, n_val: int = 20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_train + n_val, 6, generator=g)
    y = torch.randint(0, 3, (n_train + n_val,), generator=g)
    return {"train": (x[:n_train], y[:n_train]), "val": (x[n_train:], y[n_train:])}


@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp-bn-dropout", "cnn-bn"])
def test_batched_points_equal_the_one_at_a_time_reference(build):
    model, splits = build(), _splits()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    center = ls.flat_params(model)
    g = torch.Generator().manual_seed(2)
    thetas = center + 0.5 * torch.randn(7, center.numel(), generator=g)
    thetas[3] = float("inf")  # a diverged point: NaN losses, the others unaffected
    # chunk 16 < 50 samples: batch norm normalizes each chunk on its own in both paths;
    # 3 points per pass: 7 points take three passes, the last one short.
    reference = ls.make_evaluator(model, splits, F.cross_entropy, chunk_size=16)(thetas)
    batched = make_batched_evaluator(model, splits, F.cross_entropy, chunk_size=16,
                                     max_points=3)(thetas)  # fmt: skip
    assert len(batched) == len(reference) == 7
    for ref, fast in zip(reference, batched):
        assert fast.keys() == ref.keys() == {"train_loss", "val_loss"}
        for key in ref:
            if math.isnan(ref[key]):
                assert math.isnan(fast[key])
            else:
                assert fast[key] == pytest.approx(ref[key], rel=1e-5)
    assert math.isnan(batched[3]["train_loss"]) and math.isfinite(batched[2]["train_loss"])
    for name, buf in model.named_buffers():  # batch norm's running statistics untouched
        assert torch.equal(buf, buffers[name]), name


def test_points_per_pass_keeps_one_pass_under_the_memory_budget():
    model, (x, _) = _mlp(), _splits()["train"]
    # Leaf outputs per sample: 8 + 8 + 8 + 8 + 3 = 35 floats; 50 samples; 4 bytes each.
    per_point = 35 * 50 * 4
    assert points_per_pass(model, x, 2048, 64, budget_bytes=10 * per_point) == 10
    assert points_per_pass(model, x, 2048, 64, budget_bytes=10**9) == 64
    assert points_per_pass(model, x, 2048, 64, budget_bytes=1) == 1
    assert points_per_pass(model, x, 25, 64, budget_bytes=10 * per_point) == 20  # chunks


def test_a_model_vmap_refuses_falls_back_to_the_reference(capsys):
    calls = []

    def fast(thetas):
        raise RuntimeError("vmap: unsupported op")

    def reference(thetas):
        calls.append(len(thetas))
        return [{"train_loss": 1.0}] * len(thetas)

    evaluate = with_fallback(fast, reference)
    assert evaluate(torch.zeros(2, 3)) == [{"train_loss": 1.0}] * 2
    assert evaluate(torch.zeros(1, 3)) == [{"train_loss": 1.0}]
    assert calls == [2, 1]
    assert capsys.readouterr().err.count("one point at a time") == 1


def test_hessian_vector_products_of_a_conv_net_match_its_full_hessian():
    """A conv weight's gradient is not contiguous: flattening it used to fail (the
    activation study's CNN landscapes all raised)."""
    model = _cnn(batch_norm=False).double()
    x, y = (t.double() if t.is_floating_point() else t for t in _splits()["train"])
    center = ls.flat_params(model)
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat):
        parts, start = {}, 0
        for (name, _), shape in zip(model.named_parameters(), shapes):
            parts[name] = flat[start : start + math.prod(shape)].view(shape)
            start += math.prod(shape)
        return F.cross_entropy(torch.func.functional_call(model, parts, (x,)), y)

    full = torch.autograd.functional.hessian(loss_of, center)  # (P, P)
    v = torch.randn(center.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hv = ls.hessian_vector_product(model, x, y, F.cross_entropy, v)
    np.testing.assert_allclose(hv.numpy(), (full @ v).numpy(), rtol=1e-8, atol=1e-10)


def _dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    return Dataset(x[:250], y[:250], x[250:330], y[250:330], x[330:], y[330:], 3, (12,))


def test_cohort_members_write_the_snapshots_the_single_engine_writes():
    base = {"model": {"depth": 2, "width": 16}, "budget": {"steps": 60, "batch_size": 25},
            "evaluation": {"every_steps": 20}, "checkpoint": {"snapshots": True}}  # fmt: skip
    specs = [parse_spec(merge(base, {"seed": k, "optimizer": {"lr": lr}}))
             for k, lr in enumerate((0.003, 0.01))]  # fmt: skip
    data = _dataset()
    members = train_cohort(specs, dataset=data, cohort_id="t")
    for spec, member in zip(specs, members):
        single = train(spec, dataset=data)
        mine = torch.load(io.BytesIO(member.files[SNAPSHOTS_NAME]), weights_only=True)
        alone = torch.load(io.BytesIO(single.files[SNAPSHOTS_NAME]), weights_only=True)
        assert mine["steps"].tolist() == alone["steps"].tolist() == [0, 20, 40, 60]
        assert mine["weights"].shape == alone["weights"].shape
        np.testing.assert_allclose(mine["weights"].numpy(), alone["weights"].numpy(),
                                   rtol=1e-4, atol=1e-6)  # fmt: skip
        assert mine["final_train_loss"] == member.metrics["final_train_loss"]
        assert mine["final_train_loss"] == pytest.approx(alone["final_train_loss"], rel=1e-5)


def test_a_study_landscape_reads_its_own_run_folders_without_the_aggregate(tmp_path, capsys):
    """The workflow's landscape job starts when its study's batches are done: with --plan (or
    --config) and no --runs-table it reads the study's run folders and picks, per
    configuration, the seed of highest best_val_accuracy."""
    import json

    import yaml

    from nnopt.cli.main import main
    from nnopt.config.studies import parse_config
    from nnopt.train.runner import run_one

    raw = {"defaults": {"data": {"name": "blobs", "n_samples": 200},
                        "model": {"depth": 1, "width": 4}, "budget": {"epochs": 2}},
           "seeds": 2, "landscape": {"grid_points": 3, "alpha_points": 3, "hessian_iters": 3},
           "studies": [{"name": "s", "grid": {"optimizer.lr": [0.01, 0.1]}},
                       {"name": "other", "grid": {"optimizer.lr": [0.05]}}]}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    config = parse_config(raw)
    ranked: dict[str, list[tuple]] = {}  # config -> [(-best acc, final val loss, seed, id)]
    for r in config.study("s").runs:
        run_dir = tmp_path / "runs" / "s" / r.run_id
        run_one(r.spec, run_dir, study="s", factors=dict(r.factors))
        m = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        ranked.setdefault(r.config, []).append(
            (-m["best_val_accuracy"], m["final_val_loss"], r.spec.seed, r.run_id))
    assert len(ranked) == 2 and all(len(v) == 2 for v in ranked.values())
    args = ["landscape", "--study", "s", "--config", str(tmp_path / "config.yaml"),
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    chosen = pl.read_parquet(tmp_path / "out" / "sharpness.parquet")["run_id"].to_list()
    assert sorted(chosen) == sorted(min(v)[-1] for v in ranked.values())
    assert main([*args[:2], "nope", *args[3:]]) == 2
    err = capsys.readouterr().err
    assert "--study nope: not a study of" in err and len(err.strip().splitlines()) == 1


def test_points_per_pass_picks_the_batched_path_and_leaves_the_results_key_alone(capsys):
    from nnopt.landscape.batches import Problem, make_evaluator
    from nnopt.landscape.tables import LandscapeSettings

    problem = Problem(_mlp(), _splits(), F.cross_entropy)
    center = ls.flat_params(problem.model)
    thetas = center + 0.3 * torch.randn(5, center.numel(), generator=torch.Generator().manual_seed(4))
    batched, one_at_a_time = LandscapeSettings(points_per_pass=4), LandscapeSettings()
    assert one_at_a_time.points_per_pass == 1 and batched.key == one_at_a_time.key
    fast = make_evaluator(problem, batched)(thetas)
    slow = make_evaluator(problem, one_at_a_time)(thetas)
    for a, b in zip(fast, slow):
        assert a == pytest.approx(b, rel=1e-5)
    assert "one point at a time" not in capsys.readouterr().err  # vmap ran, no fallback
