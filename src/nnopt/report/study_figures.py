"""Figures a study gets for what it varies: the generalization gap (dropout), the speed-up
over workers (device.world_size) with its note in words, and optimizer-state memory."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import polars as pl

from nnopt.config.metrics import metric_info
from nnopt.config.studies import Study
from nnopt.report.plotting import colours, new_figure, styled, tex_safe, to_svg

__all__ = ["MAX_POINTS", "generalization_gap", "optimizer_memory", "speedup", "speedup_note"]

MAX_POINTS = 40  # configurations per point plot


def _metric_rows(summary: pl.DataFrame, metric: str) -> dict[str, dict]:
    return {r["config"]: r for r in summary.filter(pl.col("metric") == metric).iter_rows(named=True)}


@styled
def generalization_gap(summary: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                       colours: Mapping[str, tuple], xlabel: str = "") -> str | None:
    """Final train accuracy beside test accuracy per configuration (dropout's trade-off)."""
    train, test = (_metric_rows(summary, m) for m in ("final_train_accuracy", "test_accuracy"))
    shown = [c for c in order if c in train and c in test][:MAX_POINTS]
    if not shown:
        return None
    fig, (ax,) = new_figure(height=2.4)
    x = np.arange(len(shown))
    for offset, rows, name, alpha in ((-0.2, train, "train", 0.45), (0.2, test, "test", 1.0)):
        means = [(rows[c]["mean"] or np.nan) * 100 for c in shown]
        err = [[(rows[c]["mean"] or 0) * 100 - (rows[c]["ci_low"] or rows[c]["mean"] or 0) * 100
                for c in shown],
               [(rows[c]["ci_high"] or rows[c]["mean"] or 0) * 100 - (rows[c]["mean"] or 0) * 100
                for c in shown]]
        ax.bar(x + offset, means, 0.38, yerr=err, capsize=2, label=name, alpha=alpha,
               color=[colours[c] for c in shown])
    finite = [v for c in shown for v in ((train[c]["mean"] or np.nan), (test[c]["mean"] or np.nan))
              if np.isfinite(v)]
    if finite:
        ax.set_ylim(max(0, min(finite) * 100 - 5), min(100, max(finite) * 100 + 2))
    ax.set_xticks(x, [tex_safe(labels[c]) for c in shown])
    ax.set_xlabel(tex_safe(xlabel) or "Configuration")
    ax.set(ylabel="Accuracy (%)", title="Train (light) vs test (dark) accuracy: the generalization gap")
    return to_svg(fig)


def _times_by_workers(summary: pl.DataFrame) -> dict[int, dict] | None:
    """Workers → the training-time summary row; None without a 1-worker time to compare with."""
    key = "device.world_size"
    rows = _metric_rows(summary, "train_time_s")
    by_w = {int(r[key]): r for r in rows.values() if r.get(key) not in (None, "")}
    if 1 not in by_w or len(by_w) < 2 or by_w[1]["mean"] is None:
        return None
    return by_w


def _plural(n, word: str) -> str:
    return f"{n} {word}" if str(n) == "1" else f"{n} {word}s"


def _measured_on(machine: Mapping[str, Any]) -> str:
    """'x86_64, 2 CPU cores, 1 thread per worker' from what the runs recorded; a value the
    runs did not record (older results have no cpu_count) is left out."""
    parts = [str(machine.get("device_name") or "this machine")]
    if machine.get("cpu_count"):
        parts.append(_plural(machine["cpu_count"], "CPU core"))
    if machine.get("threads"):
        parts.append(f"{_plural(machine['threads'], 'thread')} per worker")
    return ", ".join(parts)


def speedup_note(summary: pl.DataFrame, machine: Mapping[str, Any] | None = None) -> str:
    """The speed-up figure in words: where it was measured, each worker count's time against
    one worker, and why a machine without a core per worker shows no speed-up ('' without a
    1-worker time)."""
    by_w = _times_by_workers(summary)
    if by_w is None:
        return ""
    t1 = by_w[1]["mean"]
    steps, speedups = [], []
    for w in sorted(by_w)[1:]:
        tw = by_w[w]["mean"]
        if not tw:
            continue
        speedups.append(t1 / tw)
        steps.append(f"{w} workers took {tw / t1:.1f}× the 1-worker time (speed-up "
                     f"{t1 / tw:.2f}×, efficiency {100 * t1 / tw / w:.0f} %)")
    if not steps:
        return ""
    note = f"Measured on {_measured_on(machine or {})}: " + "; ".join(steps) + "."
    if max(speedups) < 1:
        note += (" With more workers than cores, or tiny per-step compute, the all-reduce costs "
                 "more than the split saves, so no speed-up is possible on this machine; real "
                 "speed-ups need a core or GPU per worker and enough compute per step.")
    return note


@styled
def speedup(summary: pl.DataFrame, study: Study) -> str | None:
    """Training-time speed-up over one worker against the number of workers, with the ideal."""
    by_w = _times_by_workers(summary)
    if by_w is None:
        return None
    ws = sorted(by_w)
    t1 = by_w[1]["mean"]
    sp = [t1 / by_w[w]["mean"] if by_w[w]["mean"] else np.nan for w in ws]
    # Bars from the interval of each time (the 1-worker mean held fixed).
    lo = [t1 / by_w[w]["ci_high"] if by_w[w]["ci_high"] else s for w, s in zip(ws, sp)]
    hi = [t1 / by_w[w]["ci_low"] if by_w[w]["ci_low"] else s for w, s in zip(ws, sp)]
    fig, (ax,) = new_figure(width=4.0, height=2.6)
    ax.plot(ws, ws, "--", color="grey", lw=1, label="ideal (linear)")
    ax.errorbar(ws, sp, yerr=[np.subtract(sp, lo), np.subtract(hi, sp)], fmt="o-",
                color=colours()[0], capsize=2, label="measured")
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.set(xlabel="Workers (data-parallel processes)", ylabel="Speed-up (×)",
           title="Speed-up of training time vs workers")
    ax.legend(frameon=False)
    return to_svg(fig)


@styled
def optimizer_memory(summary: pl.DataFrame, order: list[str], labels: Mapping[str, str],
                     colours: Mapping[str, tuple]) -> str | None:
    """Optimizer-state memory per configuration (bytes the optimizer keeps beside weights)."""
    rows = _metric_rows(summary, "optimizer_state_bytes")
    shown = [c for c in order if c in rows and rows[c]["mean"] is not None][:MAX_POINTS]
    if not shown:
        return None
    info = metric_info("optimizer_state_bytes")
    fig, (ax,) = new_figure(height=0.6 + 0.22 * len(shown))
    y = np.arange(len(shown))[::-1]
    ax.barh(y, [rows[c]["mean"] * info.scale for c in shown], color=[colours[c] for c in shown])
    ax.set_yticks(y, [tex_safe(labels[c]) for c in shown])
    ax.set(xlabel=info.axis_label, title="Optimizer state memory")
    return to_svg(fig)
