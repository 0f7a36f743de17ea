"""The data behind the HTML report's interactive parts, and its safe embedding.

Each study's learning curves travel inside the page as JSON in a
`<script type="application/json">` element, which templates/report.js reads and draws as inline
SVG (legend toggles, log/linear y, step/epoch/time x, a metric picker). The JSON is escaped so
that no string from a config can end the element: `<`, `>` and `&` become \\u003c, \\u003e,
\\u0026 (and U+2028/2029 are escaped for old parsers), so `</script>` inside a study title is
inert text. The browser never fetches anything: script, data and styles are all inline.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping

import polars as pl
from markupsafe import Markup, escape

__all__ = ["CURVE_COLUMNS", "CURVE_METRICS", "curve_data", "json_script", "safe_json"]

# Curve columns averaged over seeds for the panel (train_time_s gives the 'time' x axis).
CURVE_COLUMNS = ("train_loss", "val_accuracy", "train_accuracy", "val_loss", "train_time_s")
# (column, label, scale to the shown unit): the metric picker's choices, first shown first.
CURVE_METRICS = (("val_accuracy", "Validation accuracy (%)", 100),
                 ("train_loss", "Train loss", 1),
                 ("train_accuracy", "Train accuracy (%)", 100),
                 ("val_loss", "Validation loss", 1))

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
            "\u2029": "\\u2029"}


def safe_json(data: Any) -> str:
    """JSON text that is safe inside a <script> element (no '<', '>' or '&' left)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def json_script(data: Any, element_id: str) -> Markup:
    return Markup('<script type="application/json" id="{}" class="nnopt-data">{}</script>').format(
        escape(element_id), Markup(safe_json(data)))


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in list(rgb)[:3])


def _values(part: pl.DataFrame, column: str, scale: float = 1) -> list[float | None] | None:
    if column not in part.columns:
        return None
    return [None if v is None or not math.isfinite(v) else round(v * scale, 6)
            for v in part[column].to_list()]


def curve_data(bands: pl.DataFrame, order: list[str], labels: Mapping[str, str],
               colours: Mapping[str, tuple], visible: Iterable[str] = ()) -> dict:
    """Every configuration's mean curve (no cap): per series its x values (step, epoch,
    time in s) and each metric scaled to its unit; `visible` ones start drawn, the rest
    start toggled off (a click on the legend shows them)."""
    shown = set(visible)
    present = set(bands["config"]) if bands.height else set()
    series = []
    for config in dict.fromkeys(order):
        if config not in present:
            continue
        part = bands.filter(pl.col("config") == config)
        ys = {key: _values(part, f"{key}_mean", scale) for key, _, scale in CURVE_METRICS}
        series.append({"id": config, "label": labels.get(config, config),
                       "colour": _hex(colours.get(config, (0.3, 0.3, 0.3))),
                       "visible": not shown or config in shown,
                       "step": part["step"].to_list(), "epoch": _values(part, "epoch"),
                       "time": _values(part, "train_time_s_mean"),
                       "y": {k: v for k, v in ys.items() if v is not None}})
    metrics = [{"key": k, "label": label} for k, label, _ in CURVE_METRICS
               if any(k in s["y"] for s in series)]
    return {"metrics": metrics, "series": series}
