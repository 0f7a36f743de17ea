"""The run directory (docs/contract.md §2): metrics.json + curve.parquet, written atomically.

A run directory is first written as `.{run_id}.tmp-*` beside its final place, every file
fsynced, then renamed: a directory that exists is complete. No torch here.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import platform
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.check_io import read_record, regular_file
from nnopt.config.metrics import METRIC_NAMES
from nnopt.store.atomic import folder_mode

__all__ = [
    "SCHEMA_VERSION",
    "METRIC_NAMES",
    "CURVE_COLUMNS",
    "curve_schema",
    "RunResult",
    "write_run",
    "read_run",
    "read_curve",
    "is_finished",
    "mark_pruned",
    "provenance",
    "now_iso",
]

SCHEMA_VERSION = 1
# `pruned`: a search trial stopped at a lower budget (nnopt.search); finished, never retried.
FINISHED_STATUSES = ("ok", "diverged", "pruned")

# curve.parquet columns and their Polars dtype names.
CURVE_COLUMNS = {
    "step": "Int64",
    "epoch": "Float64",
    "train_time_s": "Float64",
    "lr": "Float64",
    "train_loss": "Float64",
    "train_accuracy": "Float64",
    "val_loss": "Float64",
    "val_accuracy": "Float64",
    "grad_norm": "Float64",
    "weight_norm": "Float64",
    "layer_grad_norms": "List(Float64)",
}


@dataclass
class RunResult:
    """What `engine.train` returns: plain data, no tensors."""

    status: str  # ok | diverged | failed
    error: str | None = None
    traceback: str | None = None
    diverged_at_step: int | None = None
    metrics: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(METRIC_NAMES))
    curve: list[dict[str, Any]] = field(default_factory=list)  # one dict per eval point
    layer_names: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # extra files of the run directory


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask: a Slurm allocation or a
    container limit, not the whole host)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions and host facts that explain a run's numbers; `extra` adds engine facts."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info = {
        "nnopt": ver("nnopt"),
        "torch": ver("torch"),
        "numpy": ver("numpy"),
        "polars": ver("polars"),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": usable_cpus(),
    }
    info.update(extra)
    return info


def curve_schema() -> dict[str, Any]:
    """CURVE_COLUMNS as Polars dtypes, in order (the writer here and every reader use it)."""
    import polars as pl  # lazy: the training side imports this module without needing polars

    def dtype(name: str) -> Any:  # "List(Float64)" -> pl.List(pl.Float64)
        if name.startswith("List(") and name.endswith(")"):
            return pl.List(dtype(name[5:-1]))
        return getattr(pl, name)

    return {column: dtype(kind) for column, kind in CURVE_COLUMNS.items()}


def _curve_frame(rows: list[dict[str, Any]]):
    import polars as pl

    schema = curve_schema()
    columns = {c: [row.get(c) for row in rows] for c in schema}
    return pl.DataFrame(columns, schema=schema)


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _fsync_write(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:  # ENOSPC from write() carries no file name: add it
        raise OSError(err.errno, err.strerror, str(path)) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_run(
    out_dir: str | Path,
    result: RunResult,
    *,
    run_id: str,
    study: str,
    factors: Mapping[str, Any],
    spec: Mapping[str, Any],
) -> Path:
    """Write `result` to `out_dir` atomically; replaces an existing (e.g. failed) run."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "study": study,
        "factors": dict(factors),
        "seed": spec.get("seed"),
        "status": result.status,
        "error": result.error,
        "traceback": result.traceback,
        "diverged_at_step": result.diverged_at_step,
        "spec": dict(spec),
        "metrics": {name: result.metrics.get(name) for name in METRIC_NAMES},
        "layer_names": list(result.layer_names),
        "curve_rows": len(result.curve),  # is_finished checks curve.parquet against it
        "provenance": result.provenance,
    }
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp makes 0700; the umask says who may read
        text = json.dumps(_clean(record), indent=1, allow_nan=False, default=str)
        _fsync_write(tmp / "metrics.json", text.encode())
        # Serialized in memory, written by _fsync_write: a full disk then raises an OSError
        # naming the file, not a polars ComputeError.
        curve = io.BytesIO()
        _curve_frame(result.curve).write_parquet(curve)
        _fsync_write(tmp / "curve.parquet", curve.getvalue())
        for name, data in result.files.items():  # e.g. the engine's snapshots.pt
            _fsync_write(tmp / name, data)
        _fsync_dir(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """rename(tmp, out); an existing `out` is moved aside first and removed after.

    Two writers of the same run (two processes given the same --out) may interleave: the
    move-aside can find `out` gone, or the rename can find a new `out` in place
    (ENOTEMPTY/EEXIST). Each writer then retries; the last complete directory wins and
    no writer crashes or leaves its moved-aside copy behind.
    """
    for _ in range(20):
        old = out.parent / f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.rename(out, old)
        except FileNotFoundError:
            old = None  # no previous run, or another writer moved it first
        try:
            os.rename(tmp, out)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # another writer's directory appeared in between: move it aside, retry
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(out.parent)
        return
    raise OSError(errno.EEXIST, "other writers keep replacing this run directory", str(out))


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The parsed metrics.json of a run directory."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def read_curve(run_dir: str | Path):
    import polars as pl

    return pl.read_parquet(Path(run_dir) / "curve.parquet")


def _curve_rows(run_dir: Path) -> int | None:
    """Rows of curve.parquet, or None when it is missing or not a readable curve table."""
    import polars as pl

    path = run_dir / "curve.parquet"
    if not regular_file(path):  # a pipe or device in its place would block the read
        return None
    try:
        schema = pl.read_parquet_schema(path)
        if not set(CURVE_COLUMNS) <= set(schema):
            return None
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except Exception:  # noqa: BLE001 (polars raises several types for a damaged file)
        return None


def is_finished(run_dir: str | Path, run_id: str) -> bool:
    """True when the directory holds a complete, valid ok/diverged result of `run_id`.

    Complete and valid: metrics.json parses, names this run id, has status ok or diverged,
    and curve.parquet is a readable curve table with the rows metrics.json records
    (`curve_rows`; a record from before that field needs at least one row). A failed run is
    not finished: rerunning the workflow retries it; so is a damaged or half-deleted one.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir / "metrics.json")  # None: missing, a pipe, too big, not JSON
    if not isinstance(record, dict) or record.get("run_id") != run_id:
        return False
    if record.get("status") not in FINISHED_STATUSES:
        return False
    rows = _curve_rows(run_dir)
    expected = record.get("curve_rows")
    return rows is not None and (rows == expected if expected is not None else rows > 0)


def mark_pruned(run_dir: str | Path) -> None:
    """Set a finished run's status to `pruned` (curve and metrics kept), atomically."""
    path = Path(run_dir) / "metrics.json"
    record = json.loads(path.read_text())
    if record.get("status") != "ok":
        return  # a diverged or failed trial keeps the status that explains it
    record["status"] = "pruned"
    tmp = path.with_name(f".metrics.json.tmp-{os.getpid()}")
    _fsync_write(tmp, json.dumps(record, indent=1, allow_nan=False, default=str).encode())
    os.replace(tmp, path)
