"""Checkpoint files: atomic, checksummed, loadable with torch.load(weights_only=True).

Layout of `ckpt.pt`: one line `nnopt-ckpt <sha256 hex of payload>\\n`, then the payload
written by `torch.save`. The payload holds only tensors and plain containers of
numbers/strings, so it loads with `weights_only=True` (no pickled code runs). A truncated or
corrupt file fails the checksum or the load; the caller then warns and starts from scratch.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch

from nnopt.store.atomic import write_bytes_atomic

__all__ = [
    "CHECKPOINT_NAME",
    "checkpoint_dir_for",
    "save_checkpoint",
    "load_checkpoint",
    "STATE_FORMAT",
    "save_train_state",
    "load_train_state",
]

CHECKPOINT_NAME = "ckpt.pt"
_MAGIC = b"nnopt-ckpt "


def checkpoint_dir_for(out_dir: str | Path) -> Path:
    """`<out_dir>.ckpt`: beside the run directory, never inside it (that one is atomic)."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.ckpt"


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `directory/ckpt.pt` atomically (temp file, fsync, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    return write_bytes_atomic(directory / CHECKPOINT_NAME, header + payload)


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The saved state, or None when absent; a corrupt file warns and returns None."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        blob = path.read_bytes()
        header, _, payload = blob.partition(b"\n")
        if not header.startswith(_MAGIC):
            raise ValueError("missing nnopt-ckpt header")
        if hashlib.sha256(payload).hexdigest().encode() != header[len(_MAGIC) :]:
            raise ValueError("checksum mismatch (truncated or corrupt)")
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as err:  # any unreadable checkpoint means: start again
        warnings.warn(f"{path}: ignoring unreadable checkpoint ({err}); starting from scratch")
        return None


# --- what a checkpoint holds: a run's TrainState at an epoch end ---------------------------


# Bump when TrainState.state_dict() changes shape: an older checkpoint is then ignored.
STATE_FORMAT = 2


def save_train_state(directory: str | Path, run_id: str, state: Any) -> Path:
    """Checkpoint `state` (a nnopt.train.state.TrainState) of run `run_id`."""
    return save_checkpoint(directory, {"run_id": run_id, "format": STATE_FORMAT,
                                       **state.state_dict()})  # fmt: skip


def load_train_state(directory: str | Path, run_id: str, state: Any) -> bool:
    """Restore `state` from the checkpoint of run `run_id`; False (state untouched) when
    there is none, it is unreadable, of another format (warns), or of another run."""
    saved = load_checkpoint(directory)
    if saved is None or saved.get("run_id") != run_id:
        return False
    if saved.get("format") != STATE_FORMAT:
        warnings.warn(f"{Path(directory) / CHECKPOINT_NAME}: checkpoint format "
                      f"{saved.get('format', 1)}, this engine reads {STATE_FORMAT}; "
                      "starting from scratch")  # fmt: skip
        return False
    state.load_state_dict(saved)
    return True
