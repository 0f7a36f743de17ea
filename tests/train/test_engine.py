"""The training loop: determinism, divergence, targets, memory accounting, fast path."""

import math
import resource
from pathlib import Path

import numpy as np

import pytest
import torch
import torch.nn.functional as F

from nnopt.train.data import load_dataset
from nnopt.train.engine import Hooks, train
from nnopt.train.models import build_model
from nnopt.store.runs import CURVE_COLUMNS, METRIC_NAMES
from nnopt.config.spec import parse_spec

TIMING = {"train_time_s", "eval_time_s", "wall_time_s", "samples_per_s", "peak_rss_mb",
          "time_to_target_s", "time_to_target_loss_s", "step_time_median_s", "step_time_iqr_s"}
BLOBS = {"name": "blobs", "n_samples": 240, "n_classes": 3, "noise": 0.3}


def _spec(**sections):
    raw = {"data": BLOBS, "model": {"width": 16}, "budget": {"epochs": 4, "batch_size": 16}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(raw)


@pytest.fixture(scope="module")
def blobs():
    return load_dataset(parse_spec({"data": BLOBS}).data)


def _no_timing(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING}


def test_result_has_every_metric_and_curve_column(blobs):
    result = train(_spec(), dataset=blobs)
    assert result.status == "ok" and result.error is None
    assert set(result.metrics) == set(METRIC_NAMES)
    m = result.metrics
    assert m["steps"] == 4 * math.ceil(168 / 16) and m["epochs"] == 4.0
    assert 0 <= m["test_accuracy"] <= 1 and m["samples_per_s"] > 0
    assert m["param_bytes"] == 4 * sum(p.numel() for p in build_model(_spec().model, (2,), 3).parameters())
    assert [row["step"] for row in result.curve] == [0, 11, 22, 33, 44]  # step 0 + every epoch
    for row in result.curve[1:]:
        assert set(CURVE_COLUMNS) <= set(row)
        assert len(row["layer_grad_norms"]) == len(result.layer_names)
        assert math.isclose(row["grad_norm"], math.sqrt(sum(g * g for g in row["layer_grad_norms"])), rel_tol=1e-5)
    assert result.layer_names[0] == "1.weight"


def test_same_spec_same_metrics_bitwise(blobs):
    spec = _spec(model={"dropout": 0.3}, seed=7)
    a, b = train(spec, dataset=blobs), train(spec, dataset=blobs)
    assert _no_timing(a.metrics) == _no_timing(b.metrics)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]  # noqa: E731
    assert strip(a.curve) == strip(b.curve)
    c = train(_spec(model={"dropout": 0.3}, seed=8), dataset=blobs)
    assert _no_timing(c.metrics) != _no_timing(a.metrics)


def test_divergence_is_recorded_not_padded(blobs):
    # Cross-entropy nets often survive lr 1e3 with dead units; heavy momentum does not.
    spec = _spec(optimizer={"name": "momentum", "lr": 1e3}, evaluation={"every_steps": 5})
    result = train(spec, dataset=blobs)
    assert result.status == "diverged"
    assert result.diverged_at_step is not None and result.diverged_at_step % 5 == 0
    assert all(math.isfinite(r["train_loss"]) for r in result.curve)
    assert all(r["step"] < result.diverged_at_step for r in result.curve)
    assert result.metrics["test_accuracy"] is None  # never measured on a finite model
    assert result.metrics["steps"] == result.diverged_at_step


def test_time_to_target_reached_and_not(blobs):
    spec = _spec(evaluation={"target_val_accuracy": 0.6, "target_train_loss": 5.0}, optimizer={"lr": 0.02})
    reached = train(spec, dataset=blobs)
    m = reached.metrics
    first = next(r for r in reached.curve if r["val_accuracy"] >= 0.6)
    assert m["steps_to_target"] == first["step"] and m["epochs_to_target"] == first["step"] / 11
    assert m["time_to_target_s"] == first["train_time_s"]
    assert m["steps_to_target_loss"] == 0  # the untrained model already has loss < 5
    never = train(_spec(evaluation={"target_val_accuracy": 1.0, "target_train_loss": 1e-9},
                        budget={"epochs": 1}), dataset=blobs)
    assert never.metrics["steps_to_target"] is None and never.metrics["time_to_target_s"] is None
    assert never.metrics["epochs_to_target_loss"] is None


@pytest.mark.parametrize("name, factor", [("adam", 2), ("momentum", 1), ("sgd", 0)])
def test_optimizer_state_bytes(blobs, name, factor):
    m = train(_spec(optimizer={"name": name}, budget={"epochs": 1}), dataset=blobs).metrics
    assert m["optimizer_state_bytes"] == factor * m["param_bytes"]


def test_best_val_state_and_early_stopping(blobs):
    result = train(_spec(budget={"epochs": 40}, regularization={"early_stopping_patience": 2},
                         optimizer={"lr": 0.05}), dataset=blobs)
    m = result.metrics
    assert m["steps"] < 40 * 11  # stopped early
    best = max(r["val_accuracy"] for r in result.curve)
    assert m["best_val_accuracy"] == best
    assert m["best_val_step"] == next(r["step"] for r in result.curve if r["val_accuracy"] == best)
    assert m["test_accuracy_at_best_val"] is not None


def test_step_budget_and_eval_cadence(blobs):
    result = train(_spec(budget={"epochs": None, "steps": 25}, evaluation={"every_steps": 10}), dataset=blobs)
    assert [r["step"] for r in result.curve] == [0, 10, 20, 25]
    assert result.metrics["steps"] == 25


def test_grad_clip_bounds_recorded_norm(blobs):
    result = train(_spec(regularization={"grad_clip": 0.01}, budget={"epochs": 1}), dataset=blobs)
    assert result.curve[-1]["grad_norm"] <= 0.01 * (1 + 1e-4)


@pytest.mark.parametrize("extra", [
    {"schedule": {"name": "cosine", "warmup_epochs": 1}},
    {"schedule": {"name": "plateau", "patience": 0}},
    {"regularization": {"l1": 1e-3, "l2": 1e-3, "weight_decay": 0.1}},
    {"model": {"batch_norm": True, "dropout": 0.1, "kind": "cnn1d", "width": 4, "depth": 1}},
    {"device": {"precision": "bf16"}},
])
def test_options_train_to_finite_metrics(blobs, extra):
    result = train(_spec(**extra, budget={"epochs": 2}), dataset=blobs)
    assert result.status == "ok" and math.isfinite(result.metrics["test_loss"])


def test_weight_decay_shrinks_weights(blobs):
    plain = train(_spec(), dataset=blobs).metrics["weight_norm"]
    decayed = train(_spec(regularization={"weight_decay": 5.0}, optimizer={"lr": 0.01}), dataset=blobs).metrics
    assert decayed["weight_norm"] < 0.5 * plain


def test_fast_loop_matches_plain_reference(blobs):
    """The engine (preloaded tensors, index slicing, fused SGD) against an obvious loop."""
    spec = _spec(optimizer={"name": "momentum", "lr": 0.05}, model={"dropout": 0.2}, seed=3,
                 budget={"epochs": 3, "batch_size": 32}, evaluation={"every_steps": 4})
    final = {}
    keep = lambda model: final.update({k: v.clone() for k, v in model.state_dict().items()})  # noqa: E731
    train(spec, dataset=blobs, hooks=Hooks(on_train_end=keep))

    torch.manual_seed(3)
    model = build_model(spec.model, blobs.input_shape, blobs.n_classes, spec.init)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, foreach=False)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.from_numpy(blobs.x_train), torch.from_numpy(blobs.y_train)
    for _ in range(3):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 32):
            idx = perm[start : start + 32]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6)


def test_learns_mnist1d():
    spec = parse_spec({"data": {"name": "mnist1d", "n_samples": 2000}, "budget": {"epochs": 10},
                       "optimizer": {"lr": 3e-3}})
    assert train(spec).metrics["test_accuracy"] > 0.35  # chance is 0.1


def test_learns_digits():
    spec = parse_spec({"data": {"name": "digits"}, "budget": {"epochs": 5}})
    assert train(spec).metrics["test_accuracy"] > 0.85


def test_without_validation_data():
    spec = _spec(data={"val_fraction": 0.0}, evaluation={"target_val_accuracy": 0.5})
    result = train(spec)
    m = result.metrics
    assert result.status == "ok" and m["test_accuracy"] is not None
    assert m["best_val_accuracy"] is None and m["test_accuracy_at_best_val"] is None
    assert m["steps_to_target"] is None and result.curve[-1]["val_accuracy"] is None


def test_l1_makes_weights_sparser(blobs):
    plain = train(_spec(optimizer={"lr": 0.01}), dataset=blobs).metrics["weight_sparsity"]
    l1 = train(_spec(optimizer={"lr": 0.01}, regularization={"l1": 0.05}), dataset=blobs).metrics
    assert l1["weight_sparsity"] > plain


def test_cnn2d_trains_on_images(tmp_path):
    from nnopt.train.data import Dataset

    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 1, 6, 6)).astype(np.float32) + y[:, None, None, None]  # separable
    ds = Dataset(x[:60], y[:60], x[60:75], y[60:75], x[75:], y[75:], n_classes=3, input_shape=(1, 6, 6))
    spec = parse_spec({"data": {"name": "torchvision", "path": str(tmp_path), "torchvision_name": "X"},
                       "model": {"kind": "cnn2d", "width": 4, "depth": 1, "kernel_size": 3},
                       "budget": {"epochs": 5, "batch_size": 16}, "optimizer": {"lr": 0.01}})
    result = train(spec, dataset=ds)
    assert result.status == "ok" and result.metrics["test_accuracy"] > 0.6


def test_schedule_drives_recorded_lr(blobs):
    result = train(_spec(schedule={"name": "exponential", "gamma": 0.5}, optimizer={"lr": 0.1}), dataset=blobs)
    # lr recorded after each epoch's last step: the lr the next epoch will use
    assert [r["lr"] for r in result.curve] == pytest.approx([0.1 * 0.5**e for e in range(5)])
    assert result.metrics["final_lr"] == pytest.approx(0.1 * 0.5**4)


def test_eval_batch_shrinks_for_wide_conv_nets(tmp_path):
    from nnopt.train.engine import EVAL_BATCH, eval_batch_size

    assert eval_batch_size(_spec(), (2,)) == EVAL_BATCH
    images = {"name": "torchvision", "path": str(tmp_path), "torchvision_name": "CIFAR10"}
    wide = _spec(data=images, model={"kind": "cnn2d", "width": 128})
    assert eval_batch_size(wide, (3, 32, 32)) * 128 * 32 * 32 <= 2**26  # <= 256 MB per layer


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_rss_is_the_runs_own_not_an_earlier_runs_of_the_process(blobs):
    """Runs packed into one process: a small run after a 400 MB spike reports its own peak."""
    first = train(_spec(), dataset=blobs).metrics["peak_rss_mb"]
    spike = np.ones(400 * 2**20 // 8)  # 400 MB resident: the process peak is now above it
    peak_with_spike = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del spike
    after = train(_spec(), dataset=blobs).metrics["peak_rss_mb"]
    assert peak_with_spike > first + 350
    assert after < peak_with_spike - 300
    assert abs(after - first) < 100  # the same small run, the same resident torch and data


@pytest.mark.parametrize("activation, saves_input_too", [("relu", False), ("sigmoid", False), ("gelu", True)])
def test_activation_peak_equals_the_saved_tensors_by_hand(blobs, activation, saves_input_too):
    """MLP 2 -> 16 -> 3, batch 16, fp32. Autograd saves, per step: the batch (first Linear's
    input, b×2), the hidden activation (b×16: the second Linear's input, which is also what
    ReLU/sigmoid save, their output), GELU additionally its input (b×16 pre-activation),
    log_softmax's output (b×3), nll_loss's int64 targets (b) and total weight (a float).
    Weights are saved too (for the input gradient) but are parameters, not counted."""
    b, d, w, c = 16, 2, 16, 3
    spec = _spec(model={"width": w, "depth": 1, "activation": activation}, budget={"epochs": 1, "batch_size": b})
    m = train(spec, dataset=blobs).metrics
    hidden = 4 * b * w
    expected = 4 * b * d + hidden * (2 if saves_input_too else 1) + 4 * b * c + 8 * b + 4
    assert m["activation_peak_bytes"] == expected
    assert m["grad_bytes"] == m["param_bytes"] == 4 * m["n_params"] == 4 * (d * w + w + w * c + c)
    assert m["train_step_memory_bytes"] == (
        m["param_bytes"] + m["grad_bytes"] + m["optimizer_state_bytes"] + m["activation_peak_bytes"])


def test_step_time_is_a_median_after_warm_up(blobs):
    from nnopt.train.loop import WARMUP_STEPS
    from nnopt.train.strategy import step_time_stats

    assert step_time_stats([]) == (None, None)
    assert step_time_stats([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 2.0)  # the outlier barely moves it
    short = train(_spec(budget={"epochs": None, "steps": WARMUP_STEPS}), dataset=blobs).metrics
    assert short["step_time_median_s"] is None and short["step_time_iqr_s"] is None
    long = train(_spec(budget={"epochs": None, "steps": 60}), dataset=blobs).metrics
    assert 0 < long["step_time_median_s"] < long["train_time_s"] / 10
    assert long["step_time_iqr_s"] >= 0


def test_setup_facts(blobs):
    m = train(_spec(budget={"epochs": 1}), dataset=blobs).metrics
    assert (m["n_train"], m["n_val"], m["n_test"]) == (len(blobs.y_train), len(blobs.y_val), len(blobs.y_test))
    assert m["n_train"] + m["n_val"] + m["n_test"] == 240 and m["n_classes"] == 3
    assert m["n_params"] == sum(p.numel() for p in build_model(_spec().model, (2,), 3).parameters())


def test_runner_import_stays_torch_free():
    """A job imports the runner before it knows whether it trains (finished runs are skipped)."""
    import subprocess
    import sys

    code = "import sys, nnopt.train.runner; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_snapshots_are_the_weights_at_each_evaluation(blobs):
    final = {}
    keep = lambda model: final.update(flat=torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())  # noqa: E731
    spec = _spec(checkpoint={"snapshots": True}, evaluation={"every_steps": 10})
    result = train(spec, dataset=blobs, hooks=Hooks(on_train_end=keep))
    saved = torch.load(__import__("io").BytesIO(result.files["snapshots.pt"]), weights_only=True)
    assert saved["steps"].tolist() == [r["step"] for r in result.curve]
    assert torch.equal(saved["weights"][-1], final["flat"])
    assert saved["final_train_loss"] == result.metrics["final_train_loss"]
    assert "snapshots.pt" not in train(_spec(), dataset=blobs).files
