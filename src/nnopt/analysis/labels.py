"""Configuration labels for readers: one display label per configuration, used by every
table, sentence and figure of the report and by the claims' evidence. The machine label
('schedule.name=step, schedule.gamma=0.5, ...', nnopt.config.studies.config_label) stays the key of
the result tables. No torch, no matplotlib.
"""

from __future__ import annotations

from typing import Mapping

import polars as pl

from nnopt.analysis.aggregate import format_value
from nnopt.config.studies import LABEL_PREFIX, Study

__all__ = ["display_label", "factor_name", "label_keys", "label_title", "pretty_key",
           "short_labels"]


_ABBREVIATIONS = {"lr": "learning rate"}


def pretty_key(key: str) -> str:
    """'budget.batch_size' → 'Batch size'; 'optimizer.name' → 'Optimizer'; 'label.schedule' →
    'Schedule'; 'optimizer.lr' → 'Learning rate'."""
    parts = key.split(".")
    word = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    word = _ABBREVIATIONS.get(word, word)
    return word.replace("_", " ").capitalize()


def factor_name(key: str) -> str:
    """The key's last part for 'key=value': 'model.depth' → 'depth'; 'init.name' → 'init' (a
    bare 'name' says nothing)."""
    head, _, last = key.rpartition(".")
    return head.rpartition(".")[2] if last in ("name", "kind") and head else last


def label_keys(keys) -> list[str]:
    """The `label.*` factor keys among `keys` (readable names of configurations)."""
    return [k for k in keys if k.startswith(LABEL_PREFIX)]


def _means_nothing_alone(value: str) -> bool:
    """'true', '16', '0.001' do not say which factor they are; 'sgd' or 'tanh' do."""
    if value in ("true", "false"):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def display_label(values: Mapping[str, str], study: Study) -> str | None:
    """A configuration's label for readers, from its factor values (as strings):
    (a) a study with `label.*` factors: those labels ('step', 'decoupled');
    (b) one factor: its value ('relu');
    (c) else the rows factor's value first, then 'key=value' with the key's last part
        ('sgd, lr=0.1'); a rows value that means nothing alone keeps its key
        ('batch_norm=true, depth=4'). None when the study has no factor."""
    keys = [k for k in study.factor_keys if k in values]
    named = label_keys(keys)
    if named:
        return ", ".join(str(values[k]) for k in named)
    if len(keys) <= 1:
        return str(values[keys[0]]) if keys else None
    rows = study.rows if study.rows in keys else keys[0]
    ordered = [rows] + [k for k in keys if k != rows]
    parts = [f"{factor_name(k)}={values[k]}" for k in ordered]
    if not _means_nothing_alone(str(values[rows])):
        parts[0] = str(values[rows])
    return ", ".join(parts)


def label_title(study: Study) -> str:
    """What a display label names when it is a single value ('Activation', 'Schedule'), for
    legend titles and sentences ('activation relu'); '' when labels name several factors."""
    keys = label_keys(study.factor_keys) or list(study.factor_keys)
    return pretty_key(keys[0]) if len(keys) == 1 else ""


def short_labels(frame: pl.DataFrame, study: Study) -> dict[str, str]:
    """Configuration (table key) → its display label (`display_label`), for every
    configuration of `frame` (summary or runs rows). Factor values come from the study's
    planned runs, so `frame` needs only a 'config' column; a configuration the study no longer
    plans falls back to the frame's factor columns, then to its machine label."""
    planned = {r.config: {k: format_value(v) for k, v in r.factors} for r in study.runs}
    columns = [k for k in study.factor_keys if k in frame.columns]
    rows = frame.select("config", *columns).unique(subset="config", maintain_order=True)
    out = {}
    for row in rows.iter_rows(named=True):
        config = row["config"]
        values = planned.get(config) or {k: row[k] for k in columns if row[k] is not None}
        out[config] = display_label(values, study) or config
    return out
