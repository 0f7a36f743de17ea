"""Successive halving (Li et al. 2020, ASHA's promotion rule), one rung per round.

Rung i trains its trials for `budgets[i]` epochs; the best 1/eta of them (at least one)
go on to rung i + 1, the others are pruned. Rounds are synchronous (a rung is complete
before it is promoted), so the outcome does not depend on which job finished first.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["rank_key", "promote", "survivor_count"]


def survivor_count(n: int, eta: int) -> int:
    return max(1, n // eta)


def rank_key(value: float | None, higher_is_better: bool) -> float:
    """Sort key, lower is better; a failed/diverged trial (None, NaN) ranks last."""
    if value is None or not math.isfinite(value):
        return math.inf
    return -value if higher_is_better else value


def promote(
    scores: Sequence[tuple[int, float | None]], eta: int, higher_is_better: bool
) -> tuple[list[int], list[int]]:
    """(survivors, pruned) trial indices of one finished rung; ties go to the earlier trial."""
    ranked = sorted(scores, key=lambda s: (rank_key(s[1], higher_is_better), s[0]))
    keep = survivor_count(len(ranked), eta)
    return sorted(t for t, _ in ranked[:keep]), sorted(t for t, _ in ranked[keep:])
