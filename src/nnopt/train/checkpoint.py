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
    "capture_state",
    "restore_state",
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


# --- what a checkpoint holds: the trainer's state at an epoch end ----------------------------

# Plain attributes of the engine's trainer saved as they are (numbers, lists, dicts).
_PLAIN = (
    "step", "epochs_done", "samples", "loss_count", "curve", "best_val_accuracy",
    "best_val_step", "stale_evals", "reached", "train_time_s", "eval_time_s",
    "opt_state_bytes",
)  # fmt: skip


def capture_state(trainer: Any) -> dict[str, Any]:
    """Everything needed to continue bit-identically: weights, optimizer, schedule,
    gradient scaler, RNG streams (global torch RNG for dropout, the batch-order
    generator), counters, curve, best state and timers."""
    state = {name: getattr(trainer, name) for name in _PLAIN}
    state.update(
        run_id=trainer.spec.run_id,
        model=trainer.model.state_dict(),
        optimizer=trainer.opt.state_dict(),
        schedule=trainer.schedule.state_dict(),
        scaler=None if trainer.scaler is None else trainer.scaler.state_dict(),
        rng_cpu=torch.get_rng_state(),
        rng_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        generator=trainer.generator.get_state(),
        best_state=trainer.best_state,
        loss_sum=trainer.loss_sum.detach().cpu(),
        wall_s=trainer.wall_time_s(),
    )
    return state


def restore_state(trainer: Any, state: dict[str, Any]) -> None:
    for name in _PLAIN:
        setattr(trainer, name, state[name])
    trainer.model.load_state_dict(state["model"])
    trainer.opt.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    if trainer.scaler is not None and state["scaler"] is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    trainer.generator.set_state(state["generator"])
    best = state["best_state"]
    device = trainer.device
    trainer.best_state = None if best is None else {k: v.to(device) for k, v in best.items()}
    trainer.loss_sum = state["loss_sum"].to(device)
    trainer.prior_wall_s = state["wall_s"]
