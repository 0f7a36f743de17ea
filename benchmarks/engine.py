"""Benchmark (not a test): the engine's training loop against an idiomatic PyTorch loop.

Same MLP (MNIST-1D, 2 hidden layers of width 256, Adam) trained by `nnopt.train.engine.train`
and by a DataLoader over a TensorDataset (shuffle=True), one thread, in this process.
Prints samples/s of each (and of a bare loop: the engine's hot path without its
bookkeeping, to show the engine's own overhead), their ratio, and the engine's training GFLOP/s (~6 x params x
samples/s: forward 2, backward 4 flops per weight and sample) as a fraction of a square
fp32 matmul's GFLOP/s measured here. Targets: engine >= 1.5x the DataLoader loop at batch
64; >= 60% of the matmul figure at batch 128. Run: `python benchmarks/engine.py` (< 60 s).
"""

from __future__ import annotations

import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from nnopt.train.data import load_dataset
from nnopt.train.engine import train
from nnopt.train.models import build_model
from nnopt.config.spec import parse_spec

BATCHES = (32, 64, 128)
REPEATS = 3  # best of: the machine is shared, the best run is the least disturbed


def spec_for(batch_size: int, epochs: int):
    return parse_spec({
        "data": {"name": "mnist1d"},
        "model": {"kind": "mlp", "depth": 2, "width": 256},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "budget": {"epochs": epochs, "batch_size": batch_size},
        "evaluation": {"every_epochs": epochs},  # evaluate at the start and the end only
    })  # fmt: skip


def engine_rate(dataset, batch_size: int, epochs: int) -> float:
    return train(spec_for(batch_size, epochs), dataset=dataset).metrics["samples_per_s"]


def dataloader_rate(dataset, batch_size: int, epochs: int) -> float:
    """The loop a PyTorch tutorial writes: DataLoader, default Adam, .item() per step."""
    spec = spec_for(batch_size, epochs)
    torch.manual_seed(0)
    model = build_model(spec.model, dataset.input_shape, dataset.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)),
        batch_size=batch_size, shuffle=True,
    )  # fmt: skip
    start, seen, running = time.perf_counter(), 0, 0.0
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            seen += len(yb)
    return seen / (time.perf_counter() - start)


def bare_rate(dataset, batch_size: int, epochs: int) -> float:
    """The engine's hot path without its bookkeeping (the floor the engine should be near)."""
    spec = spec_for(batch_size, epochs)
    torch.manual_seed(0)
    model = build_model(spec.model, dataset.input_shape, dataset.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * len(y) / (time.perf_counter() - start)


def matmul_gflops(n: int = 512, reps: int = 30) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * n**3 / best / 1e9


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        dataset = load_dataset(spec_for(64, 1).data, cache)
    n_params = sum(
        p.numel() for p in build_model(spec_for(64, 1).model, dataset.input_shape, 10).parameters()
    )
    peak = matmul_gflops()
    print(f"MLP 40-256-256-10 ({n_params} params), {len(dataset.y_train)} train samples, 1 thread")
    print(f"fp32 matmul 512x512: {peak:.1f} GFLOP/s")
    print(f"{'batch':>5} {'engine/s':>10} {'bare/s':>10} {'loader/s':>10} {'vs loader':>9} "
          f"{'GFLOP/s':>8} {'of peak':>8}")  # fmt: skip
    for batch in BATCHES:
        epochs = max(4, batch // 4)  # ~0.5-1 s of training each
        engine = max(engine_rate(dataset, batch, epochs) for _ in range(REPEATS))
        bare = max(bare_rate(dataset, batch, epochs) for _ in range(REPEATS))
        loader = max(dataloader_rate(dataset, batch, max(2, batch // 32)) for _ in range(REPEATS))
        gflops = 6 * n_params * engine / 1e9
        print(
            f"{batch:>5} {engine:>10.0f} {bare:>10.0f} {loader:>10.0f} {engine / loader:>8.2f}x "
            f"{gflops:>8.1f} {gflops / peak:>7.0%}"
        )


if __name__ == "__main__":
    main()
