"""Running specs into run directories: one run, or a batch of runs in this one process.

A batch shares the process start-up (`import torch` ~1.4 s) and the prepared datasets
across its runs; one run's failure is recorded (`status: failed`, with the traceback) and
never stops the others. Finished runs (ok/diverged with the same run_id) are skipped.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TextIO

from nnopt.store.runs import RunResult, is_finished, now_iso, read_run, write_run
from nnopt.config.spec import RunSpec

__all__ = ["run_one", "run_batch", "progress_printer", "progress_hooks"]

from nnopt.train.batch_support import dataset_for as _dataset  # noqa: E402
from nnopt.train.batch_support import failed_result as _failed  # noqa: E402


def _train(spec: RunSpec, out: Path, hooks: Any, data_cache: Any, threads: Any) -> RunResult:
    from nnopt.config.fingerprint import verify_fingerprint
    from nnopt.train.checkpoint import checkpoint_dir_for
    from nnopt.train.engine import train

    # A file edited between planning and this job: refuse to record new data under the old id.
    verify_fingerprint(spec.data.name, spec.data.path, spec.data.fingerprint)
    ckpt = checkpoint_dir_for(out)
    use_ckpt = spec.checkpoint.every_epochs is not None or spec.checkpoint.every_seconds is not None
    return train(
        spec,
        dataset=_dataset(spec, data_cache),
        hooks=hooks,
        checkpoint_dir=ckpt if use_ckpt or ckpt.exists() else None,
        data_cache=data_cache,
        threads=threads,
    )


def run_one(
    spec: RunSpec,
    out_dir: str | Path,
    *,
    study: str = "adhoc",
    factors: Mapping[str, Any] | None = None,
    force: bool = False,
    threads: int | None = None,
    hooks: Any = None,
    data_cache: str | Path | None = None,
) -> str:
    """Train `spec` into `out_dir` unless already finished; return the run's status.

    Exceptions inside training become a `failed` record (not finished: a rerun retries).
    """
    from nnopt.train.checkpoint import checkpoint_dir_for

    out = Path(out_dir)
    if not force and is_finished(out, spec.run_id):
        return read_run(out)["status"]
    started = now_iso()
    try:
        result = _train(spec, out, hooks, data_cache, threads)
    except Exception as err:  # recorded, so the report can say why; KeyboardInterrupt escapes
        result = _failed(err, started)
    write_run(
        out, result, run_id=spec.run_id, study=study, factors=factors or {}, spec=spec.to_dict()
    )
    shutil.rmtree(checkpoint_dir_for(out), ignore_errors=True)  # the run directory supersedes it
    return result.status


def progress_printer(stream: TextIO, label: str) -> Callable[[dict[str, Any]], None]:
    """A progress hook that rewrites one terminal line per evaluation."""

    def show(row: dict[str, Any]) -> None:
        val = row.get("val_accuracy")
        text = (
            f"\r{label}  step {row['step']}/{row['total_steps']}  epoch {row['epoch']:.2f}  "
            f"train loss {row['train_loss']:.4f}"
            + (f"  val acc {val:.3f}" if val is not None else "")
        )
        stream.write(text[:160].ljust(80))
        stream.flush()

    return show


def progress_hooks(label: str, stream: TextIO | None):
    if stream is None or not stream.isatty():
        return None
    from nnopt.train.engine import Hooks

    return Hooks(progress=progress_printer(stream, label))


def run_batch(
    items: Iterable[Mapping[str, Any]],
    *,
    threads: int | None = None,
    log: TextIO | None = None,
    data_cache: str | Path | None = None,
    progress: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Train items ({study, factors, spec: RunSpec, out, cohort?}) in this process: the
    cohorts first (nnopt.train.cohort_runner), then the other runs one after the other, in
    the order given, after one untimed warm-up step.

    `threads` overrides spec.device.threads for execution only (the record keeps the spec).
    Prints one line per run to `log`; returns manifest rows
    {run_id, study, status, out, trained}.
    """
    from nnopt.train.cohort_runner import run_cohorts, warm_up

    items = list(items)
    if any(not is_finished(i["out"], i["spec"].run_id) for i in items):
        warm_up(threads, items[0]["spec"].device.device)  # untimed: first-call costs
    rows = run_cohorts(items, threads=threads, log=log, data_cache=data_cache)  # stacked
    stacked = {row["out"] for row in rows}
    for item in items:
        spec: RunSpec = item["spec"]
        out = Path(item["out"])
        if str(out) in stacked:
            continue
        trained = not is_finished(out, spec.run_id)
        t0 = time.perf_counter()
        status = run_one(
            spec, out, study=item["study"], factors=item.get("factors"), threads=threads,
            hooks=progress_hooks(f"{item['study']}/{spec.run_id}", progress), data_cache=data_cache,
        )  # fmt: skip
        if progress is not None and progress.isatty():
            progress.write("\r" + " " * 80 + "\r")
        if log is not None:
            verb = "trained" if trained else "skipped"
            seconds = time.perf_counter() - t0
            print(f"{item['study']}/{spec.run_id} {status} ({verb}, {seconds:.1f} s) -> {out}",
                  file=log, flush=True)  # fmt: skip
        row = {"run_id": spec.run_id, "study": item["study"], "status": status}
        rows.append({**row, "out": str(out), "trained": trained})
    return rows
