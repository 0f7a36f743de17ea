"""The runner's side of cohorts: train a batch's cohorts, write each member's run directory.

Items carry `cohort` (an id from the planner, nnopt.plan.packing.run_items) or None. The
unfinished members of a cohort train together (`train_cohort`) and each writes its own run
directory exactly as `run_one` would; a cohort that raises records every member as failed,
and the next invocation retries them. `warm_up()` runs one tiny untimed training step per
process, so the first timed run of a job does not pay first-call costs (lazy imports,
the deterministic-algorithms import, kernel setup).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from nnopt.config.spec import RunSpec, parse_spec
from nnopt.store.runs import is_finished, now_iso, write_run

__all__ = ["run_cohorts", "warm_up"]

_WARM = False


def warm_up(threads: int | None = None, device: str = "cpu") -> None:
    """One tiny, untimed training run (2 steps, 4 samples) through the engine, once."""
    global _WARM
    if _WARM:
        return
    import numpy as np

    from nnopt.train.data import Dataset
    from nnopt.train.engine import train

    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12) % 2
    ds = Dataset(x[:4], y[:4], x[4:8], y[4:8], x[8:], y[8:], 2, (4,))
    spec = parse_spec({
        "model": {"depth": 1, "width": 4}, "budget": {"steps": 2, "batch_size": 2},
        "evaluation": {"every_steps": 1}, "device": {"device": device},
    })  # fmt: skip
    try:
        train(spec, dataset=ds, threads=threads)
    except Exception:  # noqa: BLE001 - best effort: a real run reports the real problem
        pass
    _WARM = True


def run_cohorts(
    items: Sequence[Mapping[str, Any]],
    *,
    threads: int | None = None,
    log: TextIO | None = None,
    data_cache: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train the unfinished members of each cohort in `items`; manifest rows of those
    members (run_batch trains the rest one by one)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        spec: RunSpec = item["spec"]
        if item.get("cohort") and not is_finished(item["out"], spec.run_id):
            groups.setdefault(item["cohort"], []).append(item)
    rows: list[dict[str, Any]] = []
    for cohort_id, members in groups.items():
        if len(members) < 2:
            continue  # a lone member left (the others finished): it trains alone
        rows += _train_one_cohort(cohort_id, members, threads, log, data_cache)
    return rows


def _train_one_cohort(cohort_id, members, threads, log, data_cache) -> list[dict[str, Any]]:
    from nnopt.train.cohort import train_cohort
    from nnopt.train.batch_support import dataset_for as _dataset
    from nnopt.train.batch_support import failed_result as _failed

    specs = [m["spec"] for m in members]
    started, t0 = now_iso(), time.perf_counter()
    try:
        results = train_cohort(
            specs, dataset=_dataset(specs[0], data_cache), threads=threads, cohort_id=cohort_id
        )
    except Exception as err:  # every member recorded as failed; the next invocation retries
        results = [_failed(err, started) for _ in members]
    rows = []
    for item, spec, result in zip(members, specs, results):
        out = Path(item["out"])
        write_run(out, result, run_id=spec.run_id, study=item["study"],
                  factors=item.get("factors") or {}, spec=spec.to_dict())  # fmt: skip
        rows.append({"run_id": spec.run_id, "study": item["study"], "status": result.status,
                     "out": str(out), "trained": True})  # fmt: skip
    if log is not None:
        seconds = time.perf_counter() - t0
        print(f"cohort {cohort_id}: {len(members)} runs trained as one stacked model "
              f"({seconds:.1f} s): " + ", ".join(f"{r['study']}/{r['run_id']} {r['status']}"
                                               for r in rows), file=log, flush=True)  # fmt: skip
    return rows
