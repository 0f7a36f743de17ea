"""The values of a claim that its grammar (nnopt.analysis.claims) leaves open, checked.

Each of these used to pass `nnopt check` and then crash the report (an `article: 5`, a
negative ratio bound) or judge nothing (an unknown metric, a configuration named twice):
now each is one line naming the claim and the key.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from nnopt.config.metrics import METRIC_NAMES
from nnopt.config.spec import SpecError, did_you_mean

__all__ = ["check_id", "check_metric", "check_values", "check_article"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # anchors and table keys of the report


def check_id(path: str, claim_id: str) -> None:
    if not _ID.fullmatch(claim_id):
        raise SpecError(f"{path}.id: expected letters, digits, '-' or '_' (at most 64, not "
                        f"'-' or '_' first), got {claim_id[:80]!r}")  # fmt: skip


def check_metric(path: str, metric: Any) -> None:
    if metric not in METRIC_NAMES:
        raise SpecError(f"{path}: unknown metric {metric!r}; allowed: a metric of "
                        "docs/contract.md §2" + did_you_mean(str(metric), METRIC_NAMES))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_values(path: str, raw: Mapping[str, Any]) -> None:
    """What the grammar leaves to values: a known metric, distinct configurations, positive
    ratio bounds, numeric article values (each of these used to pass the check and then
    fail or mislead the report)."""
    if raw.get("metric") is not None:
        check_metric(f"{path}.metric", raw["metric"])
    sides = [raw[k] for k in ("left", "right") if k in raw]
    for key, listed in (("left/right", sides), ("configs", raw.get("configs")),
                        ("among", raw.get("among"))):  # fmt: skip
        if isinstance(listed, list) and len({repr(v) for v in listed}) < len(listed):
            raise SpecError(f"{path}.{key}: a configuration is named twice ({listed!r}); "
                            "allowed: distinct configurations")  # fmt: skip
    for key in ("at_least", "at_most"):
        if key in raw and not (_finite(raw[key]) and raw[key] > 0):
            raise SpecError(f"{path}.{key}: expected a positive number (a ratio of means), "
                            f"got {raw[key]!r}")  # fmt: skip
    check_article(f"{path}.article", raw.get("article"))


def check_article(path: str, art: Any) -> None:
    """{value-of-rows-factor: number} or [{config: configuration, value: number}, ...]."""
    if art is None:
        return
    if isinstance(art, Mapping):
        values = list(art.values())
    elif isinstance(art, list) and all(isinstance(a, Mapping) and set(a) == {"config", "value"}
                                       for a in art):  # fmt: skip
        values = [a["value"] for a in art]
    else:
        raise SpecError(f"{path}: expected {{value: number, ...}} or [{{config: ..., value: "
                        f"number}}, ...], got {art!r:.80}")  # fmt: skip
    bad = [v for v in values if not _finite(v)]
    if bad:
        raise SpecError(f"{path}: expected finite numbers (the source's, in the report's "
                        f"units), got {bad[0]!r}")  # fmt: skip
