"""What the single-run and the cohort runners share: the batch's in-memory datasets and the
record of a run that raised (apart from both, so neither imports the other).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from nnopt.config.spec import RunSpec
from nnopt.store.runs import RunResult, now_iso, provenance

__all__ = ["dataset_for", "failed_result", "DATASETS"]

# Prepared datasets kept in memory across the runs of a batch, keyed by DataSpec.
DATASETS: dict[Any, Any] = {}
_MAX_DATASETS = 2  # image sets can take GBs


def dataset_for(spec: RunSpec, data_cache: str | Path | None):
    from nnopt.train.data import load_dataset

    if spec.data not in DATASETS:
        if len(DATASETS) >= _MAX_DATASETS:
            DATASETS.pop(next(iter(DATASETS)))
        DATASETS[spec.data] = load_dataset(spec.data, data_cache)
    return DATASETS[spec.data]


def failed_result(err: BaseException, started: str) -> RunResult:
    result = RunResult(status="failed", error=f"{type(err).__name__}: {err}")
    result.traceback = traceback.format_exc()
    result.provenance = provenance(started_at=started, finished_at=now_iso())
    return result


