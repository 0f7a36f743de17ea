"""Cell and number formatting shared by the report's views ('95.1 ± 0.4', 'p < 0.0001')."""

from __future__ import annotations

import math

from nnopt.config.metrics import metric_info
from nnopt.analysis.labels import pretty_key

__all__ = ["format_cell", "num", "p_text", "p_eq", "with_unit", "pretty_key"]



def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "never"
    if round(value, digits) == 0:
        value = 0.0  # '-0.0 %' reads as a loss; a difference that rounds to zero is zero
    return f"{value:,.{digits}f}"


def format_cell(row: dict, metric: str) -> dict:
    """One table cell: {'value': '95.1 ± 0.4', 'n': 'n=5'} (censored: median, k/N reached)."""
    info = metric_info(metric)
    s, d = info.scale, info.digits
    if row is None or row["n_used"] == 0:
        return {"value": "—", "n": "n=0"}
    if info.censored:
        median = row["median"]
        value = "not reached" if median is None or math.isinf(median) else _num(median * s, d)
        return {"value": value, "n": f"{row['n_reached']}/{row['n_used']} reached"}
    if row["mean"] is None:
        return {"value": "—", "n": f"n={row['n_used']}"}
    half = (row["ci_high"] - row["ci_low"]) / 2 * s if row["ci_low"] is not None else None
    text = _num(row["mean"] * s, d) + (f" ± {_num(half, d)}" if half is not None else "")
    return {"value": text, "n": f"n={row['n_used']}"}


def _p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def _p_eq(p: float | None) -> str:
    """'p = 0.012' or 'p < 0.0001' for sentences."""
    text = _p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _with_unit(text: str, unit: str) -> str:
    """'0.61 s' with a no-break space (a unit never starts a line); a unitless metric (a loss)
    gets no trailing space, so '(0.331)' not '(0.331 )'."""
    return f"{text}\u00a0{unit}" if unit else text


_pretty_key = pretty_key  # 'budget.batch_size' → 'Batch size' (one definition: analysis.labels)


num, p_text, p_eq, with_unit = _num, _p, _p_eq, _with_unit  # public names for the other views
