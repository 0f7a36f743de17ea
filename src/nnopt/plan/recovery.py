"""Resuming a working folder after `kill -9`: stale Snakemake locks and incomplete outputs.

Snakemake leaves `.snakemake/locks/*` behind when it is killed, and the next invocation then
refuses to start ("Directory cannot be locked ... --unlock"); outputs of jobs that were
running are marked in `.snakemake/incomplete/` and make it stop again ("--rerun-incomplete").
Neither can be told apart from a live instance by the files alone, so every main process of
the workflow holds a shared `flock` on `.snakemake/nnopt-main.lock` for its whole life: the
kernel drops it when the process dies, however it dies. An instance that can take the lock
exclusively knows that no other nnopt Snakemake instance runs in this folder, so the locks
are stale and the marked outputs are partial: it removes both (exactly what `--unlock` and
`--rerun-incomplete` do), then keeps a shared lock like the others. An instance that cannot
leaves everything alone, and Snakemake's own lock check refuses it if its files overlap a
running one's, so two invocations never write the same files at once.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
from pathlib import Path

__all__ = ["claim_working_dir", "LOCK_NAME"]

LOCK_NAME = "nnopt-main.lock"
_HELD: list[int] = []  # open descriptors: the flock lives as long as this process


def _incomplete_outputs(state: Path) -> list[tuple[Path, Path]]:
    """(marker, output path) pairs of `.snakemake/incomplete`.

    A marker's path is the urlsafe base64 of the output path, cut into folder names of at
    most 255 characters; every folder part carries a leading '@'.
    """
    root = state / "incomplete"
    pairs = []
    for marker in sorted(root.rglob("*")):
        if not marker.is_file():
            continue
        *folders, last = marker.relative_to(root).parts
        if any(not f.startswith("@") for f in folders):
            continue  # not one of Snakemake's markers
        try:
            key = "".join(f[1:] for f in folders) + last
            target = base64.urlsafe_b64decode(key.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        pairs.append((marker, Path(target)))
    return pairs


def claim_working_dir(state_dir: str | Path = ".snakemake") -> list[str] | None:
    """Take the per-folder lock; if it was free, clear what a killed instance left behind.

    Returns the cleaned items (for a log line), or None when another instance holds the lock.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    _HELD.append(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # A live instance: its locks and markers are real. Hold a shared lock too, so that
        # nobody cleans while this one runs, even after the first instance has ended.
        fcntl.flock(fd, fcntl.LOCK_SH)
        return None
    cleaned = []
    locks = state / "locks"
    if locks.is_dir() and any(locks.iterdir()):  # an empty folder is what a clean exit leaves
        shutil.rmtree(locks, ignore_errors=True)
        cleaned.append(str(locks))
    here = Path.cwd().resolve()
    for marker, output in _incomplete_outputs(state):
        if not output.resolve().is_relative_to(here):
            continue  # only ever delete inside the working folder
        if output.is_dir():
            shutil.rmtree(output, ignore_errors=True)
            cleaned.append(str(output))
        elif output.exists():
            output.unlink()
            cleaned.append(str(output))
        marker.unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_SH)  # from now on a live instance like any other
    return cleaned
