"""Datasets: a registry of loaders, one deterministic split, standardization, an .npz cache.

Every loader returns the whole pool of samples `(x, y, input_shape)` as numpy arrays; the
split into train/val/test (stratified, seeded by `data.split_seed`) and the standardization
(fitted on train only) are shared. No torch here: the engine turns arrays into tensors.

`prepare_dataset(data_spec, cache_dir)` writes the prepared arrays once to an uncompressed
`.npz` keyed by a hash of the DataSpec (so `np.load(..., mmap_mode='r')` works) and
`load_dataset(data_spec, cache_dir)` reads it back, building it on a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnopt.store.atomic import atomic_path
from nnopt.config.spec import DataSpec, SpecError, did_you_mean

__all__ = [
    "Dataset",
    "DATASET_LOADERS",
    "load_dataset",
    "prepare_dataset",
    "cache_path",
    "data_key",
    "split_indices",
]

# Bump when the prepared arrays of an unchanged DataSpec would change (cache invalidation).
_FORMAT_VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Prepared arrays: x_* float32 of shape (n, *input_shape), y_* int64 of shape (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _ARRAYS}


# --- loaders: DataSpec -> (x (n, *shape) float, y (n,) int labels, input_shape) ----------

Pool = tuple[np.ndarray, np.ndarray, tuple[int, ...]]


def _mnist1d(spec: DataSpec) -> Pool:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = spec.n_samples or 4000
    args.seed = spec.split_seed
    # make_dataset reseeds numpy's global RNG; restore it so callers are unaffected.
    saved = np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(saved)
    # Pool the package's own train/test split; our split below is the one that counts.
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)  # (n, 40)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    return x, y, (x.shape[1],)


def _digits(spec: DataSpec) -> Pool:
    from sklearn.datasets import load_digits  # only this loader needs scikit-learn

    bunch = load_digits()
    x = bunch.data.astype(np.float32)  # (1797, 64): 8x8 images, flattened
    return x, bunch.target.astype(np.int64), (64,)


def _spirals(spec: DataSpec) -> Pool:
    """K interleaved 2-D spiral arms with Gaussian noise (the classic CS231n toy set)."""
    rng = np.random.default_rng(spec.split_seed)
    n, k = spec.n_samples or 1500, spec.n_classes
    y = np.arange(n) % k
    radius = rng.uniform(0.05, 1.0, n)
    theta = y * (2 * np.pi / k) + radius * 4.0 + rng.normal(0, spec.noise, n) * 2.0
    x = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return x.astype(np.float32), y.astype(np.int64), (2,)


def _blobs(spec: DataSpec) -> Pool:
    """K isotropic Gaussian blobs in n_features dimensions; `noise` is the blob std."""
    rng = np.random.default_rng(spec.split_seed)
    n, k, d = spec.n_samples or 1500, spec.n_classes, spec.n_features
    centers = rng.uniform(-1.0, 1.0, (k, d))
    y = np.arange(n) % k
    x = centers[y] + rng.normal(0.0, max(spec.noise, 1e-6), (n, d))
    return x.astype(np.float32), y.astype(np.int64), (d,)


def _table(spec: DataSpec) -> Pool:
    import polars as pl

    path = Path(spec.path)
    frame = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path)
    if spec.label_column not in frame.columns:
        raise SpecError(
            f"data.label_column: {path} has no column {spec.label_column!r}; columns: "
            + ", ".join(frame.columns)
            + did_you_mean(spec.label_column, frame.columns)
        )
    features = frame.drop(spec.label_column)
    for name, dtype in features.schema.items():
        if not dtype.is_numeric():
            raise SpecError(
                f"data.path: {path} column {name!r} is {dtype}, not numeric; "
                "drop or encode it (every column except the label is a feature)"
            )
    x = features.to_numpy().astype(np.float64)
    for j in np.flatnonzero(~np.isfinite(x).all(axis=0)):
        raise SpecError(f"data.path: {path} column {features.columns[j]!r} has NaN or inf values")
    # Labels of any type map to 0..K-1 in sorted order of their distinct values.
    labels = frame[spec.label_column]
    if labels.null_count():
        raise SpecError(f"data.label_column: {path} column {spec.label_column!r} has nulls")
    _, y = np.unique(labels.to_numpy(), return_inverse=True)
    return x.astype(np.float32), y.astype(np.int64), (x.shape[1],)


def _torchvision(spec: DataSpec) -> Pool:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise SpecError(
            "data.name: 'torchvision' needs the torchvision package (pip install torchvision "
            "matching your torch version)"
        ) from None
    cls = getattr(tvd, spec.torchvision_name, None)
    if cls is None:
        raise SpecError(
            f"data.torchvision_name: unknown dataset {spec.torchvision_name!r}"
            + did_you_mean(spec.torchvision_name, dir(tvd))
        )
    parts = []
    for train in (True, False):  # pool both official splits; our split decides
        try:
            ds = cls(root=spec.path, train=train, download=False)
        except (RuntimeError, FileNotFoundError) as err:
            raise SpecError(
                f"data.path: {spec.torchvision_name} not found under {spec.path} "
                f"(never downloaded here): {err}"
            ) from None
        data = np.asarray(ds.data, dtype=np.float32)
        parts.append((data, np.asarray(ds.targets, dtype=np.int64)))
    x = np.concatenate([p[0] for p in parts])
    if x.ndim == 3:  # (n, H, W) grey images -> (n, 1, H, W)
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):  # (n, H, W, C) -> (n, C, H, W)
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x / 255.0, dtype=np.float32)
    return x, np.concatenate([p[1] for p in parts]), tuple(x.shape[1:])


DATASET_LOADERS: dict[str, Callable[[DataSpec], Pool]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "spirals": _spirals,
    "blobs": _blobs,
    "table": _table,
    "torchvision": _torchvision,
}


# --- split and standardization -------------------------------------------------------------


def split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split: each class contributes its share to val and test."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    # Shuffle within each split so that classes are interleaved (order is seed-determined).
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple:
    if n is None or n >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng([seed, 1]).choice(len(y), n, replace=False))
    return x[keep], y[keep]


def _build(spec: DataSpec) -> Dataset:
    x, y, shape = DATASET_LOADERS[spec.name](spec)
    if spec.name in ("digits", "table", "torchvision"):  # generators already used n_samples
        x, y = _subsample(x, y, spec.n_samples, spec.split_seed)
    train, val, test = split_indices(y, spec.val_fraction, spec.test_fraction, spec.split_seed)
    if len(train) == 0 or len(test) == 0:
        raise SpecError(f"data: split left an empty train or test set ({len(y)} samples)")
    x = x.reshape(len(y), -1)  # standardize per feature on the flat view
    if spec.standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)  # constant features stay at zero
    x = x.astype(np.float32).reshape(len(y), *shape)
    return Dataset(
        x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
        x_test=x[test], y_test=y[test],
        n_classes=int(y.max()) + 1, input_shape=tuple(int(s) for s in shape),
    )  # fmt: skip


# --- cache ---------------------------------------------------------------------------------


def data_key(spec: DataSpec) -> str:
    """16 hex digits identifying the prepared arrays (spec + source file identity)."""
    payload = {"version": _FORMAT_VERSION, "spec": dataclasses.asdict(spec)}
    if spec.path is not None and Path(spec.path).is_file():
        stat = Path(spec.path).stat()  # a changed table file must not hit a stale cache
        payload["file"] = [str(Path(spec.path).resolve()), stat.st_size, stat.st_mtime_ns]
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(spec: DataSpec, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"{spec.name}-{data_key(spec)}.npz"


def prepare_dataset(spec: DataSpec, cache_dir: str | Path) -> Path:
    """Write the prepared arrays to `cache_dir` once (atomically); return the .npz path."""
    path = cache_path(spec, cache_dir)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _build(spec)
    meta = np.array(json.dumps({"n_classes": ds.n_classes, "input_shape": ds.input_shape}))
    # Concurrent writers produce identical files; the last rename wins.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=meta, **ds.arrays())  # uncompressed: mmap-able members
    return path


def _read_cache(path: Path) -> Dataset:
    with np.load(path, mmap_mode="r") as npz:
        meta = json.loads(str(npz["meta"]))
        arrays = {name: np.asarray(npz[name]) for name in _ARRAYS}
    return Dataset(**arrays, n_classes=meta["n_classes"], input_shape=tuple(meta["input_shape"]))


def load_dataset(spec: DataSpec, cache_dir: str | Path | None = None) -> Dataset:
    """The prepared dataset; with `cache_dir`, read from (or first written to) the cache."""
    if cache_dir is None:
        return _build(spec)
    return _read_cache(prepare_dataset(spec, cache_dir))
