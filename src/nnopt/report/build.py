"""The report: result tables + claims → one self-contained HTML file and a PDF.

`build_report(...)` loads results/{runs,curves,summary,comparisons}.parquet, judges the claims,
draws the figures (nnopt.report.figures) and renders templates/report.html.j2 with autoescaping (study
names, descriptions and config values are data and may contain `<`, `&`, `{{`). The PDF comes
from the same HTML through WeasyPrint with a URL fetcher that refuses every request: all CSS
and SVG are inline, so nothing is ever fetched, from the network or from disk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from weasyprint.urls import URLFetcher

from nnopt.report import figures

from nnopt.analysis.aggregate import read_config
from nnopt.store.atomic import atomic_path, write_text_atomic
from nnopt.analysis.claims import ClaimResult, evaluate_claims, load_claims
from nnopt.analysis.labels import label_keys
from nnopt.config.metrics import metric_info
from nnopt.config.spec import SpecError
from nnopt.config.studies import Config, Study

__all__ = ["load_tables", "build_context", "render_html", "write_pdf", "build_report",
           "RefusingFetcher"]

TEMPLATES = Path(__file__).parent / "templates"
MAX_TABLE_ROWS = 40
MAX_PROBLEM_ROWS = 30
MAX_ALL_METRICS = 12  # configurations above which the comparison table shows one metric
_TABLES = ("runs", "curves", "summary", "comparisons")


def load_tables(results_dir: str | Path) -> dict[str, pl.DataFrame]:
    results_dir = Path(results_dir)
    out = {}
    for name in _TABLES:
        path = results_dir / f"{name}.parquet"
        if not path.exists():
            raise SpecError(f"{path}: missing; run `nnopt aggregate` first")
        out[name] = pl.read_parquet(path)
    return out


# --- formatting ----------------------------------------------------------------------------


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


_pretty_key = figures.pretty_key  # 'budget.batch_size' → 'Batch size' (one definition)


# --- per-study view ------------------------------------------------------------------------


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
    for config in order[:MAX_TABLE_ROWS]:
        first = any_row.get(config)
        if first is None:
            continue
        runs = f"{first['n_ok']}/{first['n']} ok"
        extra = [f"{first[f'n_{s}']} {s}" for s in ("diverged", "failed", "missing")
                 if first[f"n_{s}"]]
        rows.append({"factors": [first[k] for k in keys],
                     "cells": [format_cell(by.get((config, m)), m) for m in study.metrics],
                     "runs": runs, "problems": ", ".join(extra)})
    more = max(0, len(order) - MAX_TABLE_ROWS)
    return {"headers": headers, "n_factors": len(keys), "rows": rows, "more": more}


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
    keep = set(order[:MAX_TABLE_ROWS])
    part = comparisons.filter(~pl.col("is_baseline"))
    if len(order) > MAX_ALL_METRICS:
        part = part.filter(pl.col("metric") == primary)
    rows = []
    for r in part.iter_rows(named=True):
        if r["config"] not in keep:
            continue
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
                     "rank": r["rank"] if r["rank"] is not None else "—"})
    return rows


def _problems(runs: pl.DataFrame, labels: dict) -> dict:
    bad = runs.filter(pl.col("status") != "ok")
    rows = [{"config": labels.get(r["config"], r["config"]), "seed": r["seed"],
             "status": r["status"], "run_id": r["run_id"],
             "detail": (r["error"] or "").strip().splitlines()[-1][:240] if r["error"]
             else (f"diverged at step {r['diverged_at_step']}" if r["diverged_at_step"]
                   is not None else ("no run directory" if r["status"] == "missing" else ""))}
            for r in bad.head(MAX_PROBLEM_ROWS).iter_rows(named=True)]
    return {"rows": rows, "more": max(0, bad.height - MAX_PROBLEM_ROWS), "total": bad.height}


def _sentence_name(study: Study, labels: dict, config: str) -> str:
    """A configuration as a sentence names it: 'dropout 0.5' or 'schedule step' reads better
    than a bare '0.5' or 'step'; labels of several factors ('sgd, lr=0.1') stand alone."""
    title = figures.label_title(study)
    label = labels.get(config, config)
    return f"{title.lower()} {label}" if title else label


def _finding(study: Study, comparisons: pl.DataFrame, summary: pl.DataFrame,
             labels: dict) -> str:
    """One sentence on the primary metric: the best configuration and how it stands against
    the baseline, from the Holm-adjusted comparison."""
    metric = study.metrics[0]
    info = metric_info(metric)
    comp = comparisons.filter(pl.col("metric") == metric)
    if comp.height == 0:
        return f"{study.title}: no {info.label.lower()} was measured."
    base = comp["baseline"][0]
    rows = {r["config"]: r for r in summary.filter(pl.col("metric") == metric).iter_rows(named=True)}
    key = "median" if info.censored else "mean"
    scored = [(r[key], c) for c, r in rows.items() if r[key] is not None and math.isfinite(r[key])]
    if not scored:
        return f"{study.title}: no configuration produced a usable {info.label.lower()}."
    best = (max if info.higher_is_better else min)(scored)[1]
    value = _with_unit(format_cell(rows[best], metric)["value"], info.unit)

    def name(config: str) -> str:
        return _sentence_name(study, labels, config)
    if best == base:
        return (f"{study.title}: the baseline {name(base)} has the best {info.label.lower()} "
                f"({value}).")
    r = comp.filter(pl.col("config") == best).row(0, named=True)
    verdict = ("significantly better than" if r["p_holm"] is not None and r["p_holm"] < 0.05
               else "not significantly different from")
    return (f"{study.title}: {name(best)} has the best {info.label.lower()} ({value}), "
            f"{verdict} the baseline {name(base)} (Holm {_p_eq(r['p_holm'])}).")


def _study_view(study: Study, tables: dict, results_dir: Path,
                sections: Sequence[figures.SectionFn]) -> dict:
    summary = tables["summary"].filter(pl.col("study") == study.name)
    comparisons = tables["comparisons"].filter(pl.col("study") == study.name)
    runs = tables["runs"].filter(pl.col("study") == study.name)
    labels = figures.short_labels(summary, study)
    order = _order(study, summary, comparisons, figures.MAX_POINTS)
    curve_order = _order(study, summary, comparisons, figures.MAX_LINES)
    ok_runs = runs.filter(pl.col("status") == "ok")["run_id"]
    bands = figures.curve_bands(tables["curves"], study.name, ok_runs)
    figs = figures.study_figures(study, summary, bands, order, curve_order, _machine(runs))
    medians = {(r["config"], r["metric"]): r["median"] for r in summary.iter_rows(named=True)}
    return {
        "name": study.name, "anchor": f"study-{study.name}", "title": study.title,
        "description": study.description, "factors": list(study.factor_keys),
        "n_runs": runs.height, "n_configs": len(order), "seeds": len(study.seeds),
        "table": _table(study, summary, order),
        "comparisons": _comparison_rows(comparisons, labels, order, study.metrics[0], medians),
        "comparisons_cut": len(order) > MAX_ALL_METRICS and len(study.metrics) > 1,
        "baseline": (_sentence_name(study, labels, comparisons["baseline"][0])
                     if comparisons.height else ""),
        "figures": figs, "extra": figures.extra_sections(study, results_dir, sections),
        "problems": _problems(runs, labels),
        "finding": _finding(study, comparisons, summary, labels),
    }


# --- overview and claims ---------------------------------------------------------------------


def _unique(runs: pl.DataFrame, column: str) -> str:
    if column not in runs.columns:
        return "—"
    values = [str(v) for v in runs[column].drop_nulls().unique(maintain_order=True).to_list()]
    return ", ".join(values[:4]) + (f" (+{len(values) - 4} more)" if len(values) > 4 else "") or "—"


def _single(runs: pl.DataFrame, column: str):
    """The one value a column holds (None when absent, empty or several values)."""
    if column not in runs.columns:
        return None
    values = runs[column].drop_nulls().unique().to_list()
    return values[0] if len(values) == 1 else None


def _machine(runs: pl.DataFrame) -> dict:
    """What a study's runs were measured on, for the speed-up caption. `cpu_count` is recent
    provenance: results written before it have no such column and the caption omits it."""
    return {"device_name": _single(runs, "device_name"), "cpu_count": _single(runs, "cpu_count"),
            "threads": _single(runs, "threads")}


def _hardware(runs: pl.DataFrame) -> str:
    """'x86_64, 2 CPU cores (cpu; 1 thread per run; hosts vm)'; the core count only when the
    runs recorded it."""
    def counted(column: str, word: str) -> str:  # '2 CPU cores', '1 thread'; '' if unrecorded
        n = _unique(runs, column)
        return "" if n == "—" else f"{n} {word}{'' if n == '1' else 's'}"

    cores, threads = counted("cpu_count", "CPU core"), counted("threads", "thread")
    details = [_unique(runs, "device"), f"{threads} per run" if threads else "",
               f"hosts {_unique(runs, 'hostname')}"]
    name = ", ".join(x for x in (_unique(runs, "device_name"), cores) if x)
    return f"{name} ({'; '.join(d for d in details if d)})"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


def _overview(config: Config, runs: pl.DataFrame) -> dict:
    counts = dict(runs.group_by("status").len().iter_rows())
    canonical = json.dumps(config.raw, sort_keys=True, separators=(",", ":"), default=str)
    finished = runs["finished_at"].drop_nulls()
    seeds = sorted({len(s.seeds) for s in config.studies})
    return {
        "n_studies": len(config.studies), "n_runs": runs.height,
        "n_configs": runs.select("study", "config").unique().height,
        "status": {s: counts.get(s, 0) for s in ("ok", "diverged", "failed", "missing")},
        "seeds": " or ".join(map(str, seeds)) + " per configuration",
        "hardware": _hardware(runs),
        "versions": f"nnopt {_unique(runs, 'nnopt_version')}, torch "
                    f"{_unique(runs, 'torch_version')}, Python {_unique(runs, 'python_version')}",
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:16],
        "results_date": finished.max() if finished.len() else "—",
        "rendered_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "compute": _duration(runs["wall_time_s"].fill_null(0).sum()
                             if "wall_time_s" in runs.columns else 0),
    }


def _claim_view(res: ClaimResult) -> dict:
    c = res.claim
    return {"id": c.id, "text": c.text, "source": c.source, "study": c.study,
            "anchor": f"study-{c.study}", "verdict": res.verdict,
            "css": res.verdict.replace(" ", "-"), "evidence": res.evidence,
            "article": res.article, "note": c.raw.get("note", "")}


def build_context(config: Config, tables: dict, claims: list[ClaimResult],
                  results_dir: Path, sections: Sequence[figures.SectionFn] = ()) -> dict[str, Any]:
    """The template's data; `sections` add per-study blocks (e.g. nnopt.landscape.section)."""
    studies = [_study_view(s, tables, results_dir, sections) for s in config.studies]
    verdicts = [r.verdict for r in claims]
    return {
        "title": "Neural-network optimization: claims checked",
        "overview": _overview(config, tables["runs"]),
        "claims": [_claim_view(r) for r in claims],
        "verdict_counts": {v: verdicts.count(v) for v in
                           ("supported", "contradicted", "inconclusive", "not run")},
        "findings": [s["finding"] for s in studies],
        "studies": studies,
        "css": (TEMPLATES / "report.css").read_text(),
    }


# --- rendering ---------------------------------------------------------------------------------


def render_html(context: dict[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True))
    return env.get_template("report.html.j2").render(**context)


class RefusingFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that fetches nothing: the report is self-contained, so any
    request (http, https, file, ...) comes from data; it is refused and recorded. Only
    `data:` URLs (bytes already inside the document) are decoded."""

    def __init__(self):
        super().__init__(allowed_protocols=("data",), allow_redirects=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers=None):
        if url.startswith("data:"):
            return super().fetch(url, headers)
        self.refused.append(url)
        raise ValueError(f"nnopt report: refused to fetch {url!r} (report is self-contained)")


def write_pdf(html: str, path: str | Path) -> RefusingFetcher:
    import logging

    from weasyprint import HTML

    # WeasyPrint logs every refused fetch as a warning; the report expects none, so keep quiet.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    fetcher = RefusingFetcher()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf(tmp)
    return fetcher


def _write_text_atomic(text: str, path: Path) -> None:
    write_text_atomic(path, text)  # nnopt.store.atomic: unique temp name, fsync, rename


def build_report(config_path, results_dir, claims_path, html_path, pdf_path=None,
                 sections: Sequence[figures.SectionFn] = ()) -> str:
    """Render the HTML (and the PDF when pdf_path is given); return the HTML."""
    config = read_config(config_path)
    tables = load_tables(results_dir)
    alpha, claims = load_claims(claims_path)
    results = evaluate_claims(claims, config, tables["runs"], alpha)
    html = render_html(build_context(config, tables, results, Path(results_dir), sections))
    _write_text_atomic(html, Path(html_path))
    if pdf_path:
        write_pdf(html, pdf_path)
    return html
