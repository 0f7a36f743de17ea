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

from nnopt.config.check_io import read_table
from nnopt.store.atomic import atomic_path
from nnopt.config.spec import DataSpec, SpecError, did_you_mean
from nnopt.config.splits import class_split_sizes, subsample_indices

__all__ = [
    "Dataset",
    "DATASET_LOADERS",
    "load_dataset",
    "prepare_dataset",
    "cache_path",
    "data_key",
    "split_indices",
    "STANDARD_PARTITIONS",
]

# Bump when the prepared arrays of an unchanged DataSpec would change (cache invalidation).
_FORMAT_VERSION = 2  # 2: data.partition (standard partitions)
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


def _mnist1d_raw(spec: DataSpec) -> dict:
    """The package's generator output: x (n_train, 40), y, x_test, y_test.

    standard: the published set (the package's default arguments, its seed 42: 4000 train /
    1000 test for 5000 samples; `n_samples` generates another size with the same 80/20 split);
    pooled: `n_samples` (default 4000) generated with seed `split_seed` (nnopt's old default).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if spec.partition == "pooled":
        args.num_samples = spec.n_samples or 4000
        args.seed = spec.split_seed
    elif spec.n_samples is not None:
        args.num_samples = spec.n_samples
    # make_dataset reseeds numpy's global RNG; restore it so callers are unaffected.
    saved = np.random.get_state()
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(saved)


def _mnist1d(spec: DataSpec) -> Pool:
    """Pooled: the package's train and test parts together; our split decides."""
    raw = _mnist1d_raw(spec)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)  # (n, 40)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    return x, y, (x.shape[1],)


def _mnist1d_standard(spec: DataSpec) -> tuple[Pool, Pool]:
    """(train pool, test pool) of the published partition (Greydanus 2020)."""
    raw = _mnist1d_raw(spec)
    shape = (raw["x"].shape[1],)
    return (
        (raw["x"].astype(np.float32), np.asarray(raw["y"], dtype=np.int64), shape),
        (raw["x_test"].astype(np.float32), np.asarray(raw["y_test"], dtype=np.int64), shape),
    )


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
    path = Path(spec.path)
    frame = read_table(path)  # the reader the check used: full schema inference, every row
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
    # Beyond float32's range a value becomes inf in the tensors: refused like inf itself.
    too_big = ~(np.abs(x) <= np.finfo(np.float32).max)
    for j in np.flatnonzero(too_big.any(axis=0)):
        raise SpecError(
            f"data.path: {path} column {features.columns[j]!r} has NaN or inf values (or values "
            "beyond float32's range, |x| > 3.4e38)"
        )
    # Labels of any type map to 0..K-1 in sorted order of their distinct values.
    labels = frame[spec.label_column]
    if labels.null_count():
        raise SpecError(f"data.label_column: {path} column {spec.label_column!r} has nulls")
    _, y = np.unique(labels.to_numpy(), return_inverse=True)
    return x.astype(np.float32), y.astype(np.int64), (x.shape[1],)


def _torchvision(spec: DataSpec) -> Pool:
    from nnopt.config.vision import NATIVE_VISION

    if spec.torchvision_name in NATIVE_VISION:  # read from the files: no torchvision needed
        from nnopt.train.vision import read_native

        x, y = read_native(spec.torchvision_name, spec.path)
        x = np.ascontiguousarray(x / 255.0, dtype=np.float32)  # (n, C, H, W) in [0, 1]
        return x, y, tuple(x.shape[1:])
    try:
        import torchvision.datasets as tvd
    except Exception as err:  # missing, or built for another torch (fails while importing)
        raise SpecError(
            f"data.torchvision_name: {spec.torchvision_name} needs an importable torchvision "
            f"({type(err).__name__}: {err}); nnopt reads {', '.join(NATIVE_VISION)} without it"
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


def _python(spec: DataSpec) -> Pool:
    """data.name python: the user's loader (contract in nnopt.train.plugins)."""
    from nnopt.train.plugins import load_data_plugin

    return load_data_plugin(spec)


DATASET_LOADERS: dict[str, Callable[[DataSpec], Pool]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "spirals": _spirals,
    "blobs": _blobs,
    "table": _table,
    "torchvision": _torchvision,
    "python": _python,
}

# Datasets with a published train/test partition (data.partition: standard): a loader that
# returns (train pool, test pool). The others are pooled and re-split whatever the setting.
STANDARD_PARTITIONS: dict[str, Callable[[DataSpec], tuple[Pool, Pool]]] = {
    "mnist1d": _mnist1d_standard,
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
        _, n_val, n_test = class_split_sizes(len(idx), val_fraction, test_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    # Shuffle within each split so that classes are interleaved (order is seed-determined).
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple:
    keep = subsample_indices(len(y), n, seed)
    return (x, y) if keep is None else (x[keep], y[keep])


def _pool_and_split(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """All samples (x, y), their shape, and (train, val, test) index arrays into them."""
    if spec.partition == "standard" and spec.name in STANDARD_PARTITIONS:
        (x_tr, y_tr, shape), (x_te, y_te, _) = STANDARD_PARTITIONS[spec.name](spec)
        # Validation is carved from the published train part only; its test part is kept.
        train, val, _ = split_indices(y_tr, spec.val_fraction, 0.0, spec.split_seed)
        test = np.arange(len(y_tr), len(y_tr) + len(y_te), dtype=np.int64)
        return np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te]), shape, (train, val, test)
    x, y, shape = DATASET_LOADERS[spec.name](spec)
    # generators already used n_samples; pools of fixed size are subsampled here
    if spec.name in ("digits", "table", "torchvision", "python"):
        x, y = _subsample(x, y, spec.n_samples, spec.split_seed)
    return x, y, shape, split_indices(y, spec.val_fraction, spec.test_fraction, spec.split_seed)


def _build(spec: DataSpec) -> Dataset:
    x, y, shape, (train, val, test) = _pool_and_split(spec)
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
