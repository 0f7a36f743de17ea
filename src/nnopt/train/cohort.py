"""A cohort: K runs of one shape signature trained as one stacked model, in one process.

`train_cohort(specs, dataset=...) -> [RunResult]` reproduces `nnopt.train.engine.train` for
each member (tests/train/test_cohort.py checks the curves against it): member k is built by
`build_model` right after `torch.manual_seed(seed_k)`, draws one `randperm` per epoch from
a `torch.Generator` seeded with seed_k and its dropout masks from the global-RNG stream it
would have continued alone; evaluation cadence, best-validation snapshot, targets, early
stopping, the schedule (a torch scheduler per member on a stand-in optimizer) and divergence
at evaluation points are the engine's. A member that diverges or stops early is frozen: its
state is snapshotted, its learning rate set to 0 and its loss masked, while the others go on.

Timing: every member's `train_time_s` is the cohort's (K runs shared it); the cohort's id,
size and times are in each member's provenance. Dropout on CUDA draws per-member masks from
per-member CUDA generators (torch's fused CUDA dropout takes none): the same distribution,
not the alone run's bits. See docs/cohorts.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from nnopt.config.cohort_key import cohort_key
from nnopt.config.metrics import METRIC_NAMES
from nnopt.config.spec import RunSpec
from nnopt.config.splits import drops_single_batch, steps_per_epoch
from nnopt.store.runs import RunResult, now_iso, provenance
from nnopt.train.cohort_parts import (
    EVAL_CHUNK,
    Member,
    StackedData,
    StackedEvaluator,
    member_result,
)
from nnopt.train.cohort_support import configure_torch
from nnopt.train.cohort_trainer import StackedTrainer
from nnopt.train.data import Dataset
from nnopt.train.engine import resolve_device
from nnopt.train.memory import activation_peak_bytes
from nnopt.train.strategy import device_name
from nnopt.train.record import note_targets

__all__ = ["EVAL_CHUNK", "train_cohort"]


class _Cohort:
    """The stacked loop; methods mirror the engine's (step, evaluate, after-eval, result).
    What is trained (model, optimizer, lrs) is `self.trainer` (nnopt.train.cohort_trainer)."""

    def __init__(self, specs: Sequence[RunSpec], ds: Dataset, threads, dtype, cohort_id):
        keys = {cohort_key(s) for s in specs}
        if None in keys or len(keys) != 1:
            raise ValueError("train_cohort: the specs do not share one stackable shape signature")
        self.specs, self.k, self.dtype, self.cohort_id = list(specs), len(specs), dtype, cohort_id
        first = specs[0]
        self.device = resolve_device(first.device)
        configure_torch(first, self.device, threads)
        self._plan(len(ds.y_train))
        # Setup facts, as the single engine records them (nnopt.train.strategy._setup_facts).
        self.setup = {"n_train": len(ds.y_train), "n_val": len(ds.y_val),
                      "n_test": len(ds.y_test), "n_classes": ds.n_classes}  # fmt: skip
        self.trainer = StackedTrainer(specs, ds, dtype, self.device, self.spe, self.total_steps)
        self.model = self.trainer.model
        self.members = [Member(s) for s in specs]
        self.data = StackedData.load(ds, self.device, dtype, first.evaluation.max_train_eval_samples)
        self.evaluator = StackedEvaluator(self.model, self.data, self.k, dtype, self.device)
        self.perm_generators = [
            torch.Generator(device=self.device).manual_seed(s.seed) for s in specs
        ]
        self.activation_bytes = _activation_bytes(specs, ds, self.device)

    def _plan(self, n_train: int) -> None:
        b, e = self.specs[0].budget, self.specs[0].evaluation
        self.n_train = n_train
        self.spe = steps_per_epoch(n_train, b.batch_size,
                                   drop_single=drops_single_batch(self.specs[0].model))
        self.total_steps = b.steps if b.steps is not None else b.epochs * self.spe
        self.eval_every = e.every_steps or max(1, round(e.every_epochs * self.spe))

    def run(self) -> None:
        self.step, self.samples, self.loss_count = 0, 0, 0
        self.loss_sum = torch.zeros(self.k, dtype=self.dtype, device=self.device)
        self.train_time_s = self.eval_time_s = 0.0
        self.wall_start = time.perf_counter()
        self._evaluate()  # step-0 point: the untrained models
        self.segment_start = time.perf_counter()
        while not self._all_done() and self.step < self.total_steps:
            perms = torch.stack([
                torch.randperm(self.n_train, generator=g, device=self.device)
                for g in self.perm_generators
            ])  # (K, n_train): each member's own epoch order
            # the plan's batches of each epoch: a last batch of one sample is dropped with
            # batch norm, as the single engine does (nnopt.config.splits.steps_per_epoch)
            for idx in perms.split(self.specs[0].budget.batch_size, dim=1)[: self.spe]:
                self._train_step(idx)
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    self._evaluate()
                if self._all_done() or self.step == self.total_steps:
                    break

    def _all_done(self) -> bool:
        return all(m.frozen is not None for m in self.members)

    def _train_step(self, idx: torch.Tensor) -> None:
        k, b = idx.shape
        flat, d = idx.reshape(-1), self.data
        xb = d.x_train.index_select(0, flat).view(k, b, *d.input_shape)
        yb = d.y_train.index_select(0, flat).view(k, b)
        self.loss_sum += self.trainer.step(xb, yb)
        self.loss_count += 1
        self.samples += b
        self.step += 1

    def _evaluate(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if self.step > 0:
            self.train_time_s += now - self.segment_start
        rows = self._measure()
        for k, (member, row) in enumerate(zip(self.members, rows)):
            if member.frozen is not None:
                continue
            running = row.pop("running_loss")
            if not (math.isfinite(running) and math.isfinite(row["train_loss"])):
                member.status, member.diverged_at_step = "diverged", self.step
                self._freeze(k)
                continue
            member.curve.append(row)
            member.keep_snapshot(self.step, self.model, k)
            self._after_eval(k, row)
        self.eval_time_s += time.perf_counter() - now
        self.segment_start = time.perf_counter()

    def _measure(self) -> list[dict[str, Any]]:
        running = self.loss_sum / max(self.loss_count, 1)
        self.loss_sum.zero_()
        had_steps, self.loss_count = self.loss_count > 0, 0
        return self.evaluator.measure(running, had_steps=had_steps, step=self.step,
                                      steps_per_epoch=self.spe, train_time_s=self.train_time_s,
                                      lrs=self.trainer.lrs)  # fmt: skip

    def _after_eval(self, k: int, row: dict[str, Any]) -> None:
        """The engine's targets, best-val state, early stopping and plateau, for member k."""
        member, s = self.members[k], self.step
        facts = {"epochs": s / self.spe, "steps": s, "time_s": self.train_time_s}
        note_targets(member.spec.evaluation, row, facts, member.reached)
        val_acc = row["val_accuracy"]
        if val_acc is not None:
            if member.best_val_accuracy is None or val_acc > member.best_val_accuracy:
                member.best_val_accuracy, member.best_val_step, member.stale_evals = val_acc, s, 0
                member.best_state = self.model.member_state(k)
            elif s > 0:
                member.stale_evals += 1
        patience = member.spec.regularization.early_stopping_patience
        if patience is not None and member.stale_evals >= patience:
            self._freeze(k)
            return
        sched = self.trainer.schedules.plateau(k)
        if sched.plateau is not None and s > 0 and s >= sched.warmup_steps:
            sched.plateau.step(row["val_loss"])
            self.trainer.set_lr()

    def _freeze(self, k: int) -> None:
        """Member k stops here: its state and facts are kept, its lr becomes 0."""
        self.members[k].frozen = {
            "state": self.model.member_state(k), "step": self.step, "lr": self.trainer.lrs[k],
            "samples": self.samples, "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
        }  # fmt: skip
        self.trainer.freeze(k)

    def results(self) -> list[RunResult]:
        for k, member in enumerate(self.members):
            if member.frozen is None:
                self._freeze(k)  # the end of the budget: every member stops here
        out = []
        for member, test in zip(self.members, self.evaluator.test_metrics(self.members)):
            m = dict.fromkeys(METRIC_NAMES)
            if member.status == "ok":
                m.update(test_loss=test["test_loss"], test_accuracy=test["test_accuracy"])
                m.update(weight_norm=test["weight_norm"], weight_sparsity=test["weight_sparsity"])
            if member.best_state is not None:
                m["test_accuracy_at_best_val"] = test["test_accuracy_at_best_val"]
            out.append(member_result(
                member, m, model=self.model, steps_per_epoch=self.spe,
                wall_start=self.wall_start, device=self.device,
                optimizer_state_bytes=self.trainer.state_bytes(member.spec), setup=self.setup,
                activation_bytes=self.activation_bytes[member.spec.run_id]))
        return out


def _activation_bytes(specs: Sequence[RunSpec], ds: Dataset,
                      device: torch.device) -> dict[str, int | None]:
    """Each member's activation peak of a step, measured as the single engine measures it:
    its own model alone (nnopt.train.memory.activation_peak_bytes), once per model shape.
    Before training, so that a CUDA probe's peak reset precedes the cohort's own peak."""
    by_shape: dict[tuple, int | None] = {}
    out = {}
    for s in specs:
        key = (s.model, s.budget.batch_size, s.device.precision)
        if key not in by_shape:
            by_shape[key] = activation_peak_bytes(s, ds, device)
        out[s.run_id] = by_shape[key]
    return out


def train_cohort(
    specs: Sequence[RunSpec],
    *,
    dataset: Dataset,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    cohort_id: str | None = None,
) -> list[RunResult]:
    """Train `specs` (one shape signature, see nnopt.config.cohort_key) as one stacked
    model; one RunResult per spec, in order. `dtype=torch.float64` is for equality tests."""
    started = now_iso()
    cohort = _Cohort(specs, dataset, threads, dtype, cohort_id)
    cohort.run()
    results = cohort.results()
    facts = {
        "device": str(cohort.device), "device_name": device_name(cohort.device),
        "threads": torch.get_num_threads(), "world_size": 1,
        "started_at": started, "finished_at": now_iso(), "cohort_id": cohort_id,
        "cohort_size": len(specs), "cohort_train_time_s": cohort.train_time_s,
        "cohort_wall_time_s": time.perf_counter() - cohort.wall_start,
    }  # fmt: skip
    for r in results:
        r.provenance = provenance(**facts)
    return results
