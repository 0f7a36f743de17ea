"""Progress of a results tree: runs done out of planned, and an ETA (`nnopt status`).

Reads `{results}/runs/{study}/{run_id}/metrics.json` (written atomically, so a folder that
exists is a finished record) and, when present, `{results}/plan.json` for the number of
planned runs: a JSON list of runs, or a mapping with a `runs` list or a `total` count.
Without a plan the total is the number of run folders found. The ETA divides the runs left
by the recent finishing rate (the last `window` runs by `finished_at`), or, with fewer than
two finished runs, multiplies them by the median run wall time. No torch, no polars.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Progress", "read_progress", "format_progress", "final_metrics_table"]


@dataclass(frozen=True)
class Progress:
    done: int  # ok or diverged
    failed: int
    total: int
    eta_s: float | None
    planned: bool  # total comes from plan.json


def _records(runs_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(runs_dir.glob("*/*/metrics.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # unreadable: neither done nor failed
    return records


def _planned_total(plan_path: Path) -> int | None:
    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(plan, list):
        return len(plan)
    if isinstance(plan, dict):
        if isinstance(plan.get("total"), int):
            return plan["total"]
        if isinstance(plan.get("runs"), (list, dict)):
            return len(plan["runs"])
    return None


def _finished_times(records: list[dict[str, Any]]) -> list[float]:
    times = []
    for record in records:
        stamp = (record.get("provenance") or {}).get("finished_at")
        try:
            times.append(datetime.fromisoformat(stamp).timestamp())
        except (TypeError, ValueError):
            continue
    return sorted(times)


def _eta_s(finished: list[dict[str, Any]], remaining: int, window: int) -> float | None:
    if remaining <= 0:
        return 0.0
    times = _finished_times(finished)[-window:]
    if len(times) >= 2 and times[-1] > times[0]:
        return remaining * (times[-1] - times[0]) / (len(times) - 1)
    walls = [r["metrics"].get("wall_time_s") for r in finished if r.get("metrics")]
    walls = [w for w in walls if isinstance(w, (int, float))]
    return remaining * statistics.median(walls) if walls else None


def read_progress(results: str | Path, *, window: int = 20) -> Progress:
    results = Path(results)
    records = _records(results / "runs")
    finished = [r for r in records if r.get("status") in ("ok", "diverged")]
    failed = sum(r.get("status") == "failed" for r in records)
    planned = _planned_total(results / "plan.json")
    total = planned if planned is not None else len(records)
    return Progress(
        done=len(finished), failed=failed, total=total,
        eta_s=_eta_s(finished, total - len(finished), window), planned=planned is not None,
    )  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def format_progress(p: Progress) -> str:
    """'runs 12/40 done (30%), 1 failed, ETA 3m 20s'."""
    share = f" ({100 * p.done / p.total:.0f}%)" if p.total else ""
    text = f"runs {p.done}/{p.total} done{share}"
    if not p.planned:
        text += " (no plan.json: total = run folders found)"
    if p.failed:
        text += f", {p.failed} failed"
    if p.eta_s is not None and p.done < p.total:
        text += f", ETA {_duration(p.eta_s)}"
    return text


# What `nnopt train` prints when a run ends: (label, metrics.json key, format).
_FINAL_ROWS = (
    ("test accuracy", "test_accuracy", "{:.4f}"),
    ("final train loss", "final_train_loss", "{:.4f}"),
    ("final val loss", "final_val_loss", "{:.4f}"),
    ("test loss", "test_loss", "{:.4f}"),
    ("steps", "steps", "{:d}"),
    ("wall time", "wall_time_s", "{:.2f} s"),
)


def final_metrics_table(record: dict[str, Any]) -> str:
    """A short two-column table of a run record's status and final metrics."""
    metrics = record.get("metrics") or {}
    lines = [f"  {'status':<17}{record['status']}"]
    if record.get("error"):
        lines.append(f"  {'error':<17}{record['error']}")
    for label, key, fmt in _FINAL_ROWS:
        value = metrics.get(key)
        lines.append(f"  {label:<17}{'-' if value is None else fmt.format(value)}")
    return "\n".join(lines)
