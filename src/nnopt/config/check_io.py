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

__all__ = ["check_table", "check_data", "check_device", "check_writable", "NO_DEVICE_CHECK"]

# Set (to anything but 0) when jobs run on other machines than the one that checks them.
NO_DEVICE_CHECK = "NNOPT_NO_DEVICE_CHECK"


def _not_finite(column: Any) -> Any:
    """Boolean Series: missing, NaN or inf entries of a numeric column."""
    import polars as pl

    as_float = column.cast(pl.Float64)
    return as_float.is_null() | as_float.is_nan() | as_float.is_infinite()


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


def _read_table(path: Path) -> Any:
    import polars as pl

    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=None)
    except Exception as err:  # polars/pyarrow raise many types; all mean "cannot read"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"data.path: cannot read {path}: {first}") from None


def check_table(path: str | Path, label_column: str) -> None:
    """A table must have a label column, numeric finite features and at least 2 classes."""
    path = Path(path)
    frame = _read_table(path)
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
                f"values (first at data row {int(bad.arg_max()) + 1}); allowed: finite numbers"
            )
    _check_labels(path, frame[label_column])


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


def check_data(data: DataSpec) -> None:
    """The dataset files a spec reads exist, are readable and hold valid data."""
    if data.path is None:
        return  # generated or bundled datasets
    path = Path(data.path)
    if not path.exists():
        raise SpecError(f"data.path: file or folder not found: {path.resolve()}")
    if data.name == "torchvision":
        if not path.is_dir():
            raise SpecError(f"data.path: {path} must be a folder (the torchvision root)")
        _check_vision(data, path)
        return
    if not path.is_file():
        raise SpecError(f"data.path: {path} must be a .csv or .parquet file, not a folder")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as err:
        raise SpecError(f"data.path: cannot read {path} ({err.strerror})") from None
    check_table(path, data.label_column)


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


def check_device(device: DeviceSpec) -> None:
    """A spec must not ask for GPUs this machine does not have (auto falls back to cpu)."""
    needs_count = device.device == "cuda" or (device.device == "auto" and device.world_size > 1)
    if not needs_count or os.environ.get(NO_DEVICE_CHECK, "") not in ("", "0"):
        return  # jobs may run on other machines (a Slurm cluster's GPU nodes)
    n_gpus = _cuda_device_count()
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
