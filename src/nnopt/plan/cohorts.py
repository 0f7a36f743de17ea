"""Which runs of a study train together as one stacked model (a cohort), and which alone.

A cohort needs one shape signature (nnopt.config.cohort_key) and must pay: stacking
amortizes per-op dispatch, autograd and optimizer overhead over K members, which wins for
small models and loses for wide ones on a CPU, where one model's matmuls already run near
the core's limit. The cost model is the speed-up benchmarks/cohort.py measured on the
2-core reference machine (1 thread, process CPU time, K = 25, 6 epochs, shipped shape
otherwise), log-linear in log2(width) between the points:

    width    64: 2.92x    128: 1.67x    256: 1.03x    512: 0.58x   (break-even near 256)

and log-linear in K below 25 (issue 14 measured 2.1x at K = 5, width 64). A cohort is
formed when the predicted speed-up is >= 1.25 (so from about width 190 on, runs train alone). On CUDA a small step is
launch-bound and stacking always pays. A study opts out with `cohorts: false`; a timing
study (one that compares a time metric) always trains single, since a member's time is
not a run's time, and its batches run exclusive (no co-scheduled job). No torch here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from nnopt.config.cohort_key import cohort_key
from nnopt.config.spec import RunSpec
from nnopt.config.studies import Run

__all__ = [
    "COHORT_MEMORY_MB",
    "MAX_COHORT",
    "TIME_METRICS",
    "cohort_speedup",
    "is_timing_study",
    "max_cohort_size",
    "plan_units",
]

# Metrics that measure time: a study comparing one trains single and exclusive.
TIME_METRICS = ("train_time_s", "time_to_target_s", "time_to_target_loss_s", "wall_time_s",
                "eval_time_s", "samples_per_s")  # fmt: skip
TIME_PREFIXES = ("step_time_",)

MAX_COHORT = 64  # members per cohort at most: a cohort's failure then costs few runs
COHORT_MEMORY_MB = 512.0  # a cohort's tensors (params, grads, state, activations) at most
_MIN_SPEEDUP = 1.25  # stack only when the model predicts a clear gain

# (width, speed-up at K = 25) measured on CPU, 1 thread, by benchmarks/cohort.py.
_CPU_SPEEDUP_K25 = ((64, 2.92), (128, 1.67), (256, 1.03), (512, 0.58))
_GPU_SPEEDUP_K25 = 20.0  # launch-bound small steps (issue 14's target, see benchmarks/gpu.sh)


def is_timing_study(metrics: Iterable[str]) -> bool:
    return any(m in TIME_METRICS or m.startswith(TIME_PREFIXES) for m in metrics)


def _interp_log2(width: int) -> float:
    pts = _CPU_SPEEDUP_K25
    x = math.log2(max(width, 1))
    for (w0, s0), (w1, s1) in zip(pts, pts[1:]):
        if x <= math.log2(w1):
            t = (x - math.log2(w0)) / (math.log2(w1) - math.log2(w0))
            return s0 + (s1 - s0) * max(t, 0.0) if x >= math.log2(w0) else s0
    (w0, s0), (w1, s1) = pts[-2], pts[-1]  # beyond the table: keep the last slope
    return max(0.1, s1 + (s1 - s0) * (x - math.log2(w1)))


def cohort_speedup(spec: RunSpec, k: int, *, on_gpu: bool = False) -> float:
    """Predicted (K single runs' time) / (one cohort of K's time)."""
    if k <= 1:
        return 1.0
    at_25 = _GPU_SPEEDUP_K25 if on_gpu else _interp_log2(spec.model.width)
    return 1.0 + (at_25 - 1.0) * math.log(k) / math.log(25)


def max_cohort_size(spec: RunSpec, features: int = 100, memory_mb: float = COHORT_MEMORY_MB) -> int:
    """Members whose tensors fit `memory_mb`: parameters x 4 (param, grad, two optimizer
    states) plus training and evaluation activations (fp32)."""
    m, b = spec.model, spec.budget.batch_size
    params = features * m.width + max(m.depth - 1, 0) * m.width**2 + m.width * 10
    activations = (b * 4 + 256 * 2) * m.width * max(m.depth, 1)  # train (fwd+bwd), eval chunk
    per_member_mb = 4 * (4 * params + activations) / 2**20
    return max(1, min(MAX_COHORT, int(memory_mb // max(per_member_mb, 1e-9))))


def _singles_where_slow(units: list[tuple[Run, ...]], on_gpu: bool) -> list[tuple[Run, ...]]:
    """Cohorts that no longer pay once split (too few members) become singles."""
    out: list[tuple[Run, ...]] = []
    for u in units:
        pays = len(u) > 1 and cohort_speedup(u[0].spec, len(u), on_gpu=on_gpu) >= _MIN_SPEEDUP
        out.extend([u] if pays or len(u) == 1 else [(r,) for r in u])
    return out


def plan_units(
    runs: Sequence[Run], *, enabled: bool = True, on_gpu: bool = False, min_units: int = 1
) -> list[tuple[Run, ...]]:
    """`runs` as training units: cohorts (2+ runs of one signature that pay) and singles,
    in the order of each unit's first run. Deterministic for a given order of runs. The
    largest cohorts are halved until there are `min_units` units (one per core it has)."""
    if not enabled:
        return [(r,) for r in runs]
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        key = cohort_key(r.spec)
        groups[("single", r.run_id) if key is None else key].append(r)
    units: list[tuple[Run, ...]] = []
    for members in groups.values():
        cap = max_cohort_size(members[0].spec)
        n_chunks = math.ceil(len(members) / cap)
        for i in range(n_chunks):  # equal chunks: 30 at cap 25 -> 15 + 15, not 25 + 5
            chunk = members[i::n_chunks]
            if len(chunk) > 1 and cohort_speedup(chunk[0].spec, len(chunk), on_gpu=on_gpu) >= _MIN_SPEEDUP:
                units.append(tuple(chunk))
            else:
                units.extend((r,) for r in chunk)
    while len(units) < min_units and max(len(u) for u in units) > 1:
        big = max(range(len(units)), key=lambda i: (len(units[i]), -i))
        unit = units.pop(big)
        units += [half for half in (unit[0::2], unit[1::2]) if half]
    units = _singles_where_slow(units, on_gpu)
    first = {r.run_id: i for i, r in enumerate(runs)}
    return sorted(units, key=lambda u: first[u[0].run_id])
