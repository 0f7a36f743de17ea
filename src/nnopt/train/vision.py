"""Readers for MNIST-style idx files and CIFAR python pickles (layout: nnopt.config.vision).

`read_native(name, root)` -> (x uint8 (n, C, H, W), y int64 (n,)) with both official
splits pooled (nnopt's own split decides). The CIFAR pickles are read with an unpickler
that builds only numpy arrays, lists, dicts and scalars: a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from nnopt.config.spec import SpecError
from nnopt.config.vision import NATIVE_VISION, missing_vision_files, vision_files

__all__ = ["read_native", "read_idx"]


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun et al.): 2 zero bytes, a dtype code (0x08 = uint8), the number of
    dimensions, then each dimension as a big-endian int32, then the data."""
    with _open(path) as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SpecError(f"data.path: {path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise SpecError(f"data.path: {path} is truncated ({data.size} bytes for shape {shape})")
    return data.reshape(shape)


class _ArraysOnly(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }  # fmt: skip

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with _open(path) as handle:
            return _ArraysOnly(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise SpecError(f"data.path: {path} is not a CIFAR batch file ({err})") from None


def _cifar(files: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batches = [_read_pickle(f) for f in files]
    # Each row is 3072 bytes: 1024 red, 1024 green, 1024 blue, row-major 32x32.
    x = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
    return x, y


def read_native(name: str, root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    missing = missing_vision_files(name, root)
    if missing:
        raise SpecError(
            f"data.path: torchvision dataset {name} not found under {root}: missing {missing[0]}"
            f" ({len(missing)} files missing; nothing is downloaded here)"
        )
    kind = NATIVE_VISION[name][0]
    parts = []
    for files in vision_files(name, root).values():  # train, then test
        if kind == "idx":
            x, y = read_idx(files[0])[:, None], read_idx(files[1]).astype(np.int64)
        else:
            x, y = _cifar(files, b"labels" if kind == "cifar10" else b"fine_labels")
        if len(x) != len(y):
            raise SpecError(f"data.path: {files[0]}: {len(x)} images but {len(y)} labels")
        parts.append((x, y))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
