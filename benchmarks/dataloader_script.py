"""The idiomatic baseline: one training run per process with a torch DataLoader.

This is how a study is usually scripted: a Snakemake rule per run calls a script that
imports torch, loads the data, wraps it in a `TensorDataset` + `DataLoader(shuffle=True)`,
trains an `nn.Sequential` MLP for some epochs with an evaluation per epoch, and writes one
`metrics.json`. benchmarks/study.py times a grid of these against nnopt's batched jobs.

    python benchmarks/dataloader_script.py --data prepared.npz --activation relu \
        --lr 0.003 --seed 0 --out run/metrics.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STARTED = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help=".npz with x_train, y_train, x_val, ...")
    p.add_argument("--out", required=True, help="metrics.json to write")
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def mlp(n_in: int, width: int, depth: int, n_out: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width if depth else n_in, n_out))
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x).argmax(dim=1) == y).sum().item()
        total += len(y)
    model.train()
    return correct / total


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with np.load(args.data) as npz:
        arrays = {k: torch.from_numpy(np.asarray(npz[k])) for k in npz.files if k != "meta"}
    train = TensorDataset(arrays["x_train"].float(), arrays["y_train"].long())
    val = TensorDataset(arrays["x_val"].float(), arrays["y_val"].long())
    test = TensorDataset(arrays["x_test"].float(), arrays["y_test"].long())
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    n_classes = int(arrays["y_train"].max()) + 1
    model = mlp(train.tensors[0].shape[1], args.width, args.depth, n_classes, args.activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    train_time_s, val_curve = 0.0, []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for x, y in loader:  # x: (batch, 40), y: (batch,)
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        train_time_s += time.perf_counter() - t0
        val_curve.append(accuracy(model, DataLoader(val, batch_size=512)))
    metrics = {
        "test_accuracy": accuracy(model, DataLoader(test, batch_size=512)),
        "val_accuracy": val_curve,
        "train_time_s": train_time_s,
        "wall_time_s": time.perf_counter() - STARTED,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
