"""Starting, watching and stopping the rank processes of one data-parallel run.

`nnopt.train.distributed` says what a data-parallel run computes; this module runs it. The calling
process holds the rendezvous store (127.0.0.1, port 0: the OS picks a free port), starts one
process per rank (forked by a forkserver that preloaded torch, see `_context`; `spawn` where
there is none), forwards rank 0's progress to the caller's hooks and polls the ranks. The
first failure (a rank's error message, or a rank gone with a non-zero exit code) ends the
run: the others get a few seconds to report, then are terminated, and `RankError` names the
root cause first. Collective timeouts (set by the caller) bound the wait on a hung rank.

`train_distributed` is the entry point (`nnopt.train.engine.train` calls it for
world_size > 1). Each rank builds its run (`nnopt.train.loop.build_run`) and trains it with
the `DataParallel` strategy; rank 0's result carries the provenance every run gets
(`nnopt.train.strategy.run_provenance`) plus the backend.
"""

from __future__ import annotations

import datetime
import os
import queue as queue_module
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nnopt.config.spec import RunSpec
from nnopt.store.runs import RunResult, now_iso
from nnopt.train.distributed import (
    DataParallel,
    backend_for,
    check_shards,
    check_world_size,
    collective_timeout_s,
    rank_threads,
)
from nnopt.train.loop import Hooks, build_run, run_loop
from nnopt.train.strategy import run_provenance

__all__ = ["FAIL_ENV", "HOST", "Job", "RankError", "open_store", "run_ranks", "train_distributed"]

HOST = "127.0.0.1"  # ranks of one run live on one machine; nothing leaves loopback
# Test hook (no spec field): "RANK:STEP" makes that rank raise at its first evaluation at or
# after STEP; "RANK:STEP:exit" makes it die there without a word (os._exit(3)); "RANK:STEP:hang"
# makes it sleep, so the others hit the collective timeout.
FAIL_ENV = "NNOPT_DIST_FAIL"
# Imported once by the forkserver that forks the ranks (see _context).
_PRELOAD = ("torch", "torch._dynamo", "torch.nn.parallel", "nnopt.train.launch")
_GRACE_S = 3.0  # after a failure: time for the other ranks to report before termination
_JOIN_S = 30.0  # after rank 0's result: time for the other ranks to exit cleanly


class RankError(RuntimeError):
    """A rank of a data-parallel run raised or died; the message names the rank."""


class _RemoteTraceback(Exception):
    """Carries a rank's traceback text as the cause of RankError (shown in tracebacks)."""

    def __str__(self) -> str:
        return self.args[0]


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


# --- one rank's process ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything a rank needs, pickled to it at spawn (plain data and numpy arrays)."""

    spec: RunSpec
    dataset: Any  # nnopt.train.data.Dataset
    checkpoint_dir: Path | None
    threads: int
    backend: str
    port: int
    timeout_s: float
    started_at: str
    forward_progress: bool
    forward_epochs: bool
    # FAIL_ENV as the caller saw it: forked ranks inherit the forkserver's environment,
    # which is the caller's at the first data-parallel run, not now.
    fail: str = field(default_factory=lambda: os.environ.get(FAIL_ENV, ""))


def _fail_hook(rank: int, raw: str):
    """The FAIL_ENV test hook for this rank, as a progress callback (or None)."""
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


def _rank_hooks(rank: int, job: Job, messages: Any) -> Hooks:
    fail = _fail_hook(rank, job.fail)
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


def _train_rank(rank: int, job: Job, messages: Any, keep: list) -> RunResult | None:
    ws = job.spec.device.world_size
    timeout = datetime.timedelta(seconds=job.timeout_s)
    if job.backend == "nccl":
        torch.cuda.set_device(rank)  # one GPU per rank, before NCCL creates its communicator
    store = dist.TCPStore(HOST, job.port, ws, False, timeout=timeout)
    dist.init_process_group(job.backend, store=store, rank=rank, world_size=ws, timeout=timeout)
    hooks = _rank_hooks(rank, job, messages)
    run, state = build_run(job.spec, job.dataset, hooks, job.checkpoint_dir, job.threads, rank)
    strategy = DataParallel()
    keep += [store, strategy]  # never torn down: see _rank_main
    run_loop(run, state, strategy)
    result = strategy.finish(run, state)
    if result is not None:
        result.provenance = run_provenance(run, job.started_at, backend=job.backend)
    return result


def _rank_main(rank: int, job: Job, messages: Any) -> None:
    """Entry point of a rank process: train, send rank 0's result or any rank's error, exit.

    The rank ends with os._exit once its message is flushed: tearing down DDP and the gloo
    process group at interpreter exit sometimes blocked for good (seen in ~1 of 4 runs
    here), and nothing in a rank needs cleaning up (the OS closes its sockets).
    """
    if job.backend == "gloo" and _loopback_name():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_name())
    keep: list = []
    code = 0
    try:
        result = _train_rank(rank, job, messages, keep)
        if result is not None:
            messages.put(("result", rank, result))
    except BaseException as err:  # reported, then this rank exits non-zero
        text = f"{type(err).__name__}: {err}"
        messages.put(("error", rank, (time.time(), text, traceback.format_exc())))
        code = 1
    messages.close()
    messages.join_thread()  # the message is in the pipe
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- the calling process: start, supervise, collect ------------------------------------------


@contextmanager
def _no_main_reimport():
    """Keep spawned ranks from re-running the caller's main script.

    `spawn` and `forkserver` re-import `__main__` in each child unless it names a
    `*.__main__` module. A Snakemake `script:` runs its file unguarded, so a re-import would
    train the whole batch again; ranks need nothing from `__main__`, so tell
    multiprocessing it is a package main.
    """
    import importlib.machinery

    main = sys.modules["__main__"]
    saved = main.__dict__.get("__spec__")
    main.__spec__ = importlib.machinery.ModuleSpec("nnopt.__main__", None)
    try:
        yield
    finally:
        main.__spec__ = saved


def _context():
    """The forkserver (preloaded once per calling process), else spawn.

    A spawned rank imports torch (~1.5 s) and DDP's constructor imports torch._dynamo
    (~2 s): N ranks on 2 cores spent seconds per run on imports. A forkserver imports them
    once, then forks each rank from that clean, single-threaded server in milliseconds.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    multiprocessing.set_forkserver_preload(list(_PRELOAD))  # read when the server starts
    return multiprocessing.get_context("forkserver")


def _start_ranks(job: Job):
    ctx = _context()
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


def run_ranks(job: Job, hooks: Any) -> RunResult:
    """Start job's ranks, supervise them, and return rank 0's RunResult (or raise RankError).

    Every rank process is gone when this returns or raises (terminated if need be).
    """
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
    result = supervisor.result
    result.provenance["launch_time_s"] = time.perf_counter() - launched
    return result


def train_distributed(
    spec: RunSpec,
    *,
    dataset: Any,
    hooks: Hooks | None = None,
    checkpoint_dir: str | Path | None = None,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Train `spec` over spec.device.world_size rank processes; rank 0's RunResult.

    Raises SpecError before starting anything when the machine lacks the GPUs or a batch-norm
    shard would be too small, and RankError when a rank raised or died (after terminating
    the others). `threads` is the run's total (split over ranks); None: device.threads each.
    """
    hooks = hooks or Hooks()
    if hooks.on_train_end is not None or hooks.on_evaluate is not None:
        raise ValueError(
            "hooks.on_train_end / hooks.on_evaluate need the model, which lives in the rank "
            "processes of a data-parallel run; use device.world_size 1 for them"
        )
    check_world_size(spec)
    check_shards(spec, len(dataset.y_train))
    timeout = collective_timeout_s(timeout_s)
    store = open_store(timeout)  # held here, in the calling process, until the ranks are gone
    job = Job(
        spec=spec, dataset=dataset, threads=rank_threads(spec, threads),
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        backend=backend_for(spec), port=store.port, timeout_s=timeout,
        started_at=now_iso(), forward_progress=hooks.progress is not None,
        forward_epochs=hooks.on_epoch_end is not None,
    )  # fmt: skip
    try:
        return run_ranks(job, hooks)
    finally:
        del store
