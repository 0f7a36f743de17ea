"""`nnopt init DIR`: a ready-to-edit study folder of your own.

It writes a config (its own title, no claims, a two-optimizer study), a plug-in model
(`models.py`, a tiny residual MLP), a plug-in data loader (`data.py`, two noisy moons made
with numpy) and a README saying how to run it. The folder is the study set's home: the
workflow runs there (`output:` defaults to the config's folder), so results/, reports/ and
logs/ land beside the config and never over the shipped report.
"""

from __future__ import annotations

from pathlib import Path

from nnopt.config.spec import SpecError

__all__ = ["STUDY_FILES", "init_study"]

_CONFIG = """\
# A study set of your own (written by `nnopt init`). From the nnopt repository root:
#   nnopt check --config {folder}/config.yaml
#   snakemake --cores all --configfile {folder}/config.yaml
# Results, reports and logs are written into this folder ({folder}/reports/report.html).
# Relative paths (models.py, data.py, data files) resolve against this folder. Nothing of
# the shipped config is inherited (add `inherit: shipped` to merge over it), and there is no
# claims section unless you add `claims: claims.yaml` (format: config/claims.yaml).
title: "My study: SGD with momentum vs Adam on a residual MLP"
defaults:
  data: {{name: python, loader: "data:two_moons", kwargs: {{n: 600, noise: 0.2}}}}
  model: {{kind: python, factory: "models:residual_mlp", kwargs: {{width: 32, blocks: 2}}}}
  budget: {{epochs: 5, batch_size: 32}}
  evaluation: {{every_epochs: 1}}
seeds: 3
studies:
  - name: optimizers
    title: "SGD with momentum vs Adam"
    description: "The same residual MLP trained by two optimizers, each at a learning rate that suits it."
    zip:
      optimizer.name: [momentum, adam]
      optimizer.lr: [0.05, 0.003]
    rows: optimizer.name
    baseline: {{optimizer.name: momentum}}
    metrics: [test_accuracy, final_train_loss, train_time_s]
"""

_MODELS = '''\
"""Your models: `factory(input_shape, n_classes, **kwargs)` returns a torch.nn.Module mapping
a float32 batch (batch, *input_shape) to logits (batch, n_classes). Editing this file gives
the runs that use it new run ids, so exactly those runs are trained again."""

import math

import torch
from torch import nn


class Block(nn.Module):
    """x + MLP(x): a residual block of two linear layers."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def residual_mlp(input_shape, n_classes, width=32, blocks=2):
    """Flatten, project to `width`, `blocks` residual blocks, a linear head."""
    features = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, width),
        nn.ReLU(),
        *[Block(width) for _ in range(blocks)],
        nn.Linear(width, n_classes),
    )
'''

_DATA = '''\
"""Your data: `loader(**kwargs)` returns (x, y): x of shape (n, *sample_shape), y of shape
(n,) with integer labels 0..K-1. nnopt subsamples, splits and standardizes it. To read a
file instead, open it here with a path relative to this folder (jobs run in it), or use
`data: {name: table, path: my.csv, label_column: label}` in config.yaml."""

import numpy as np


def two_moons(n=600, noise=0.2, seed=0):
    """Two interleaved half circles with Gaussian noise (fixed seed: the same data each time)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0.0, np.pi, n)
    x = np.stack([np.cos(angle) + y * 1.0, np.sin(angle) * (1 - 2 * y) + y * 0.5], axis=1)
    return (x + rng.normal(0.0, noise, x.shape)).astype(np.float32), y.astype(np.int64)
'''

_README = """\
# {name}

A study set of your own, written by `nnopt init`. Edit `config.yaml` (the studies),
`models.py` (your models) and `data.py` (your data), then from the nnopt repository root:

    nnopt check --config {folder}/config.yaml                     # one line: ok or the error
    snakemake --cores all --configfile {folder}/config.yaml       # train, aggregate, report

The report is `{folder}/reports/report.html` (and `.pdf`); tables are in
`{folder}/results/`, job logs in `{folder}/logs/`. Editing `models.py` retrains exactly the
runs that use it. See config/README.md of nnopt for every key.
"""

# name -> template; the config and README name the folder as it was given.
STUDY_FILES = {"config.yaml": _CONFIG, "models.py": _MODELS, "data.py": _DATA,
               "README.md": _README}  # fmt: skip


def init_study(folder: str | Path) -> list[Path]:
    """Write the study folder's files; SpecError when `folder` exists and is not empty (or
    is not a folder). Returns the written paths."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SpecError(f"{folder}: exists and is not a folder; allowed: a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise SpecError(
            f"{folder}: not empty; allowed: a new or empty folder (nothing is overwritten)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, template in STUDY_FILES.items():
        text = template if name.endswith(".py") else template.format(
            folder=folder.as_posix(), name=folder.name)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
