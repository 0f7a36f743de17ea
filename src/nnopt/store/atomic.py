"""Atomic file writes: the one implementation every layer uses (no torch, no polars).

A file is written to a unique temporary name beside its target (`.NAME.<random>.tmp`, so two
writers never share one), flushed and fsynced, given the mode a plain `open()` would give it
(0666 minus the umask: a results folder a group shares stays readable by that group), then
renamed over the target. On any error the temporary file is removed and the target is left as
it was. Readers therefore see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "file_mode",
    "folder_mode",
    "current_umask",
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "json_text",
]


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)  # read without changing it (os has no getter)
    return umask


def file_mode() -> int:
    """The mode `open(path, "w")` creates files with here: 0o666 minus the process umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode `mkdir` creates folders with here: 0o777 minus the process umask."""
    return 0o777 & ~current_umask()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some file systems refuse to open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it replaces `path` atomically.

    For writers that want a file name (polars' write_parquet, weasyprint, matplotlib): write
    the whole file to the yielded path. On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the writer may have closed it without fsync
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see the module docstring); return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as err:  # ENOSPC from write() carries no file name: name the target
            raise OSError(err.errno, err.strerror, str(path)) from None
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """The JSON text nnopt writes: one-space indent, a final newline, order kept unless asked."""
    return json.dumps(data, indent=1, sort_keys=sort_keys, default=str) + "\n"


def write_json_atomic(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Write `data` as JSON atomically. Key order is kept unless `sort_keys` (it can matter:
    a random study's params are sampled in the order the user wrote them)."""
    return write_text_atomic(path, json_text(data, sort_keys=sort_keys))
