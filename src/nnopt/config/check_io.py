"""Pre-flight checks of what a run reads and writes: data files, devices, output folders.

Used by `nnopt.config.check` (and so by `nnopt check`, `nnopt train` and the workflow) before any
job starts. Each check raises `SpecError` with one line naming the key and the file.
No torch import unless a spec asks for CUDA or for an image set that only torchvision reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nnopt.config.spec import DataSpec, DeviceSpec, SpecError, did_you_mean

__all__ = [
    "read_table",
    "check_table",
    "check_data",
    "check_device",
    "check_writable",
    "check_out_dir",
    "regular_file",
    "read_record",
    "RUN_DIR_FILES",
    "NO_DEVICE_CHECK",
    "FLOAT32_MAX",
]

# Set (to anything but 0) when jobs run on other machines than the one that checks them.
NO_DEVICE_CHECK = "NNOPT_NO_DEVICE_CHECK"
# Features become float32 tensors: a larger magnitude (1e308 is a finite float64) is inf there.
FLOAT32_MAX = 3.4028234663852886e38


def _not_finite(column: Any) -> Any:
    """Boolean Series: missing, NaN or inf entries of a numeric column."""
    import polars as pl

    as_float = column.cast(pl.Float64)
    return as_float.is_null() | ~(as_float.abs() <= FLOAT32_MAX)  # NaN and inf compare False


def _numeric_column(path: Path, column: Any) -> Any:
    """The column as numbers; a CSV column with 'nan'/'inf' spelled as text reads as String."""
    import polars as pl

    if column.dtype.is_numeric():
        return column
    as_float = column.cast(pl.Float64, strict=False) if column.dtype == pl.String else None
    text = column.is_not_null() & (as_float.is_null() if as_float is not None else True)
    if as_float is not None and not text.any():
        return as_float  # numbers with NaN/inf written as text: the finiteness check reports
    row = int(text.arg_max()) if as_float is not None else 0
    raise SpecError(
        f"data.path: {path} column {column.name!r} is {column.dtype}, not numeric (value "
        f"{column[row]!r} at data row {row + 1}); allowed: numeric feature columns (drop or "
        "encode the others)"
    )


def read_table(path: str | Path) -> Any:
    """The one table reader (the check and the loader): every row decides a column's type,
    so a column that turns decimal after row 100 reads the same in both."""
    import polars as pl

    path = Path(path)

    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=None)
    except Exception as err:  # polars/pyarrow raise many types; all mean "cannot read"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"data.path: cannot read {path}: {first}") from None


def check_table(path: str | Path, label_column: str) -> Any:
    """A table must have a label column, numeric finite features and at least 2 classes;
    returns the label column (a Polars Series) for the split-size checks."""
    path = Path(path)
    frame = read_table(path)
    if frame.height == 0:
        raise SpecError(f"data.path: {path} has no rows")
    if label_column not in frame.columns:
        raise SpecError(
            f"data.label_column: {path} has no column {label_column!r}; allowed: "
            + ", ".join(frame.columns) + did_you_mean(label_column, frame.columns)
        )
    features = frame.drop(label_column)
    if not features.columns:
        raise SpecError(f"data.path: {path} has no feature columns besides {label_column!r}")
    for name in features.columns:
        column = _numeric_column(path, features[name])
        bad = _not_finite(column)
        if bad.any():
            raise SpecError(
                f"data.path: {path} column {name!r} has {int(bad.sum())} missing, NaN or inf "
                f"values (first at data row {int(bad.arg_max()) + 1}; beyond float32's range "
                "counts as inf); allowed: finite numbers with |x| <= 3.4e38"
            )
    _check_labels(path, frame[label_column])
    return frame[label_column]


def _check_labels(path: Path, labels: Any) -> None:
    where = f"data.label_column: {path} column {labels.name!r}"
    if labels.null_count():
        raise SpecError(f"{where} has {labels.null_count()} missing labels")
    if labels.dtype.is_float():
        fractional = labels.is_nan() | labels.is_infinite() | (labels != labels.floor())
        if fractional.any():
            row = int(fractional.arg_max())
            raise SpecError(
                f"{where} has a non-integer label {labels[row]!r} at data row {row + 1}; allowed: "
                "integer class ids >= 0 or text class names"
            )
    if labels.dtype.is_numeric() and labels.min() < 0:
        row = int((labels < 0).arg_max())
        raise SpecError(
            f"{where} has label {labels[row]!r} at data row {row + 1}, out of range; allowed: "
            "integer class ids >= 0 (negative ids often mean 'unlabeled')"
        )
    n_classes = labels.n_unique()
    if n_classes < 2:
        raise SpecError(f"{where} has {n_classes} class; allowed: at least 2 classes")
    if n_classes > len(labels) // 2:
        raise SpecError(
            f"{where} has {n_classes} distinct values in {len(labels)} rows; allowed: at most "
            "half as many classes as rows (is it the label column?)"
        )


# Pool sizes of the generated sets when data.n_samples is unset (nnopt.train.data's loaders;
# tests/workflow/test_reliability.py checks that the counts below match the loaded splits).
_GENERATED_DEFAULT_N = {"blobs": 1500, "spirals": 1500}


def _class_counts(data: DataSpec, labels: Any) -> list[int] | None:
    """Samples per class of the pool the split sees; None where only loading would tell."""
    import numpy as np

    from nnopt.config.splits import subsample_indices

    if data.name in _GENERATED_DEFAULT_N:  # label i % n_classes for sample i
        n, k = data.n_samples or _GENERATED_DEFAULT_N[data.name], data.n_classes
        return [len(range(c, n, k)) for c in range(k)]
    if labels is None:
        return None
    values = labels.to_numpy()
    keep = subsample_indices(len(values), data.n_samples, data.split_seed)
    _, counts = np.unique(values if keep is None else values[keep], return_counts=True)
    return [int(c) for c in counts]


def check_data(data: DataSpec) -> list[int] | None:
    """The dataset files a spec reads exist, are readable and hold valid data.

    Returns the samples per class of the pool that will be split (None when unknown
    without loading the set: mnist1d, digits, torchvision) for `nnopt.config.check_fit`.
    """
    if data.path is None:
        return _class_counts(data, None)  # generated or bundled datasets
    path = Path(data.path)
    if not path.exists():
        raise SpecError(f"data.path: file or folder not found: {path.resolve()}")
    if data.name == "torchvision":
        if not path.is_dir():
            raise SpecError(f"data.path: {path} must be a folder (the torchvision root)")
        _check_vision(data, path)
        return None
    if not path.is_file():
        what = "a folder" if path.is_dir() else "a device, socket or pipe"
        raise SpecError(f"data.path: {path} must be a .csv or .parquet file, not {what}")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as err:
        raise SpecError(f"data.path: cannot read {path} ({err.strerror})") from None
    return _class_counts(data, check_table(path, data.label_column))


def _check_vision(data: DataSpec, path: Path) -> None:
    """Native sets need their files; the others an importable torchvision (else every job
    would fail): a missing or broken one (built for another torch) is one line here."""
    from nnopt.config.vision import NATIVE_VISION, missing_vision_files

    name = data.torchvision_name
    if name in NATIVE_VISION:
        missing = missing_vision_files(name, path)
        if missing:
            raise SpecError(
                f"data.path: torchvision dataset {name} not found under {path}: missing "
                f"{missing[0]} ({len(missing)} files missing; nothing is downloaded here)"
            )
        return
    try:
        import torchvision  # noqa: F401  (imports torch: only for sets nnopt cannot read)
    except Exception as err:  # ImportError, or RuntimeError of a build for another torch
        why = " ".join(str(err).split())[:200]
        raise SpecError(
            f"data.torchvision_name: {name!r} needs torchvision, which does not import here "
            f"({type(err).__name__}: {why}); allowed without it: {', '.join(NATIVE_VISION)} "
            "(see README, 'Image data')"
        ) from None


def _cuda_device_count() -> int:
    import torch  # only reached for specs that ask for CUDA

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a Slurm allocation or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Threads or CPU ranks (one process each) per usable core: a study may oversubscribe a small
# machine on purpose (the shipped `parallel` study runs 4 ranks on 2 cores to measure the
# overhead), but 100000 threads or 64 ranks on 2 cores only exhaust it.
OVERSUBSCRIBE = 4


def _check_cores(device: DeviceSpec, n_gpus: int) -> None:
    cores = _usable_cores()
    allowed = OVERSUBSCRIBE * cores
    cpu_ranks = device.world_size if device.device == "cpu" or n_gpus == 0 else 1
    for key, wanted in (("device.threads", device.threads), ("device.world_size", cpu_ranks)):
        if wanted > allowed:
            raise SpecError(
                f"{key}: {wanted} on a machine that gives nnopt {cores} cores; allowed: 1 to "
                f"{allowed} ({OVERSUBSCRIBE} per core; or set {NO_DEVICE_CHECK}=1 when jobs run "
                "on other machines)"
            )


def check_device(device: DeviceSpec) -> None:
    """A spec must not ask for GPUs or cores this machine does not have (auto falls back to
    cpu); `NNOPT_NO_DEVICE_CHECK=1` leaves that to the machines that run the jobs."""
    if os.environ.get(NO_DEVICE_CHECK, "") not in ("", "0"):
        return  # jobs may run on other machines (a Slurm cluster's GPU nodes)
    needs_count = device.device == "cuda" or (device.device == "auto" and device.world_size > 1)
    n_gpus = _cuda_device_count() if needs_count else 0
    if device.device != "cuda":
        _check_cores(device, n_gpus)
    if not needs_count:
        return
    if device.device == "cuda" and n_gpus == 0:
        raise SpecError(
            "device.device: 'cuda' but this machine has no CUDA GPU; allowed: cpu, auto "
            f"(or set {NO_DEVICE_CHECK}=1 when jobs run on other machines, e.g. Slurm)"
        )
    if n_gpus and device.world_size > n_gpus:
        raise SpecError(
            f"device.world_size: {device.world_size} ranks on device '{device.device}' need "
            f"{device.world_size} GPUs, this machine has {n_gpus}; allowed: 1 to {n_gpus}"
        )


def check_writable(folder: str | Path, key: str = "out") -> None:
    """`folder` exists or can be made, and a file can be written in it (before any training).

    Creating and deleting a small probe file catches read-only file systems, missing rights,
    a file where a folder should be, and a disk that is already full.
    """
    import errno
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".nnopt-write-probe-")
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        where = err.filename or folder
        why = err.strerror or errno.errorcode.get(err.errno or 0, str(err))
        raise SpecError(f"{key}: cannot write to {where} ({why})") from None


# What a run directory holds (nnopt.store.runs.write_run; snapshots.pt: the engine's weight
# snapshots, nnopt.train.strategy.SNAPSHOTS_NAME). A folder with anything else is not one.
RUN_DIR_FILES = ("metrics.json", "curve.parquet", "snapshots.pt")
# A metrics.json is a few kB; a bigger "record" is not read into memory to find out.
_MAX_RECORD_BYTES = 64 * 2**20


def regular_file(path: str | Path, max_bytes: int | None = None) -> bool:
    """True when `path` is a regular file (through symlinks) of at most `max_bytes`: a pipe
    or device in its place would block or never end a read, so callers check this first."""
    import stat

    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return False
    return stat.S_ISREG(st.st_mode) and (max_bytes is None or st.st_size <= max_bytes)


def read_record(path: str | Path) -> Any:
    """The JSON of a small regular file (a run's metrics.json), or None: missing, not a
    regular file (a pipe would block), too big, or not JSON."""
    import json

    if not regular_file(path, _MAX_RECORD_BYTES):
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_run_directory(folder: Path) -> bool:
    """True when folder/metrics.json is a run record (an object with a run_id string) and the
    folder holds nothing but the regular files a run directory holds (so replacing it deletes
    nothing of the user's)."""
    record = read_record(folder / "metrics.json")
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        return False
    return all(p.name in RUN_DIR_FILES and not p.is_symlink() and regular_file(p)
               for p in folder.iterdir())  # fmt: skip


def check_out_dir(out: str | Path, key: str = "--out") -> None:
    """`out` may be written as a run directory, replacing only what is one (before training).

    A run is written beside `out` and renamed over it, the old one moved aside and deleted:
    so `out` must be new, an empty folder, or a run directory: a metrics.json naming a run and
    nothing but the files a run writes (RUN_DIR_FILES). A symbolic link, a file, a device
    node, a folder of other files (a user's file beside a run's is one) or a mount point
    (which cannot be renamed) is refused; then both `out` and its parent must take a write.
    """
    out = Path(out)
    if out.is_symlink():
        what = "a symbolic link"
    elif out.exists() and not out.is_dir():
        what = "a file" if out.is_file() else "not a folder (a device, socket or pipe)"
    elif out.is_dir() and os.path.ismount(out):
        what = "a mount point, which cannot be replaced"
    elif out.is_dir() and any(out.iterdir()) and not _is_run_directory(out):
        what = ("a folder that is not a run directory (a metrics.json naming a run, and only "
                f"{', '.join(RUN_DIR_FILES)})")
    else:
        what = None
    if what is not None:
        raise SpecError(
            f"{key}: {out} is {what}; nothing was written; allowed: a new path, an empty "
            "folder or an earlier run directory (which is replaced)"
        )
    check_writable(out.parent, key=key)
    if out.is_dir():
        check_writable(out, key=key)
