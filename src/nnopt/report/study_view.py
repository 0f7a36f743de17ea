"""One study's view for the template: its table (every row), comparisons, problems, finding,
figures and the data of its interactive panel. `study_view(study, tables, ...)` takes tables
already filtered to the study or the whole set (it filters by name either way)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import polars as pl

from nnopt.analysis.aggregate import compared_runs
from nnopt.analysis.claim_tests import separation
from nnopt.analysis.labels import label_keys
from nnopt.config.metrics import metric_info
from nnopt.config.studies import Study
from nnopt.report import figures, interactive, setup
from nnopt.report.formatting import (_num, _p, _p_eq, _pretty_key, _with_unit,  # noqa: F401
                                     format_cell)

__all__ = ["study_view", "machine", "MAX_TABLE_ROWS", "MAX_PROBLEM_ROWS"]

MAX_TABLE_ROWS = 40  # rows the PDF shows; the HTML has every row
MAX_PROBLEM_ROWS = 30
MAX_ALL_METRICS = 12  # configurations above which the comparison table shows one metric



def _order(study: Study, summary: pl.DataFrame, comparisons: pl.DataFrame, cap: int) -> list[str]:
    """Configurations in config order, or best first by the primary metric when over `cap`."""
    configs = summary.select("config").unique(maintain_order=True)["config"].to_list()
    if len(configs) <= cap:
        return configs
    primary = study.metrics[0]
    info = metric_info(primary)
    part = summary.filter(pl.col("metric") == primary)
    key = "median" if info.censored else "mean"
    ranked = part.sort(key, descending=info.higher_is_better, nulls_last=True)["config"].to_list()
    base = comparisons.filter(pl.col("is_baseline"))["config"].to_list()[:1]
    return list(dict.fromkeys(base + ranked))


def _factor_columns(study: Study, summary: pl.DataFrame) -> list[str]:
    """The factor columns of a study's table. A study with `label.*` factors shows just its
    labels: the zipped spec values they name (gamma, name, warmup_epochs, ...) are noise beside
    them. Other studies show every factor, the rows factor first, as the article's tables do."""
    keys = [k for k in study.factor_keys if k in summary.columns]
    named = label_keys(keys)
    if named:
        return named
    if study.rows in keys:
        return [study.rows] + [k for k in keys if k != study.rows]
    return keys


def _table(study: Study, summary: pl.DataFrame, order: list[str]) -> dict:
    keys = _factor_columns(study, summary)
    headers = [study.columns.get(k, _pretty_key(k)) for k in keys]
    headers += [study.columns.get(m, metric_info(m).axis_label) for m in study.metrics]
    by, any_row = {}, {}
    for r in summary.iter_rows(named=True):
        by[(r["config"], r["metric"])] = r
        any_row.setdefault(r["config"], r)  # run counts are the same on every metric row
    rows = []
    for config in order:
        first = any_row.get(config)
        if first is None:
            continue
        runs = f"{first['n_ok']}/{first['n']} ok"
        extra = [f"{first[f'n_{s}']} {s}" for s in ("diverged", "failed", "missing")
                 if first[f"n_{s}"]]
        rows.append({"factors": [first[k] for k in keys],
                     "cells": [format_cell(by.get((config, m)), m) | {"sort": _sort_value(
                         by.get((config, m)), m)} for m in study.metrics],
                     "runs": runs, "problems": ", ".join(extra),
                     "html_only": len(rows) >= MAX_TABLE_ROWS})
    more = max(0, len(rows) - MAX_TABLE_ROWS)
    return {"headers": headers, "n_factors": len(keys), "rows": rows, "more": more}


def _sort_value(row: dict | None, metric: str) -> str:
    """The number a header click sorts a cell by (the mean, or the median of a censored
    metric; 'inf' when not reached, '' without a value)."""
    if row is None or not row["n_used"]:
        return ""
    value = row["median"] if metric_info(metric).censored else row["mean"]
    return "" if value is None or math.isnan(value) else repr(float(value))


def _reached(median: float | None) -> bool:
    return median is not None and math.isfinite(median)


def _difference(r: dict, medians: dict) -> tuple[str, str]:
    """The 'Difference' cell (configuration − baseline) and, when it is not a number, why.
    A time-to-target run that never reaches the target counts as +∞, so a median difference
    can be infinite (one side never reached) or undefined (neither did): say which in words
    rather than '∞ epochs'."""
    info = metric_info(r["metric"])
    diff = r["diff"]
    if diff is None or math.isnan(diff):
        both_censored = not (_reached(medians.get((r["config"], r["metric"])))
                             or _reached(medians.get((r["baseline"], r["metric"]))))
        return ("—", "neither reached") if info.censored and both_censored else ("—", "")
    if math.isinf(diff):
        return ("+∞", "never reached") if diff > 0 else ("−∞", "baseline never reached")
    return _with_unit(_num(diff * info.scale, info.digits), info.unit), ""


def _effect(r: dict) -> str:
    """'1.28 (g)' (Hedges' g) or '-1.00 (δ)' (Cliff's delta); '—' without one."""
    if r["effect_size"] is None:
        return "—"
    return f"{_num(r['effect_size'], 2)} ({'g' if r['effect_kind'] == 'hedges_g' else 'δ'})"


def _comparison_rows(comparisons: pl.DataFrame, labels: dict, order: list[str],
                     primary: str, medians: dict) -> list[dict]:
    """Rows of the 'against the baseline' table; a large study shows its primary metric only
    (every metric is in results/comparisons.parquet)."""
    pdf_rows = set(order[:MAX_TABLE_ROWS])
    part = comparisons.filter(~pl.col("is_baseline"))
    if len(order) > MAX_ALL_METRICS:
        part = part.filter(pl.col("metric") == primary)
    rows = []
    for r in part.iter_rows(named=True):
        info = metric_info(r["metric"])
        s, d = info.scale, info.digits
        ci = ("—" if r["diff_ci_low"] is None else
              f"[{_num(r['diff_ci_low'] * s, d)}, {_num(r['diff_ci_high'] * s, d)}]")
        sig = r["p_holm"] is not None and r["p_holm"] < 0.05
        diff, why = _difference(r, medians)
        rows.append({"config": labels.get(r["config"], r["config"]), "metric": info.label,
                     "diff": diff, "diff_why": why, "ci": ci, "test": r["test"], "p": _p(r["p"]),
                     "p_holm": _p(r["p_holm"]), "significant": sig,
                     "effect": _effect(r),
                     "rank": r["rank"] if r["rank"] is not None else "—",
                     "html_only": r["config"] not in pdf_rows})
    return rows


def _problems(runs: pl.DataFrame, labels: dict) -> dict:
    bad = runs.filter(pl.col("status") != "ok")
    rows = [{"config": labels.get(r["config"], r["config"]), "seed": r["seed"],
             "status": r["status"], "run_id": r["run_id"],
             "detail": (r["error"] or "").strip().splitlines()[-1][:240] if r["error"]
             else (f"diverged at step {r['diverged_at_step']}" if r["diverged_at_step"]
                   is not None else {"missing": "no run directory",
                                     "stalled": "never left chance"}.get(r["status"], ""))}
            for r in bad.iter_rows(named=True)]
    for i, row in enumerate(rows):
        row["html_only"] = i >= MAX_PROBLEM_ROWS
    return {"rows": rows, "more": max(0, bad.height - MAX_PROBLEM_ROWS), "total": bad.height}


def _sentence_name(study: Study, labels: dict, config: str) -> str:
    """A configuration as a sentence names it: 'dropout 0.5' or 'schedule step' reads better
    than a bare '0.5' or 'step'; labels of several factors ('sgd, lr=0.1') stand alone."""
    title = figures.label_title(study)
    label = labels.get(config, config)
    return f"{title.lower()} {label}" if title else label


def _ranked(summary: pl.DataFrame, metric: str) -> list[str]:
    """Configurations with a usable value of `metric`, best first (mean, or median when
    censored, in the metric's direction)."""
    info = metric_info(metric)
    key = "median" if info.censored else "mean"
    rows = summary.filter(pl.col("metric") == metric)
    scored = [(r[key], r["config"]) for r in rows.iter_rows(named=True)
              if r[key] is not None and math.isfinite(r[key])]
    scored.sort(key=lambda item: item[0], reverse=info.higher_is_better)
    return [c for _, c in scored]


def _p_note(test: dict) -> str:
    """'; p = 0.012, margin ±1.0 %' after the two values (no p for a deterministic metric:
    compared, not tested)."""
    r, info = test["result"], metric_info(test["metric"])
    parts = [] if r.p is None else [_p_eq(r.p)]
    if math.isfinite(r.margin):
        parts.append("margin ±" + _with_unit(_num(r.margin * info.scale, info.digits), info.unit))
    return "".join(f"; {x}" if i == 0 else f", {x}" for i, x in enumerate(parts))


def _finding(study: Study, comparisons: pl.DataFrame, summary: pl.DataFrame,
             labels: dict, runs: pl.DataFrame) -> str:
    """One sentence on the primary metric. A best configuration is named only when the claims'
    rule separates it from the runner-up (nnopt.analysis.claim_tests.separation: significant
    beyond the metric's margin); otherwise the two tie. Then how the best stands against the
    baseline, from the Holm-adjusted comparison."""
    metric = study.metrics[0]
    info = metric_info(metric)
    comp = comparisons.filter(pl.col("metric") == metric)
    if comp.height == 0:
        return f"{study.title}: no {info.label.lower()} was measured."
    base, what = comp["baseline"][0], info.label.lower()
    rows = {r["config"]: r for r in summary.filter(pl.col("metric") == metric).iter_rows(named=True)}
    ranked = _ranked(summary, metric)
    if not ranked:
        return f"{study.title}: no configuration produced a usable {what}."

    def name(config: str) -> str:
        return _sentence_name(study, labels, config)

    def value(config: str) -> str:
        return _with_unit(format_cell(rows[config], metric)["value"], info.unit)
    best = ranked[0]
    if len(ranked) > 1:
        test = separation(compared_runs(runs), study, metric, best, ranked[1])
        if test["result"].test == "none":  # fewer than 2 usable runs on a side
            return (f"{study.title}: {name(best)} leads {name(ranked[1])} on {what} "
                    f"({value(best)} vs {value(ranked[1])}), too few runs to test; no best "
                    f"is named.")
        if test["verdict"] != "supported":
            return (f"{study.title}: {name(best)} and {name(ranked[1])} tie on {what} "
                    f"({value(best)} vs {value(ranked[1])}{_p_note(test)}); no best is named.")
        lead = (f"{name(best)} has the best {what} ({value(best)}), ahead of the runner-up "
                f"{name(ranked[1])} ({value(ranked[1])}{_p_note(test)})")
    else:
        lead = f"{name(best)} has the best {what} ({value(best)})"
    if best == base:
        return f"{study.title}: {lead}; it is the baseline."
    r = comp.filter(pl.col("config") == best).row(0, named=True)
    verdict = ("significantly better than" if r["p_holm"] is not None and r["p_holm"] < 0.05
               else "not significantly different from")
    return f"{study.title}: {lead}, {verdict} the baseline {name(base)} (Holm {_p_eq(r['p_holm'])})."


def _single(runs: pl.DataFrame, column: str):
    """The one value a column holds (None when absent, empty or several values)."""
    if column not in runs.columns:
        return None
    values = runs[column].drop_nulls().unique().to_list()
    return values[0] if len(values) == 1 else None


def machine(runs: pl.DataFrame) -> dict:
    """What a study's runs were measured on, for the speed-up caption. `cpu_count` is recent
    provenance: results written before it have no such column and the caption omits it."""
    return {"device_name": _single(runs, "device_name"), "cpu_count": _single(runs, "cpu_count"),
            "threads": _single(runs, "threads")}


def study_view(study: Study, tables: dict, results_dir: Path,
               sections: Sequence[figures.SectionFn] = ()) -> dict:
    """Everything the study's section shows. Figures are drawn and closed one at a time (each
    SVG is a string once drawn), so memory holds one matplotlib figure at most."""
    summary = tables["summary"].filter(pl.col("study") == study.name)
    comparisons = tables["comparisons"].filter(pl.col("study") == study.name)
    runs = tables["runs"].filter(pl.col("study") == study.name)
    labels = figures.short_labels(summary, study)
    order = _order(study, summary, comparisons, figures.MAX_POINTS)
    curve_order = _order(study, summary, comparisons, figures.MAX_LINES)
    ok_runs = runs.filter(pl.col("status").is_in(["ok", "stalled"]))["run_id"]  # curves that ran
    bands = figures.curve_bands(tables["curves"], study.name, ok_runs,
                                columns=interactive.CURVE_COLUMNS)
    figs = figures.study_figures(study, summary, bands, order, curve_order, machine(runs))
    medians = {(r["config"], r["metric"]): r["median"] for r in summary.iter_rows(named=True)}
    all_configs = summary["config"].unique(maintain_order=True).to_list()
    return {
        "name": study.name, "anchor": f"study-{study.name}", "title": study.title,
        "description": study.description, "factors": list(study.factor_keys),
        "n_runs": runs.height, "n_configs": len(order),
        # a tuned study's tables hold its confirmation runs (nnopt.search): their seeds
        "seeds": len(study.tune.confirm_seeds if study.tune else study.seeds),
        "setup": setup.study_setup(study, runs),
        "table": _table(study, summary, order),
        "comparisons": _comparison_rows(comparisons, labels, order, study.metrics[0], medians),
        "comparisons_cut": len(order) > MAX_ALL_METRICS and len(study.metrics) > 1,
        "baseline": (_sentence_name(study, labels, comparisons["baseline"][0])
                     if comparisons.height else ""),
        "figures": figs, "extra": figures.extra_sections(study, results_dir, sections),
        "curves_more": max(0, len(set(bands["config"])) - figures.MAX_LINES)
        if bands.height else 0,
        "data": interactive.curve_data(bands, all_configs, labels, figures.palette(all_configs),
                                       visible=curve_order[:figures.MAX_LINES]),
        "problems": _problems(runs, labels),
        "finding": _finding(study, comparisons, summary, labels, runs),
    }
