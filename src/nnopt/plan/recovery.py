"""One folder, one plan: the per-folder lock, and resuming a folder after `kill -9`.

Every main process of the workflow holds a shared `flock` on `.snakemake/nnopt-main.lock`
for its whole life: the kernel drops it when the process dies, however it dies. It takes
the lock *before* it writes anything (results/plan.json, the per-study slices, the batch
records), and it records the digest of its plan beside the lock (`nnopt-main.plan`).

* An instance that can take the lock exclusively knows that no other nnopt Snakemake
  instance runs in this folder. Snakemake's `.snakemake/locks/*` and the outputs marked in
  `.snakemake/incomplete/` are then what a killed instance left behind ("Directory cannot be
  locked ... --unlock", "--rerun-incomplete"): it removes both (exactly what `--unlock` and
  `--rerun-incomplete` do), records its plan digest, and keeps a shared lock like the others.
* An instance that cannot is a second one while another runs. If its plan differs from the
  recorded one it is refused with one line before it writes anything (a dry run too): it
  would rewrite the plan under the running instance. With the same plan it leaves everything
  alone and holds a shared lock too; Snakemake's own lock then refuses it if its files overlap
  the running one's, so two invocations never write the same files at once.

The check and the record are one step under a second, short-lived exclusive lock
(`nnopt-claim.lock`): `flock` turns a shared lock into an exclusive one (and back) by
releasing it first, so without it two instances could both find the folder free.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nnopt.config.check_io import read_record
from nnopt.config.spec import SpecError
from nnopt.store.atomic import write_json_atomic

__all__ = ["claim_working_dir", "live_plan", "LOCK_NAME", "PLAN_NAME"]

LOCK_NAME = "nnopt-main.lock"
PLAN_NAME = "nnopt-main.plan"  # the live instances' plan digest, written under the lock
_CLAIM_NAME = "nnopt-claim.lock"  # serialises check-and-record (see the module docstring)
_CLAIM_WAIT_S = 60.0  # a claim is milliseconds; longer means a stopped process holds it
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


def _clear_leftovers(state: Path) -> list[str]:
    """Remove a killed instance's Snakemake locks and partial outputs; the removed items."""
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
    return cleaned


@contextmanager
def _claiming(state: Path) -> Iterator[None]:
    """Hold the short claim lock (waits for another instance's claim, at most a minute)."""
    fd = os.open(state / _CLAIM_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _CLAIM_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SpecError(
                        f"{state / _CLAIM_NAME}: another instance has been starting in this "
                        f"folder for over {_CLAIM_WAIT_S:.0f} s (stopped?); allowed: let it go "
                        "on or end it, then run this again"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing drops the claim lock


def live_plan(state_dir: str | Path = ".snakemake") -> dict | None:
    """The record of the live instances' plan (digest, config files, pid), None if unreadable."""
    record = read_record(Path(state_dir, PLAN_NAME))  # None: missing, a pipe, not JSON
    return record if isinstance(record, dict) and "plan" in record else None


def _refuse_other_plan(state: Path, plan_digest: str) -> None:
    """One line when the live instances run another plan than `plan_digest`."""
    record = live_plan(state)
    if record is not None and record["plan"] == plan_digest:
        return
    what = "a plan it did not record" if record is None else (
        f"another plan ({', '.join(map(str, record.get('configfiles') or [])) or 'its config'}"
        f", pid {record.get('pid')})")  # fmt: skip
    raise SpecError(
        f"{Path.cwd()}: another snakemake instance runs in this folder with {what}; allowed: "
        "wait until it ends, run the same config, or give this config its own output: folder"
    )


def claim_working_dir(
    state_dir: str | Path = ".snakemake",
    plan_digest: str | None = None,
    configfiles: list[str] | tuple[str, ...] = (),
) -> list[str] | None:
    """Take the per-folder lock before anything is written; clear a killed instance's leftovers.

    Returns the cleaned items (for a log line) when this is the only instance, None when it
    joins live instances of the same plan. Raises SpecError (one line, nothing written) when
    a live instance runs another plan. `plan_digest` None skips the plan check and record.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with _claiming(state):
        fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                if plan_digest is not None:
                    _refuse_other_plan(state, plan_digest)
            except SpecError:
                os.close(fd)
                raise
            # A live instance of this plan: its locks and markers are real. Hold a shared
            # lock too, so that nobody cleans while this one runs, even after the first ends.
            fcntl.flock(fd, fcntl.LOCK_SH)
            _HELD.append(fd)
            return None
        _HELD.append(fd)
        cleaned = _clear_leftovers(state)
        if plan_digest is not None:
            record = {"plan": plan_digest, "configfiles": [str(p) for p in configfiles],
                      "pid": os.getpid()}  # fmt: skip
            write_json_atomic(state / PLAN_NAME, record)
        fcntl.flock(fd, fcntl.LOCK_SH)  # from now on a live instance like any other
        return cleaned
