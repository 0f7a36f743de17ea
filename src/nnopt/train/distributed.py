"""Data-parallel training of one run over `device.world_size` ranks (DistributedDataParallel).

What a run with world_size N means (docs/contract.md §1, `device.world_size`):

* **Global batch.** `budget.batch_size` is the global batch. Every rank draws the same seeded
  permutation of the train set per epoch and takes the r-th contiguous shard of each global
  batch (`batch_size / N` samples): the shards of one epoch are distinct and cover it once.
* **Same update as one process.** A rank's loss is its shard's *summed* loss × N / (global
  batch length); DDP averages gradients over ranks, so the gradient is exactly that of the
  mean loss over the global batch, even for an uneven or empty last shard. The learning rate
  is unchanged (no linear scaling rule: it is the same update), so results are comparable
  across world sizes: an MLP without dropout or batch norm matches world_size 1 to float
  rounding. Batch norm normalizes with per-shard statistics (N × smaller batches) and its
  running statistics are rank 0's, broadcast at each forward (plain DDP, no SyncBatchNorm);
  dropout masks come from one seeded stream per rank. Those models differ from world_size 1
  (statistically alike, not equal).
* **Evaluation on rank 0.** Rank 0 alone evaluates the full train-eval, validation and test
  sets (exact, nothing to reduce). The running train loss is all-reduced, and rank 0
  broadcasts the numbers that steer the run (train/val loss, val accuracy) so every rank
  takes the same decisions (divergence, early stopping, plateau lr) at the same step.
* **Threads.** Each rank runs `device.threads` intra-op threads (default 1), so a run
  occupies world_size × threads cores; that is what the workflow asks Snakemake for
  (`packing.resource_class`). An explicit `threads=` override (a job's total) is split:
  max(1, threads // world_size) per rank.
* **Only rank 0 writes.** Rank 0 returns the RunResult (the caller writes the run directory)
  and writes the checkpoints; every rank resumes from them.
* **Timing.** `train_time_s` is rank 0's wall time in the training loop (evaluation
  excluded); process start-up, `import torch` and rendezvous are not in it but are recorded
  as `provenance.launch_time_s` (time from starting the ranks to rank 0's result).

Strategy: `DataParallel` (the interface is in `nnopt.train.loop`) shards each global batch
in its step, wraps the model in DDP at setup and shares evaluations; it receives the run
and its state as arguments.

Processes (`nnopt.train.launch`, which also holds `train_distributed`): the calling process
supervises. It opens the rendezvous store on 127.0.0.1 port 0 (the OS picks a free port,
no race) and starts N ranks, forked by a forkserver that imported torch once per calling
process (`spawn` where there is none);
`gloo` on CPU, `nccl` on CUDA with one GPU per rank. It forwards rank 0's progress to the
caller's hooks and polls. A rank that raises reports its error; a rank that dies is seen by
its exit code; either way the survivors are terminated and `train` raises `RankError` naming
the rank and its error (the runner records the run as failed). Collectives time out after
`timeout_s` (`NNOPT_DIST_TIMEOUT_S`, default 300 s), so even a hung rank ends the run.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from nnopt.config.spec import RunSpec, SpecError
from nnopt.config.splits import drops_single_batch, steps_per_epoch
from nnopt.store.runs import RunResult
from nnopt.train.loop import Run, measure
from nnopt.train.state import TrainState
from nnopt.train.strategy import build_result, train_step

__all__ = [
    "BACKENDS",
    "TIMEOUT_ENV",
    "DataParallel",
    "backend_for",
    "check_world_size",
    "check_shards",
    "collective_timeout_s",
    "rank_threads",
    "wrap_model",
    "share_evaluation",
]

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
TIMEOUT_ENV = "NNOPT_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


# --- checks and small helpers -----------------------------------------------------------


def _resolved_type(spec: RunSpec) -> str:
    device = spec.device.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def backend_for(spec: RunSpec) -> str:
    """The process-group backend of spec's ranks: gloo on CPU, nccl on CUDA."""
    return BACKENDS[_resolved_type(spec)]
def check_world_size(spec: RunSpec) -> None:
    """SpecError unless this machine can run spec's ranks: on CUDA one GPU per rank."""
    ws = spec.device.world_size
    if _resolved_type(spec) != "cuda":
        return  # CPU ranks may oversubscribe the cores: slower, still correct
    if not torch.cuda.is_available():
        raise SpecError("device.device: 'cuda' requested but torch.cuda.is_available() is False")
    n_gpus = torch.cuda.device_count()
    if ws > n_gpus:
        raise SpecError(
            f"device.world_size: {ws} ranks need {ws} GPUs (one per rank) but this machine "
            f"has {n_gpus}; allowed: 1 to {n_gpus}, or device.device: cpu"
        )
    if not dist.is_nccl_available():
        raise SpecError("device.world_size: > 1 on cuda needs NCCL, which this torch lacks")


def check_shards(spec: RunSpec, n_train: int) -> None:
    """SpecError when batch norm would see a shard of fewer than 2 samples (torch refuses to
    normalize one sample in training): a full batch's shard, or the last batch's smallest."""
    if not spec.model.batch_norm:
        return
    ws, batch = spec.device.world_size, spec.budget.batch_size
    rest = n_train % batch  # samples in the short last batch of an epoch (0: none)
    if steps_per_epoch(n_train, batch, drop_single=drops_single_batch(spec.model)) < \
            math.ceil(n_train / batch):
        rest = 0  # a last batch of one sample is dropped (nnopt.config.splits.steps_per_epoch)
    smallest = min(batch // ws, rest // ws if rest else batch)
    if smallest < 2:
        raise SpecError(
            f"model.batch_norm: with budget.batch_size {batch} over device.world_size {ws} and "
            f"{n_train} train samples, a rank gets a shard of {smallest} sample(s); batch norm "
            "needs at least 2: change budget.batch_size or data.n_samples"
        )


def rank_threads(spec: RunSpec, threads: int | None = None) -> int:
    """Intra-op threads of each rank: spec.device.threads, or an override split over ranks."""
    if threads is None:
        return spec.device.threads
    return max(1, threads // spec.device.world_size)


def collective_timeout_s(timeout_s: float | None = None) -> float:
    """Seconds a collective may wait: `timeout_s`, else TIMEOUT_ENV, else 300."""
    if timeout_s is not None:
        return timeout_s
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise SpecError(f"{TIMEOUT_ENV}: expected seconds as a number, got {raw!r}") from None


# --- inside a rank: the engine calls these ----------------------------------------------


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP over the initialized process group; rank 0's weights are broadcast at creation."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device if ids else None)


def share_evaluation(run: Run, state: TrainState) -> dict[str, Any]:
    """One evaluation point of a data-parallel run; every rank calls it at the same step.

    The running loss sums (one per rank, each a sum of scaled shard losses) are averaged,
    which gives the global-batch mean per step. Rank 0 measures the full row; the others get
    the four numbers that steer the run: (running, train_loss, val_loss, val_accuracy).
    """
    dist.all_reduce(state.loss_sum)
    state.loss_sum /= run.world_size
    row = None
    if run.rank == 0:
        row = measure(run, state)
        numbers = [row["running_loss"], row["train_loss"], row["val_loss"], row["val_accuracy"]]
    else:
        state.reset_running_loss()
        numbers = [math.nan] * 4
    shared = torch.tensor([math.nan if v is None else v for v in numbers],
                          dtype=torch.float64, device=run.device)  # fmt: skip
    dist.broadcast(shared, src=0)
    if row is not None:
        return row
    running, train_loss, val_loss, val_acc = shared.tolist()
    has_val = len(run.data["y_val"]) > 0
    return {
        "step": state.step, "epoch": state.step / run.plan.steps_per_epoch, "train_time_s": None,
        "lr": state.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
        "train_accuracy": None, "val_loss": val_loss if has_val else None,
        "val_accuracy": val_acc if has_val else None, "grad_norm": None, "weight_norm": None,
        "layer_grad_norms": None, "running_loss": running,
    }  # fmt: skip


class DataParallel:
    """This process is rank `run.rank` of `run.world_size`; the process group is up."""

    def __init__(self) -> None:
        self.net: torch.nn.Module | None = None  # DDP wrapper: the training forward
        self.writes = True

    def setup(self, run: Run, state: TrainState) -> None:
        self.net = wrap_model(state.model, run.device)
        self.writes = run.rank == 0  # only rank 0 writes checkpoints and the result

    def step(self, run: Run, state: TrainState, idx: torch.Tensor) -> None:
        n_global, ws = len(idx), run.world_size
        shard = idx.tensor_split(ws)[run.rank]  # this rank's contiguous shard

        def loss_fn(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            # Shard sum × world_size / global batch: DDP's gradient average over ranks is
            # then exactly the global-batch mean's gradient, also for an uneven or empty
            # last shard.
            return F.cross_entropy(logits, yb, reduction="sum") * (ws / n_global)

        train_step(run, state, self.net, shard, loss_fn, n_global)

    def evaluate(self, run: Run, state: TrainState) -> dict[str, Any]:
        return share_evaluation(run, state)

    def finish(self, run: Run, state: TrainState) -> RunResult | None:
        return build_result(run, state) if run.rank == 0 else None
