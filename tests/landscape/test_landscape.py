"""Loss-landscape math (nnopt.landscape.surface) checked against closed forms and direct evaluation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from nnopt.landscape import surface as ls


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _separable(n: int = 80, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs far apart along a random axis: linearly separable."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.float64)
    axis = rng.normal(size=d)
    x = rng.normal(size=(n, d)) + np.outer(2 * y - 1, 3 * axis / np.linalg.norm(axis))
    return x, y


def _trained_logreg(x: np.ndarray, y: np.ndarray, steps: int = 60):
    """A float64 logistic regression trained by full-batch GD; returns (model, θ0, θ1)."""
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1).double()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    theta0 = ls.flat_params(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        _bce(model(xt), yt).backward()
        opt.step()
    return model, xt, yt, theta0, ls.flat_params(model)


def test_interpolation_on_a_convex_problem_is_convex_and_ends_at_both_losses():
    x, y = _separable()
    model, xt, yt, theta0, theta1 = _trained_logreg(x, y)
    evaluate = ls.make_evaluator(model, {"train": (xt, yt)}, _bce)
    alphas = np.linspace(-0.5, 1.5, 21)
    rows = ls.interpolate_1d(evaluate, theta0, theta1, alphas)
    losses = np.array([r["train_loss"] for r in rows])
    assert [r["alpha"] for r in rows] == pytest.approx(alphas)
    assert np.all(np.diff(losses, 2) >= -1e-10)  # convex along the line
    ls.set_flat_params(model, theta0)
    with torch.no_grad():
        assert rows[5]["train_loss"] == pytest.approx(float(_bce(model(xt), yt)))  # α = 0
    assert rows[15]["train_loss"] < rows[5]["train_loss"]  # training went downhill


@pytest.mark.parametrize("method", ["power", "lobpcg"])
def test_top_and_bottom_hessian_eigenvalues_match_the_closed_form_of_logistic_regression(method):
    x, y = _separable()
    model, xt, yt, _, theta1 = _trained_logreg(x, y)
    # H = X̃ᵀ diag(p(1-p)) X̃ / n with X̃ = [X, 1]; parameters are ordered (weight, bias).
    xb = np.hstack([x, np.ones((len(x), 1))])
    p = 1 / (1 + np.exp(-(xb @ theta1.numpy())))
    hessian = xb.T @ (xb * (p * (1 - p))[:, None]) / len(x)
    exact = np.linalg.eigvalsh(hessian)
    top, bottom = ls.hessian_extreme_eigenvalues(
        model, xt, yt, _bce, iters=500, tol=1e-12, chunk_size=32, method=method
    )
    assert top == pytest.approx(exact[-1], rel=1e-6)
    assert bottom == pytest.approx(exact[0], rel=1e-4, abs=1e-9)


def _full_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The dense (P, P) Hessian of the cross-entropy in the flat parameters (the reference)."""
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, [s.numel() for s in shapes])
        params = {n: t.view(s) for (n, _), t, s in zip(model.named_parameters(), parts, shapes)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, ls.flat_params(model))


def test_hessian_vector_product_matches_the_full_hessian_of_a_small_mlp():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 3, (20,))
    theta = ls.flat_params(model)
    full = _full_hessian(model, x, y)  # (P, P) reference
    v = torch.randn(theta.numel(), dtype=torch.float64)
    hv = ls.hessian_vector_product(model, x, y, nn.functional.cross_entropy, v, chunk_size=7)
    torch.testing.assert_close(hv, full @ v)


def test_lobpcg_finds_both_ends_of_a_small_mlp_hessian_with_few_products():
    """The fast path against the dense spectrum (P = 31 > 5: LOBPCG proper, not its dense
    fallback), with negative curvature present at a random (untrained) point."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(40, 3, dtype=torch.float64), torch.randint(0, 3, (40,))
    exact = torch.linalg.eigvalsh(_full_hessian(model, x, y)).numpy()
    assert exact[0] < -1e-3  # the test needs a saddle-like point
    top, bottom = ls.hessian_extreme_eigenvalues(
        model, x, y, nn.functional.cross_entropy, iters=60, tol=1e-8, method="lobpcg"
    )
    assert top == pytest.approx(exact[-1], rel=1e-6)
    assert bottom == pytest.approx(exact[0], rel=1e-4)
    with pytest.raises(ValueError, match="known: lobpcg, power"):
        ls.hessian_extreme_eigenvalues(model, x, y, nn.functional.cross_entropy, method="qr")


def test_filter_normalization_gives_each_direction_filter_the_weight_filter_norm():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4, 5), nn.BatchNorm1d(5))
    direction = ls.random_direction(model, torch.Generator().manual_seed(0))
    parts = torch.split(direction, [p.numel() for p in model.parameters()])
    for (name, w), d in zip(model.named_parameters(), parts):
        d = d.view(w.shape)
        if w.dim() <= 1:  # biases and BN scale/shift are not perturbed
            assert torch.count_nonzero(d) == 0, name
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))
            assert not torch.allclose(d, w.detach())  # a direction, not the weights themselves


def test_surface_of_a_two_parameter_model_equals_a_direct_grid_evaluation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    y = x @ np.array([1.5, -0.5]) + 0.1 * rng.normal(size=30)
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.4, -0.3]]))

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out.squeeze(-1) - target) ** 2).mean()

    gen = torch.Generator().manual_seed(0)
    d1, d2 = ls.random_direction(model, gen), ls.random_direction(model, gen)
    center = ls.flat_params(model)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-2, 2, 4)
    evaluate = ls.make_evaluator(model, {"train": (torch.from_numpy(x), torch.from_numpy(y))}, mse)
    rows = ls.surface_rows(evaluate, center, d1, d2, xs, ys, range(len(ys)))
    assert len(rows) == 20
    for row in rows:
        w = center.numpy() + row["x"] * d1.numpy() + row["y"] * d2.numpy()
        assert row["train_loss"] == pytest.approx(np.mean((x @ w - y) ** 2), rel=1e-12)


def test_pca_of_a_trajectory_in_a_plane_is_exact():
    gen = torch.Generator().manual_seed(0)
    center = torch.randn(50, generator=gen, dtype=torch.float64)
    u, v = torch.randn(2, 50, generator=gen, dtype=torch.float64)
    ab = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    ab[-1] = 0  # the trajectory ends at the centre (the final weights)
    snapshots = center + ab[:, :1] * u + ab[:, 1:] * v  # (10, 50)
    plane = ls.pca_plane(snapshots, center)
    torch.testing.assert_close(
        plane.directions @ plane.directions.T, torch.eye(2, dtype=torch.float64)
    )
    torch.testing.assert_close(center + plane.coords @ plane.directions, snapshots)
    assert sum(plane.explained_variance_ratio) == pytest.approx(1.0)
    assert plane.coords[0, 0] >= 0 and plane.coords[0, 1] >= 0  # sign convention


def test_landscape_mode_turns_dropout_off_uses_batch_stats_and_restores_state():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)
    )
    model.train()
    running = model[1].running_mean.clone()
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    first = ls.mean_loss(model, x, y, nn.functional.cross_entropy)
    assert ls.mean_loss(model, x, y, nn.functional.cross_entropy) == first  # no dropout noise
    assert model.training and model[3].training
    torch.testing.assert_close(model[1].running_mean, running)
    model.eval()  # eval mode with stale running stats gives a different (running-stat) loss
    with torch.no_grad():
        assert float(nn.functional.cross_entropy(model(x), y)) != pytest.approx(first)


# --- resumable batches and files (nnopt.landscape.job) ----------------------------------------


def _tiny_problem_and_snapshots():
    """A 2-layer MLP trained a few SGD steps on blobs; snapshots every 5 steps."""
    from nnopt.landscape.job import Problem, Snapshots

    torch.manual_seed(0)
    x = torch.randn(96, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    weights, steps = [ls.flat_params(model)], [0]
    for step in range(1, 21):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:64]), y[:64]).backward()
        opt.step()
        if step % 5 == 0:
            weights.append(ls.flat_params(model))
            steps.append(step)
    problem = Problem(
        model, {"train": (x[:64], y[:64]), "val": (x[64:], y[64:])}, nn.functional.cross_entropy
    )
    return problem, Snapshots(torch.stack(weights), tuple(steps))


def test_a_killed_landscape_job_resumes_to_the_one_shot_result(tmp_path):
    from polars.testing import assert_frame_equal

    from nnopt.landscape.job import compute_landscape
    from nnopt.landscape.tables import LANDSCAPE_SCHEMA, parse_settings

    settings = parse_settings(
        {"grid_points": 5, "alpha_points": 9, "rows_per_batch": 2, "hessian_iters": 10}
    )
    problem, snaps = _tiny_problem_and_snapshots()
    frame, summary = compute_landscape(problem, snaps, settings, tmp_path / "one-shot")
    assert frame.schema == LANDSCAPE_SCHEMA
    counts = {k: n for k, n in frame.group_by("kind").len().iter_rows()}
    assert counts == {"interp1d": 9, "trajectory": 2 * 5, "surface2d": 2 * 25}
    work = tmp_path / "resumed"
    assert compute_landscape(problem, snaps, settings, work, max_batches=1) is None  # "killed"
    assert [p.name for p in work.glob("*.parquet")] == ["interp1d.parquet"]
    assert compute_landscape(problem, snaps, settings, work, max_batches=3) is None
    assert len(list(work.glob("surface2d-*.parquet"))) == 2  # rows 0-1 of the random plane
    resumed, resumed_summary = compute_landscape(problem, snaps, settings, work)
    assert_frame_equal(resumed, frame)
    assert resumed_summary == summary
    # The trajectory's own losses are real: the last point is the final weights' loss.
    last = frame.filter((pl.col("kind") == "trajectory") & (pl.col("plane") == "pca")).row(
        -1, named=True
    )
    assert (last["x"], last["y"], last["step"]) == (
        pytest.approx(0, abs=1e-6),
        pytest.approx(0, abs=1e-6),
        20,
    )
    ls.set_flat_params(problem.model, snaps.weights[-1])
    assert last["train_loss"] == pytest.approx(
        ls.mean_loss(problem.model, *problem.splits["train"], nn.functional.cross_entropy)
    )


def test_the_pca_grid_covers_the_trajectory_and_the_random_projection_is_small(tmp_path):
    from nnopt.landscape.job import compute_landscape
    from nnopt.landscape.tables import parse_settings

    problem, snaps = _tiny_problem_and_snapshots()
    frame, summary = compute_landscape(
        problem, snaps, parse_settings({"grid_points": 3, "hessian_iters": 5}), tmp_path
    )
    for plane in ("pca",):
        traj = frame.filter((pl.col("kind") == "trajectory") & (pl.col("plane") == plane))
        grid = frame.filter((pl.col("kind") == "surface2d") & (pl.col("plane") == plane))
        assert grid["x"].min() < traj["x"].min() and traj["x"].max() < grid["x"].max() + 1e-9
        assert grid["y"].min() <= traj["y"].min() and traj["y"].max() <= grid["y"].max() + 1e-9
    assert 0.5 < summary["pca_explained_variance_1"] <= 1.0
    assert summary["hessian_max_eigenvalue"] >= summary["hessian_min_eigenvalue"]


def test_best_seed_selection_and_final_loss_spread_on_a_tiny_table():
    from nnopt.landscape.tables import final_loss_spread, select_landscape_runs

    runs = pl.DataFrame({
        "study": ["s"] * 5 + ["t"],
        "config": ["a", "a", "a", "b", "b", "a"],
        "run_id": ["a0", "a1", "a2", "b0", "b1", "t0"],
        "seed": [0, 1, 2, 0, 1, 0],
        "status": ["ok", "ok", "diverged", "ok", "ok", "ok"],
        "best_val_accuracy": [0.8, 0.9, 0.95, 0.7, 0.7, 0.5],
        "final_val_loss": [0.5, 0.4, None, 0.6, 0.5, 1.0],
        "final_train_loss": [0.3, 0.2, None, 0.5, 0.9, 1.0],
    })  # fmt: skip
    chosen = select_landscape_runs(runs, "s")
    assert chosen.select("config", "run_id").rows() == [
        ("a", "a1"),
        ("b", "b1"),
    ]  # ties → lower val loss
    assert final_loss_spread(runs).filter(pl.col("study") == "t")[
        "final_train_loss_range"
    ].to_list() == [None]
    spread = final_loss_spread(runs).filter(pl.col("study") == "s")
    assert spread["n_seeds"].to_list() == [2, 2]
    assert spread["final_train_loss_range"].to_list() == pytest.approx([0.1, 0.4])
    assert spread["final_train_loss_std"].to_list() == pytest.approx(
        [np.std([0.3, 0.2], ddof=1), np.std([0.5, 0.9], ddof=1)]
    )


def test_settings_validation_names_the_key():
    from nnopt.landscape.tables import parse_settings
    from nnopt.config.spec import SpecError

    with pytest.raises(
        SpecError, match=r"landscape\.grid_point: unknown key.*did you mean 'grid_points'"
    ):
        parse_settings({"grid_point": 5})
    with pytest.raises(SpecError, match=r"landscape\.grid_points: expected an integer >= 2"):
        parse_settings({"grid_points": 1})
    with pytest.raises(SpecError, match=r"landscape\.grid_range: expected a number"):
        parse_settings({"grid_range": "big"})
    with pytest.raises(
        SpecError, match=r"hessian_method: unknown value 'lanczos'; allowed: lobpcg"
    ):
        parse_settings({"hessian_method": "lanczos"})
    with pytest.raises(SpecError, match="alpha_min"):
        parse_settings({"alpha_min": 2.0})
    assert parse_settings({"grid_range": 2}).grid_range == 2.0
    from nnopt.landscape.tables import HESSIAN_METHOD_NAMES

    assert HESSIAN_METHOD_NAMES == tuple(ls.HESSIAN_METHODS)  # torch-free names = registry


def test_landscape_of_a_real_run_reproduces_it_and_resumes_after_a_kill(tmp_path):
    import json

    from polars.testing import assert_frame_equal

    from nnopt.landscape.job import landscape_run
    from nnopt.landscape.tables import parse_settings, read_landscapes, read_sharpness
    from nnopt.train.runner import run_one
    from nnopt.config.spec import parse_spec

    spec = parse_spec({
        "data": {"name": "blobs", "n_samples": 300, "n_classes": 3},
        "model": {"depth": 1, "width": 8, "batch_norm": True},
        "optimizer": {"name": "sgd", "lr": 0.2}, "budget": {"epochs": 3, "batch_size": 32},
    })  # fmt: skip
    run_dir = tmp_path / "runs" / "s" / spec.run_id
    assert run_one(spec, run_dir, study="s", data_cache=tmp_path / "cache") == "ok"
    settings = parse_settings(
        {"grid_points": 4, "alpha_points": 5, "rows_per_batch": 2, "hessian_iters": 5}
    )
    one_shot = landscape_run(run_dir, tmp_path / "a", settings, data_cache=tmp_path / "cache")
    record = json.loads(one_shot.with_suffix(".json").read_text())
    assert record["reproduced"] and record["n_snapshots"] == 4  # steps 0 and 3 epochs
    assert not (tmp_path / "a" / f".{spec.run_id}.parts").exists()  # work dir cleaned up
    out = tmp_path / "b"
    assert (
        landscape_run(run_dir, out, settings, data_cache=tmp_path / "cache", max_batches=1) is None
    )
    assert (out / f".{spec.run_id}.parts" / "snapshots.pt").exists()
    resumed = landscape_run(run_dir, out, settings, data_cache=tmp_path / "cache")
    assert_frame_equal(pl.read_parquet(resumed), pl.read_parquet(one_shot))
    assert read_landscapes(out)["run_id"].unique().to_list() == [spec.run_id]
    assert read_sharpness(out)["hessian_max_eigenvalue"].to_list() == [
        record["hessian_max_eigenvalue"]
    ]
    # Current outputs are reused; a run whose recorded result changed is recomputed.
    assert landscape_run(run_dir, out, settings, max_batches=0) == resumed
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["metrics"]["final_train_loss"] += 1.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    cache = tmp_path / "cache"
    assert landscape_run(run_dir, out, settings, data_cache=cache, max_batches=0) is None


# --- figures and tables (torch-free: nnopt.landscape.figures) ---------------------------------


def _synthetic_landscape() -> pl.DataFrame:
    """A quadratic bowl on both planes, a straight path and a convex interpolation."""
    from nnopt.landscape.tables import LANDSCAPE_SCHEMA

    rows = []
    grid = np.linspace(-1, 1, 5)
    for plane in ("random", "pca"):
        rows += [dict(kind="surface2d", plane=plane, x=x, y=y, train_loss=0.1 + x * x + 2 * y * y, val_loss=0.2)
                 for y in grid for x in grid]  # fmt: skip
    rows += [dict(kind="trajectory", plane="pca", x=1 - t / 4, y=0.5 - t / 8, step=10 * t, train_loss=1.0 - t / 5)
             for t in range(5)]  # fmt: skip
    rows += [dict(kind="interp1d", alpha=a, train_loss=(a - 1) ** 2 + 0.1, val_loss=(a - 1) ** 2 + 0.2)
             for a in np.linspace(-0.5, 1.5, 9)]  # fmt: skip
    return pl.DataFrame(
        [{**dict.fromkeys(LANDSCAPE_SCHEMA), **r} for r in rows], schema=LANDSCAPE_SCHEMA
    )


def test_contour_and_interpolation_figures_are_svg_with_their_labels():
    from nnopt.landscape.figures import contour_svg, interpolation_svg

    frame = _synthetic_landscape()
    svg = contour_svg(
        frame, {"pca_explained_variance_1": 0.8, "pca_explained_variance_2": 0.15}, "study: cfg=1"
    )
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for text in (
        "study: cfg=1",
        "1st PC (80%)",
        "2nd PC (15%)",
        "training path",
        "random directions",
    ):
        assert text in svg
    two = interpolation_svg([("relu", frame.filter(pl.col("kind") == "interp1d"))] * 2, "interp")
    assert "relu" in two and "interp" in two
    ids = [i for i in __import__("re").findall(r'id="([^"]+)"', svg)]
    assert ids and len({i.split("-")[0] for i in ids}) == 1  # one per-figure id prefix


def test_gradient_heatmaps_pick_one_finished_run_per_configuration_and_keep_weight_layers():
    from nnopt.landscape.figures import gradient_heatmap_runs, gradient_heatmap_svg, weight_rows
    from nnopt.landscape.gradients import _norm_matrix

    runs = pl.DataFrame({
        "study": ["s"] * 4, "config": ["a", "a", "b", "b"], "config_index": [0, 0, 1, 1],
        "run_id": ["a0", "a1", "b0", "b1"], "seed": [0, 1, 0, 1],
        "status": ["failed", "ok", "diverged", "ok"],
    })  # fmt: skip
    assert gradient_heatmap_runs(runs, "s").select("config", "run_id").rows() == [
        ("a", "a1"),
        ("b", "b0"),
    ]
    names = ["1.weight", "1.bias", "3.weight", "3.bias"]
    curve = pl.DataFrame(
        {
            "step": [0, 10, 20],
            "layer_grad_norms": [None, [1e-4, 1.0, 2.0, 1.0], [1e-5, 1.0, 3.0, 1.0]],
        }
    )
    rows = weight_rows(names)  # no model spec: every '*.weight', named as the engine names it
    steps, mat, layers = _norm_matrix(curve, rows)
    assert steps.tolist() == [10, 20] and layers == ["1.weight", "3.weight"]
    np.testing.assert_allclose(mat, [[1e-4, 1e-5], [2.0, 3.0]])
    assert [label for _, label in weight_rows(names, {"depth": 1})] == ["layer 1", "output"]
    svg = gradient_heatmap_svg([("sigmoid", curve, rows), ("relu", curve, rows)], "grads")
    assert "sigmoid" in svg and "relu" in svg and "gradient L2 norm" in svg


def test_report_section_shows_landscapes_table_and_heatmaps_from_result_files(tmp_path):
    import json

    from nnopt.landscape.section import report_section
    from nnopt.config.studies import parse_config

    pytest.importorskip("nnopt.report.figures")
    config = parse_config({"defaults": {"data": {"name": "blobs"}}, "seeds": 2, "studies": [
        {"name": "act", "grid": {"model.activation": ["relu", "tanh"]}, "landscape": True},
        {"name": "opt", "grid": {"optimizer.lr": [0.1]}}]})  # fmt: skip
    # The run folders alone (no runs.parquet: a section renders before the aggregate).
    curve = pl.DataFrame({"step": [5, 10], "layer_grad_norms": [[0.1, 0.2], [0.3, 0.4]]})
    for i, r in enumerate(config.runs):
        (tmp_path / "runs" / r.study / r.run_id).mkdir(parents=True)
        (tmp_path / "runs" / r.study / r.run_id / "metrics.json").write_text(json.dumps({
            "status": "ok", "metrics": {"final_train_loss": 0.1 * (i + 1)},
            "layer_names": ["1.weight", "1.bias"]}))  # fmt: skip
        curve.write_parquet(tmp_path / "runs" / r.study / r.run_id / "curve.parquet")
    chosen = config.study("act").runs[0]
    study_dir = tmp_path / "landscape" / "act"
    study_dir.mkdir(parents=True)
    _synthetic_landscape().write_parquet(study_dir / f"{chosen.run_id}.parquet")
    (study_dir / f"{chosen.run_id}.json").write_text(json.dumps({
        "run_id": chosen.run_id, "study": "act", "config": chosen.config, "seed": 0,
        "hessian_max_eigenvalue": 3.0, "hessian_min_eigenvalue": -0.5, "reproduced": True}))  # fmt: skip
    figs = report_section(config.study("act"), tmp_path)
    keys = [f.key for f in figs]
    assert keys == ["gradient_norms", f"landscape_{chosen.run_id}", "interpolation", "sharpness"]
    assert "No landscape for tanh" in figs[-1].caption  # no run of tanh was chosen
    table = figs[-1].svg
    assert "<td>relu (0)</td><td>3</td><td>-0.5</td>" in table
    assert "<td>0.1 (2)</td>" in table  # the seeds' loss range and their number
    assert report_section(config.study("opt"), tmp_path) == []  # lr only: no heatmaps, no landscape
    tanh = config.study("act").runs[2].config
    (study_dir / "failed.json").write_text(json.dumps([{"config": tanh, "error": "OSError: x"}]))
    caption = report_section(config.study("act"), tmp_path)[-1].caption
    assert "failed for tanh: OSError: x" in caption and "No landscape" not in caption


@pytest.mark.parametrize("kind", ["mlp", "cnn1d"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_weight_rows_pick_exactly_the_linear_and_conv_weights_of_real_models(kind, batch_norm):
    from nnopt.landscape.figures import weight_rows
    from nnopt.train.models import build_model
    from nnopt.config.spec import parse_spec

    spec = parse_spec({"model": {"kind": kind, "depth": 3, "width": 4, "batch_norm": batch_norm}})
    model = build_model(spec.model, (1, 16) if kind == "cnn1d" else (16,), 3, spec.init)
    names = [n for n, _ in model.named_parameters()]
    modules = dict(model.named_modules())
    layers = [n for n in names if isinstance(modules[n.rsplit(".", 1)[0]], (nn.Linear, nn.Conv1d))]
    rows = weight_rows(names, spec.to_dict()["model"])
    assert [names[i] for i, _ in rows] == [n for n in layers if n.endswith("weight")]
    assert rows[-1][1] == "output" and len(rows) == 4


def test_short_labels_keep_what_a_reader_needs():
    from nnopt.landscape.figures import short_label

    assert short_label("model.activation=relu") == "relu"
    assert short_label("model.batch_norm=true, model.depth=8") == "batch_norm=true, depth=8"
    assert short_label("base") == "base"
    assert short_label("init.name=zero, model.activation=tanh") == "init=zero, activation=tanh"


def test_a_heatmap_of_exactly_zero_gradients_says_so_instead_of_failing():
    from nnopt.landscape.figures import gradient_heatmap_svg

    zero = pl.DataFrame({"step": [10, 20], "layer_grad_norms": [[0.0, 0.0], [0.0, 0.0]]})
    svg = gradient_heatmap_svg([("zero init", zero, [(0, "layer 1"), (1, "output")])], "t")
    assert "all weight gradients are exactly 0" in svg


def test_cli_refuses_bad_settings_and_missing_inputs_with_one_line_and_exit_2(tmp_path, capsys):
    from nnopt.cli.main import main

    assert main(["landscape", "--run-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    args = [
        "landscape",
        "--study",
        "s",
        "--runs-table",
        str(tmp_path / "none.parquet"),
        "--out",
        "o",
    ]
    assert main(args) == 2
    assert "run the aggregate step first" in capsys.readouterr().err
    args = ["landscape", "--run-dir", str(tmp_path), "--out", "o", "--set", "grid_points=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "landscape.grid_points: expected an integer >= 2" in err and len(err.splitlines()) == 1


def test_config_validates_the_top_level_landscape_settings():
    from nnopt.config.spec import SpecError
    from nnopt.config.studies import parse_config

    good = parse_config({"landscape": {"grid_points": 5}, "studies": [{"name": "a"}]})
    assert good.raw["landscape"] == {"grid_points": 5}
    with pytest.raises(SpecError, match=r"landscape\.rows_per_batch: .*out of range"):
        parse_config({"landscape": {"rows_per_batch": 0}, "studies": [{"name": "a"}]})


def test_a_failing_landscape_is_recorded_and_the_others_still_finish(tmp_path, capsys):
    import json

    from nnopt.landscape.job import landscape_study
    from nnopt.landscape.tables import parse_settings, read_failures, read_sharpness
    from nnopt.train.runner import run_one
    from nnopt.config.studies import parse_config

    config = parse_config({
        "defaults": {"data": {"name": "blobs", "n_samples": 200}, "model": {"depth": 1, "width": 4},
                     "budget": {"epochs": 2}},
        "studies": [{"name": "s", "grid": {"model.activation": ["relu", "tanh"]}}]})  # fmt: skip
    rows = []
    for r in config.runs:
        run_one(r.spec, tmp_path / "runs" / "s" / r.run_id, study="s", factors=dict(r.factors))
        rows.append({"study": "s", "config": r.config, "run_id": r.run_id, "seed": 0,
                     "status": "ok", "best_val_accuracy": 0.5, "final_val_loss": 1.0})  # fmt: skip
    pl.DataFrame(rows).write_parquet(tmp_path / "runs.parquet")
    broken = tmp_path / "runs" / "s" / config.runs[1].run_id / "metrics.json"
    record = json.loads(broken.read_text())
    record["spec"]["model"]["activation"] = "swish"  # no longer a valid spec
    broken.write_text(json.dumps(record))
    settings = parse_settings({"grid_points": 3, "alpha_points": 3, "hessian_iters": 3})
    out = tmp_path / "landscape" / "s"
    path = landscape_study("s", tmp_path / "runs.parquet", tmp_path / "runs", out, settings)
    assert pl.read_parquet(path)["run_id"].to_list() == [config.runs[0].run_id]
    failures = read_failures(out)
    assert [f["config"] for f in failures] == ["model.activation=tanh"]
    assert "swish" in failures[0]["error"] and "swish" in capsys.readouterr().err
    assert read_sharpness(out).height == 1  # failed.json is not a run's record


def test_landscape_captions_name_configurations_as_the_rest_of_the_report(tmp_path):
    from nnopt.landscape.figures import landscape_section
    from nnopt.landscape.section import report_section
    from nnopt.config.studies import parse_config

    config = parse_config({"seeds": 1, "studies": [{
        "name": "init", "rows": "init.name",
        "grid": {"init.name": ["zero", "normal"], "model.activation": ["tanh"]}}]})
    runs = pl.DataFrame([{"study": r.study, "config": r.config, "run_id": r.run_id,
                          "seed": r.seed, "status": "ok"} for r in config.runs])
    runs.write_parquet(tmp_path / "runs.parquet")
    (tmp_path / "landscape" / "init").mkdir(parents=True)  # landscapes expected, none done
    caption = report_section(config.study("init"), tmp_path)[-1].caption
    assert "No landscape for zero, activation=tanh, normal, activation=tanh" in caption
    # Without the report's labels a panel still gets a short one from the machine label.
    section = landscape_section("init", runs, None, tmp_path / "runs",
                                tmp_path / "landscape" / "init",
                                labels={config.runs[0].config: "zero (tanh)"})
    assert section["missing"] == ["zero (tanh)", "init=normal, activation=tanh"]


def test_landscape_reads_the_trainings_own_snapshots_without_retraining(tmp_path, monkeypatch):
    """checkpoint.snapshots: the run directory holds the weights at every evaluation; the
    landscape equals the one from re-training, and nothing is re-trained."""
    from polars.testing import assert_frame_equal

    from nnopt.config.spec import parse_spec
    from nnopt.landscape import job
    from nnopt.landscape.tables import parse_settings
    from nnopt.train.runner import run_one

    raw = {"data": {"name": "blobs", "n_samples": 300, "n_classes": 3},
           "model": {"depth": 1, "width": 8, "dropout": 0.1},
           "optimizer": {"name": "adam", "lr": 0.02}, "budget": {"epochs": 3, "batch_size": 32}}  # fmt: skip
    plain, snapped = parse_spec(raw), parse_spec({**raw, "checkpoint": {"snapshots": True}})
    assert plain.run_id == snapped.run_id  # how a run is recorded, not what it computes
    cache = tmp_path / "cache"
    settings = parse_settings({"grid_points": 3, "alpha_points": 3, "hessian_iters": 3})
    assert run_one(plain, tmp_path / "plain" / plain.run_id, data_cache=cache) == "ok"
    retrained = job.landscape_run(tmp_path / "plain" / plain.run_id, tmp_path / "a", settings,
                                  data_cache=cache)  # fmt: skip
    run_dir = tmp_path / "snapped" / snapped.run_id
    assert run_one(snapped, run_dir, data_cache=cache) == "ok"
    saved = torch.load(run_dir / "snapshots.pt", weights_only=True)
    assert saved["steps"].tolist() == [0, 7, 14, 21] and saved["weights"].shape[0] == 4

    def no_retraining(*args, **kwargs):
        raise AssertionError("re-trained although the run has snapshots")

    monkeypatch.setattr(job, "snapshot_training", no_retraining)
    read = job.landscape_run(run_dir, tmp_path / "b", settings, data_cache=cache)
    import json

    assert json.loads(read.with_suffix(".json").read_text())["reproduced"]
    assert_frame_equal(pl.read_parquet(read), pl.read_parquet(retrained))
