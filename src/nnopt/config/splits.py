"""How many samples each split gets: the one formula the loader splits by and the check counts by.

`nnopt.train.data.split_indices` draws the indices; `nnopt.config.check_fit` only needs the
sizes (to refuse an empty test set or a last batch of one sample before any job). Both use
`class_split_sizes`, so the check sees exactly what training will see. `steps_per_epoch` is
the one count of an epoch's batches (both engines and the check use it). numpy only.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["class_split_sizes", "split_sizes", "subsample_indices", "steps_per_epoch",
           "drops_single_batch"]


def class_split_sizes(n_in_class: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes of one class of `n_in_class` samples (test is taken first)."""
    n_test = round(test_fraction * n_in_class)
    n_val = min(round(val_fraction * n_in_class), n_in_class - n_test)
    return n_in_class - n_test - n_val, n_val, n_test


def split_sizes(
    class_counts: Iterable[int], val_fraction: float, test_fraction: float
) -> tuple[int, int, int]:
    """(train, val, test) sizes of a stratified split of classes of these sizes."""
    sizes = [class_split_sizes(int(n), val_fraction, test_fraction) for n in class_counts]
    return tuple(int(sum(part)) for part in zip(*sizes)) if sizes else (0, 0, 0)  # type: ignore[return-value]


def subsample_indices(n_total: int, n: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of the `n` samples kept out of `n_total` (None: keep all)."""
    if n is None or n >= n_total:
        return None
    return np.sort(np.random.default_rng([seed, 1]).choice(n_total, n, replace=False))


def drops_single_batch(model) -> bool:
    """Whether a run with this ModelSpec drops an epoch's last batch when it holds one sample:
    an MLP with batch norm (BatchNorm1d on (1, C) has one value per channel, and torch raises
    "Expected more than 1 value per channel when training"); a CNN's batch norm normalizes
    over positions too, so one sample is enough there."""
    return bool(model.batch_norm) and model.kind == "mlp"


def steps_per_epoch(n_train: int, batch_size: int, *, drop_single: bool = False) -> int:
    """Optimizer steps (batches) in one epoch: ceil(n_train / batch_size), one fewer when
    `drop_single` and the last batch would hold a single sample (that sample is left out of
    the epoch, as DataLoader(drop_last=True) would, for that batch only; each epoch's
    permutation leaves out another). The single engine (nnopt.train.loop) and a stacked
    cohort (nnopt.train.cohort) both take this many batches of each epoch's permutation."""
    steps = math.ceil(n_train / batch_size)
    if drop_single and steps > 1 and n_train % batch_size == 1:
        steps -= 1
    return steps
