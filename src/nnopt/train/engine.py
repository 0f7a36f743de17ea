"""Training one run: `train(spec) -> RunResult`, the engine's entry point.

One process (`nnopt.train.strategy.SingleProcess`) or, with `device.world_size` > 1, rank
processes (`nnopt.train.launch.train_distributed`, computing what
`nnopt.train.distributed` says). The loop, the training state and the strategy interface
are in `nnopt.train.loop` and `nnopt.train.state`.
"""

from __future__ import annotations

from pathlib import Path

from nnopt.config.spec import RunSpec
from nnopt.store.runs import RunResult, now_iso
from nnopt.train.data import Dataset, load_dataset
from nnopt.train.loop import (
    EVAL_BATCH,
    Hooks,
    build_run,
    epoch_batches,
    eval_batch_size,
    evaluate,
    resolve_device,
    run_loop,
)
from nnopt.train.memory import peak_rss_mb, reset_peak_rss
from nnopt.train.strategy import SingleProcess, run_provenance

__all__ = [
    "Hooks",
    "train",
    "epoch_batches",
    "resolve_device",
    "evaluate",
    "eval_batch_size",
    "peak_rss_mb",
    "EVAL_BATCH",
]


def train(
    spec: RunSpec,
    *,
    dataset: Dataset | None = None,
    hooks: Hooks | None = None,
    checkpoint_dir: str | Path | None = None,
    data_cache: str | Path | None = None,
    threads: int | None = None,
) -> RunResult:
    """Train one run. Exceptions propagate (the runner records them as failed runs); a
    non-finite loss returns status 'diverged'. `threads` overrides spec.device.threads
    (execution only); `checkpoint_dir` enables resume and spec.checkpoint saving."""
    started = now_iso()
    reset_peak_rss()
    ds = dataset if dataset is not None else load_dataset(spec.data, data_cache)
    if spec.device.world_size > 1:  # ranks in their own processes
        from nnopt.train.launch import train_distributed  # torch.distributed: only when used

        return train_distributed(
            spec, dataset=ds, hooks=hooks, checkpoint_dir=checkpoint_dir, threads=threads
        )
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    run, state = build_run(spec, ds, hooks or Hooks(), ckpt, threads)
    strategy = SingleProcess()
    run_loop(run, state, strategy)
    result = strategy.finish(run, state)
    result.provenance = run_provenance(run, started)
    return result
