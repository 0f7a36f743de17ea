"""How many samples each split gets: the one formula the loader splits by and the check counts by.

`nnopt.train.data.split_indices` draws the indices; `nnopt.config.check_fit` only needs the
sizes (to refuse an empty test set or a last batch of one sample before any job). Both use
`class_split_sizes`, so the check sees exactly what training will see. numpy only.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["class_split_sizes", "split_sizes", "subsample_indices"]


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
