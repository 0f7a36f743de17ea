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
  rounding. Batch norm normalizes with per-shard statistics (N × smaller batches; buffers
  broadcast from rank 0) and dropout masks come from one seeded stream per rank, so those
  models differ from world_size 1 (statistically alike, not equal).
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
  as `provenance.launch_time_s` (time from spawning the ranks to rank 0's result).

Processes: the calling process supervises. It opens the rendezvous store on 127.0.0.1 port 0
(the OS picks a free port, no race), starts N ranks with the `spawn` start method (`gloo` on
CPU, `nccl` on CUDA with one GPU per rank), forwards rank 0's progress to the caller's hooks,
and polls. A rank that raises reports its error; a rank that dies is seen by its exit code;
either way the survivors are terminated and `train` raises `RankError` naming the rank and
its error (the runner records the run as failed). Collectives time out after `timeout_s`
(`NNOPT_DIST_TIMEOUT_S`, default 300 s), so even a hung rank ends the run.
"""

from __future__ import annotations

import datetime
import math
import os
import queue as queue_module
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nnopt.results import RunResult, now_iso, provenance
from nnopt.spec import RunSpec, SpecError

__all__ = [
    "BACKENDS",
    "FAIL_ENV",
    "TIMEOUT_ENV",
    "RankError",
    "check_world_size",
    "open_store",
    "rank_threads",
    "wrap_model",
    "share_evaluation",
    "train_distributed",
]

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
HOST = "127.0.0.1"  # ranks of one run live on one machine; nothing leaves loopback
TIMEOUT_ENV = "NNOPT_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
# Test hook (no spec field): "RANK:STEP" makes that rank raise at its first evaluation at or
# after STEP; "RANK:STEP:exit" makes it die there without a word (os._exit(3)); "RANK:STEP:hang"
# makes it sleep, so the others hit the collective timeout.
FAIL_ENV = "NNOPT_DIST_FAIL"
_GRACE_S = 3.0  # after a failure: time for the other ranks to report before termination
_JOIN_S = 30.0  # after rank 0's result: time for the other ranks to exit cleanly


class RankError(RuntimeError):
    """A rank of a data-parallel run raised or died; the message names the rank."""


class _RemoteTraceback(Exception):
    """Carries a rank's traceback text as the cause of RankError (shown in tracebacks)."""

    def __str__(self) -> str:
        return self.args[0]


# --- checks and small helpers -----------------------------------------------------------


def _resolved_type(spec: RunSpec) -> str:
    device = spec.device.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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


def rank_threads(spec: RunSpec, threads: int | None = None) -> int:
    """Intra-op threads of each rank: spec.device.threads, or an override split over ranks."""
    if threads is None:
        return spec.device.threads
    return max(1, threads // spec.device.world_size)


def _timeout_s(timeout_s: float | None) -> float:
    if timeout_s is not None:
        return timeout_s
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise SpecError(f"{TIMEOUT_ENV}: expected seconds as a number, got {raw!r}") from None


def open_store(timeout_s: float, host: str = HOST) -> dist.TCPStore:
    """The rendezvous server of one run, bound to port 0 on `host`: the OS picks a free port
    (read it from `.port`), so two runs never race for one."""
    return dist.TCPStore(
        host, 0, None, True, timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False
    )


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _loopback_name() -> str | None:
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in ("lo", "lo0") if n in names), None)


# --- inside a rank: the engine calls these ----------------------------------------------


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP over the initialized process group; rank 0's weights are broadcast at creation."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device if ids else None)


def share_evaluation(trainer: Any) -> dict[str, Any]:
    """One evaluation point of a data-parallel run; every rank calls it at the same step.

    The running loss sums (one per rank, each a sum of scaled shard losses) are averaged,
    which gives the global-batch mean per step. Rank 0 measures the full row; the others get
    the four numbers that steer the run: (running, train_loss, val_loss, val_accuracy).
    """
    dist.all_reduce(trainer.loss_sum)
    trainer.loss_sum /= trainer.world_size
    row = None
    if trainer.rank == 0:
        row = trainer._measure()
        numbers = [row["running_loss"], row["train_loss"], row["val_loss"], row["val_accuracy"]]
    else:
        trainer.loss_sum.zero_()
        trainer.loss_count = 0
        numbers = [math.nan] * 4
    shared = torch.tensor([math.nan if v is None else v for v in numbers],
                          dtype=torch.float64, device=trainer.device)  # fmt: skip
    dist.broadcast(shared, src=0)
    if row is not None:
        return row
    running, train_loss, val_loss, val_acc = shared.tolist()
    has_val = len(trainer.y_val) > 0
    return {
        "step": trainer.step, "epoch": trainer.step / trainer.spe, "train_time_s": None,
        "lr": trainer.opt.param_groups[0]["lr"], "train_loss": train_loss, "train_accuracy": None,
        "val_loss": val_loss if has_val else None, "val_accuracy": val_acc if has_val else None,
        "grad_norm": None, "weight_norm": None, "layer_grad_norms": None, "running_loss": running,
    }  # fmt: skip


# --- one rank's process ------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """Everything a rank needs, pickled to it at spawn (plain data and numpy arrays)."""

    spec: RunSpec
    dataset: Any  # nnopt.data.Dataset
    checkpoint_dir: Path | None
    threads: int
    backend: str
    port: int
    timeout_s: float
    started_at: str
    forward_progress: bool
    forward_epochs: bool


def _fail_hook(rank: int):
    """The FAIL_ENV test hook for this rank, as a progress callback (or None)."""
    raw = os.environ.get(FAIL_ENV, "")
    parts = raw.split(":")
    if not raw or parts[0] != str(rank):
        return None
    at_step = int(parts[1]) if len(parts) > 1 else 0
    mode = parts[2] if len(parts) > 2 else "raise"

    def fail(row: dict[str, Any]) -> None:
        if row["step"] < at_step:
            return
        if mode == "exit":
            os._exit(3)
        if mode == "hang":
            time.sleep(10 * 3600)
        raise RuntimeError(f"injected failure on rank {rank} at step {row['step']} ({FAIL_ENV})")

    return fail


def _rank_hooks(rank: int, job: _Job, messages: Any):
    from nnopt.engine import Hooks

    fail = _fail_hook(rank)
    forward = rank == 0 and job.forward_progress

    def progress(row: dict[str, Any]) -> None:
        if forward:
            messages.put(("progress", rank, row))
        if fail is not None:
            fail(row)

    def epoch_end(epochs: int) -> None:
        messages.put(("epoch", rank, epochs))

    return Hooks(
        progress=progress if forward or fail is not None else None,
        on_epoch_end=epoch_end if rank == 0 and job.forward_epochs else None,
    )


def _train_rank(rank: int, job: _Job, messages: Any) -> RunResult | None:
    from nnopt.engine import _device_name, _Trainer

    ws = job.spec.device.world_size
    timeout = datetime.timedelta(seconds=job.timeout_s)
    if job.backend == "nccl":
        torch.cuda.set_device(rank)  # one GPU per rank, before NCCL creates its communicator
    store = dist.TCPStore(HOST, job.port, ws, False, timeout=timeout)
    dist.init_process_group(job.backend, store=store, rank=rank, world_size=ws, timeout=timeout)
    try:
        hooks = _rank_hooks(rank, job, messages)
        trainer = _Trainer(job.spec, job.dataset, hooks, job.checkpoint_dir, job.threads, rank=rank)
        trainer.run()
        if rank != 0:
            return None
        result = trainer.result()
        result.provenance = provenance(
            device=str(trainer.device), device_name=_device_name(trainer.device),
            threads=torch.get_num_threads(), world_size=ws, backend=job.backend,
            started_at=job.started_at, finished_at=now_iso(),
        )  # fmt: skip
        return result
    finally:
        dist.destroy_process_group()


def _rank_main(rank: int, job: _Job, messages: Any) -> None:
    """Entry point of a spawned rank: train, send rank 0's result or any rank's error."""
    if job.backend == "gloo" and _loopback_name():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_name())
    try:
        result = _train_rank(rank, job, messages)
        if result is not None:
            messages.put(("result", rank, result))
    except BaseException as err:  # reported, then this rank exits non-zero
        text = f"{type(err).__name__}: {err}"
        messages.put(("error", rank, (time.time(), text, traceback.format_exc())))
        messages.close()
        messages.join_thread()
        raise SystemExit(1) from None


# --- the calling process: start, supervise, collect ------------------------------------------


@contextmanager
def _no_main_reimport():
    """Keep spawned ranks from re-running the caller's main script.

    `spawn` re-imports `__main__` in each child unless it names a `*.__main__` module. A
    Snakemake `script:` runs its file unguarded, so a re-import would train the whole batch
    again; ranks need nothing from `__main__`, so tell multiprocessing it is a package main.
    """
    import importlib.machinery

    main = sys.modules["__main__"]
    saved = main.__dict__.get("__spec__")
    main.__spec__ = importlib.machinery.ModuleSpec("nnopt.__main__", None)
    try:
        yield
    finally:
        main.__spec__ = saved


def _start_ranks(job: _Job):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    procs = []
    with _no_main_reimport():
        for rank in range(job.spec.device.world_size):
            proc = ctx.Process(target=_rank_main, args=(rank, job, messages), daemon=True,
                               name=f"nnopt-rank{rank}")  # fmt: skip
            proc.start()
            procs.append(proc)
    return procs, messages


def _stop(procs: list) -> None:
    """Terminate our rank processes that still run (SIGTERM, then SIGKILL), and reap them."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)


class _Supervisor:
    """Reads the ranks' messages and exit codes until rank 0's result or a failure."""

    def __init__(self, procs: list, messages: Any, hooks: Any):
        self.procs, self.messages, self.hooks = procs, messages, hooks
        self.result: RunResult | None = None
        self.errors: dict[int, tuple[float, str, str]] = {}  # rank -> (time, text, traceback)
        self.failed_at: float | None = None

    def handle(self, message: tuple) -> None:
        kind, rank, payload = message
        if kind == "result":
            self.result = payload
        elif kind == "error":
            self.errors[rank] = payload
        elif kind == "progress" and self.hooks.progress is not None:
            self.hooks.progress(payload)
        elif kind == "epoch" and self.hooks.on_epoch_end is not None:
            self.hooks.on_epoch_end(payload)

    def drain(self, wait_s: float) -> None:
        try:
            self.handle(self.messages.get(timeout=wait_s))
            while True:
                self.handle(self.messages.get_nowait())
        except queue_module.Empty:
            pass

    def dead(self) -> list[int]:
        return [r for r, p in enumerate(self.procs) if p.exitcode not in (None, 0)]

    def running(self) -> list[int]:
        return [r for r, p in enumerate(self.procs) if p.exitcode is None]

    def run(self) -> None:
        while self.result is None:
            self.drain(0.2)
            if self.errors or self.dead():
                self.failed_at = self.failed_at or time.monotonic()
                everyone_out = all(p.exitcode is not None for p in self.procs)
                if everyone_out or time.monotonic() - self.failed_at > _GRACE_S:
                    return
            elif all(p.exitcode == 0 for p in self.procs):
                self.drain(1.0)  # the result may still be in the pipe
                if self.result is None:
                    self.errors[0] = (time.time(), "rank 0 exited without a result", "")
                return

    def error(self) -> RankError:
        """The failure, root cause first: ranks that died without a word, then errors by time
        (the first in full, later ones, usually a peer's 'connection closed', cut short)."""
        self.drain(0.5)
        parts, cause = [], ""
        for rank in self.dead():
            if rank not in self.errors:
                code = self.procs[rank].exitcode
                parts.append(f"rank {rank} died (exit code {code})")
        for rank, (_, text, tb) in sorted(self.errors.items(), key=lambda kv: kv[1][0]):
            parts.append(f"rank {rank}: " + (text if not parts else _first_line(text, 160)))
            cause = cause or tb
        parts += [f"rank {r} still running, terminated" for r in self.running()]
        n = len(self.procs)
        err = RankError(f"data-parallel run (world_size {n}) failed: " + "; then ".join(parts))
        err.__cause__ = _RemoteTraceback(cause) if cause else None
        return err


def train_distributed(
    spec: RunSpec,
    *,
    dataset: Any,
    hooks: Any = None,
    checkpoint_dir: str | Path | None = None,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Train `spec` over spec.device.world_size spawned ranks; rank 0's RunResult.

    Raises SpecError before starting anything when the machine lacks the GPUs, and RankError
    when a rank raised or died (after terminating the others).
    """
    from nnopt.engine import Hooks

    hooks = hooks or Hooks()
    if hooks.on_train_end is not None or hooks.on_evaluate is not None:
        raise ValueError(
            "hooks.on_train_end / hooks.on_evaluate need the model, which lives in the rank "
            "processes of a data-parallel run; use device.world_size 1 for them"
        )
    check_world_size(spec)
    timeout = _timeout_s(timeout_s)
    store = open_store(timeout)
    job = _Job(
        spec=spec, dataset=dataset, threads=rank_threads(spec, threads),
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        backend=BACKENDS[_resolved_type(spec)], port=store.port, timeout_s=timeout,
        started_at=now_iso(), forward_progress=hooks.progress is not None,
        forward_epochs=hooks.on_epoch_end is not None,
    )  # fmt: skip
    launched = time.perf_counter()
    procs, messages = _start_ranks(job)
    supervisor = _Supervisor(procs, messages, hooks)
    try:
        supervisor.run()
        if supervisor.result is None:
            raise supervisor.error()
        for proc in procs:
            proc.join(_JOIN_S)
    finally:
        _stop(procs)
        messages.close()
        messages.cancel_join_thread()
        del store
    result = supervisor.result
    result.provenance["launch_time_s"] = time.perf_counter() - launched
    return result
