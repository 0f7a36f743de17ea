"""Combinations that parse but would fail (or silently change) inside training.

Given a spec and the samples per class of its pool (`nnopt.config.check_io.check_data`),
`check_fit` computes the split sizes by the loader's own formula (`nnopt.config.splits`) and
refuses, naming the keys: an empty train or test set (or an empty validation set that was
asked for), batch norm in an MLP that would see a batch or shard of one sample (torch raises
"Expected more than 1 value per channel when training"; a last batch of one sample is dropped
in training, `nnopt.config.splits.steps_per_epoch`, so only one train sample or a one-sample
data-parallel shard is refused), a data-parallel rank left with an empty shard, and a warm-up longer than the training budget (the scheduler would clamp it).
"""

from __future__ import annotations

import math
from typing import Sequence

from nnopt.config.spec import RunSpec, SpecError
from nnopt.config.splits import drops_single_batch, split_sizes, steps_per_epoch

__all__ = ["check_fit", "batch_sizes_that_fit"]


def _last_batch(n_train: int, batch_size: int) -> int:
    return n_train % batch_size or min(n_train, batch_size)


def _smallest_shard(n_train: int, batch_size: int, world_size: int) -> int:
    """Samples on the least loaded rank in the smallest (last) batch (tensor_split)."""
    return min(_last_batch(n_train, batch_size), batch_size) // world_size


def batch_sizes_that_fit(n_train: int, batch_size: int, world_size: int, need: int) -> list[int]:
    """Up to 3 batch sizes near `batch_size` (multiples of world_size) whose every shard
    holds at least `need` samples."""
    found: list[int] = []
    for delta in range(1, 4 * batch_size + 1):
        for b in (batch_size - delta, batch_size + delta):
            fits = b >= world_size and b % world_size == 0 and b not in found
            if fits and _smallest_shard(n_train, b, world_size) >= need:
                found.append(b)
        if len(found) >= 3:
            break
    return sorted(found[:3])


def _check_split(spec: RunSpec, sizes: tuple[int, int, int], n_pool: int) -> None:
    d = spec.data
    n_train, n_val, n_test = sizes
    for key, n, fraction in (("val_fraction", n_val, d.val_fraction),
                             ("test_fraction", n_test, d.test_fraction)):  # fmt: skip
        if fraction > 0 and n == 0:
            raise SpecError(
                f"data.{key}: {fraction} of {n_pool} samples rounds to an empty split in every "
                "class; allowed: more samples (data.n_samples) or a larger fraction"
            )
    if n_train == 0:
        raise SpecError(
            f"data: the split leaves no training samples ({n_pool} samples, val_fraction "
            f"{d.val_fraction}, test_fraction {d.test_fraction}); allowed: smaller fractions"
        )


def _check_batches(spec: RunSpec, n_train: int) -> None:
    b, ws = spec.budget.batch_size, spec.device.world_size
    need = 2 if drops_single_batch(spec.model) else 1
    if need == 2 and steps_per_epoch(n_train, b, drop_single=True) < math.ceil(n_train / b):
        n_train -= 1  # the one-sample last batch is dropped in training (splits.steps_per_epoch)
    if _smallest_shard(n_train, b, ws) >= need:
        return
    why = (
        "batch norm cannot train on a batch of one sample" if need == 2
        else "a data-parallel rank would get an empty batch"
    )  # fmt: skip
    fits = ", ".join(map(str, batch_sizes_that_fit(n_train, b, ws, need))) or "none near it"
    raise SpecError(
        f"budget.batch_size: {b} leaves a last batch of {_last_batch(n_train, b)} of "
        f"{n_train} training samples over {ws} rank(s); {why}; allowed e.g.: {fits}"
    )


def _check_warmup(spec: RunSpec, n_train: int | None) -> None:
    s, budget = spec.schedule, spec.budget
    if s.warmup_epochs == 0:
        return
    if budget.epochs is not None and s.warmup_epochs > budget.epochs:
        total = f"budget.epochs {budget.epochs}"
    elif budget.steps is not None and n_train is not None:
        spe = steps_per_epoch(n_train, budget.batch_size,
                              drop_single=drops_single_batch(spec.model))
        if round(s.warmup_epochs * spe) <= budget.steps:
            return
        total = f"budget.steps {budget.steps} ({budget.steps / spe:.3g} epochs)"
    else:
        return
    raise SpecError(
        f"schedule.warmup_epochs: {s.warmup_epochs} is longer than the training budget "
        f"({total}); allowed: at most the budget (it is not shortened silently)"
    )


def check_fit(spec: RunSpec, class_counts: Sequence[int] | None) -> None:
    """SpecError when `spec` would fail in training on a pool of these class sizes."""
    n_train = None
    if class_counts is not None:
        sizes = split_sizes(class_counts, spec.data.val_fraction, spec.data.test_fraction)
        _check_split(spec, sizes, int(sum(class_counts)))
        n_train = sizes[0]
        _check_batches(spec, n_train)
    _check_warmup(spec, n_train)
