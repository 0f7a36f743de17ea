"""The data's fingerprint: the part of a run's identity that the spec's fields cannot see.

`DataSpec.fingerprint` is filled when a spec is parsed, so `RunSpec.run_id` covers the data's
content with no second id scheme: edit a CSV and its runs get new ids and are trained again.

* a table file (.csv/.parquet): `sha256:<hex>` of its bytes;
* a torchvision folder: `sha256:<hex>` over its sorted file list, each file's size and bytes;
* a generated dataset: the generator and its version (`mnist1d 0.0.2.post1`,
  `scikit-learn 1.5.0`; spirals and blobs are built in: `nnopt builtin 1`), so a new
  generator version reruns.

Hashes are cached in memory by (path, size, mtime) of every file, so expanding a study of a
thousand runs over one big file hashes it once per process. No torch, no polars.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

__all__ = ["data_fingerprint", "verify_fingerprint", "GENERATORS", "BUILTIN_VERSION"]

# Generated datasets and the package whose version decides their samples.
GENERATORS = {"mnist1d": "mnist1d", "digits": "scikit-learn"}
# Bump when the in-tree generators (spirals, blobs) change what they draw.
BUILTIN_VERSION = 1
_CHUNK_BYTES = 1 << 20
_HASHES: dict[tuple, str] = {}


@functools.lru_cache(maxsize=None)
def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _files(root: Path) -> list[tuple[str, Path, int, int]]:
    """(relative name, path, size, mtime_ns) of every file under `root`, sorted by name."""
    if root.is_file():
        st = root.stat()
        return [(root.name, root, st.st_size, st.st_mtime_ns)]
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            st = path.stat()
            found.append((str(path.relative_to(root)), path, st.st_size, st.st_mtime_ns))
    return sorted(found)


def _hash_files(files: list[tuple[str, Path, int, int]]) -> str:
    digest = hashlib.sha256()
    for name, path, size, _ in files:
        digest.update(f"{name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def data_fingerprint(name: str, path: str | None, file_root: Path | None = None) -> str:
    """The fingerprint of dataset `name` read from `path` (see the module docstring)."""
    if name in GENERATORS:
        package = GENERATORS[name]
        return f"{package} {_package_version(package)}"
    if path is None:
        return f"nnopt builtin {BUILTIN_VERSION}"
    root = Path(path) if file_root is None else Path(file_root) / path
    files = _files(root)
    key = (str(root.resolve()), tuple((n, s, m) for n, _, s, m in files))
    if key not in _HASHES:
        _HASHES[key] = _hash_files(files)
    return _HASHES[key]


def verify_fingerprint(name: str, path: str | None, planned: str | None) -> None:
    """Before training: the data must still be what the run's id was computed from."""
    from nnopt.config.errors import SpecError

    if planned is None:
        return
    now = data_fingerprint(name, path)
    if now != planned:
        what = f"data.path: {path}" if path is not None else f"data.name: {name}"
        raise SpecError(
            f"{what}: changed since this run was planned (planned {planned[:23]}, now "
            f"{now[:23]}); run snakemake again so the runs of the new data get their own ids"
        )
