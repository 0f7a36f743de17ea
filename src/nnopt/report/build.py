"""The report: result tables + claims → one self-contained HTML file and a PDF.

Two ways to build it, one template:
* `build_report(...)` renders everything in one process (tests, small sets);
* per study, `write_section(...)` (`nnopt report-section`) renders the study's section as an
  HTML fragment plus a small JSON of what the summary needs, from that study's runs alone, and
  `build_report(..., sections_dir=...)` assembles the fragments, the claims and the summary
  into reports/report.html. Snakemake caches the fragments, so a change to one study
  re-renders one section plus the assembly.

Templates render with autoescaping (study names, descriptions and config values are data and
may contain `<`, `&`, `{{`). The PDF comes from the same HTML (nnopt.report.pdf: printed per
study and merged) through WeasyPrint with a URL fetcher that refuses every request: all CSS,
SVG, script and data are inline, so nothing is ever fetched, from the network or from disk. The HTML's JavaScript (templates/report.js) adds
sortable, filterable tables and interactive curves; without it the static figures and full
tables show, and print CSS hides the interactive parts (WeasyPrint runs no script).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from nnopt.analysis import aggregate as ag
from nnopt.analysis.claims import VERDICTS, ClaimResult, evaluate_claims, load_claims
from nnopt.analysis.claims_table import problem_rows, write_claims
from nnopt.analysis.design import design_flags
from nnopt.store.atomic import write_text_atomic
from nnopt.config.metrics import metric_info
from nnopt.config.spec import SpecError
from nnopt.config.studies import Config
from nnopt.report import figures, interactive, setup
from nnopt.report.glyphs import visible_controls
from nnopt.report.pdf import printable, write_pdf, write_pdf_from, write_report  # noqa: F401
from nnopt.report.formatting import _num, _p, _p_eq, _with_unit, format_cell  # noqa: F401
from nnopt.report.study_view import (MAX_PROBLEM_ROWS, MAX_TABLE_ROWS,  # noqa: F401
                                     _difference, machine, study_view)

__all__ = ["load_config", "load_tables", "study_tables", "build_context", "render_section",
           "render_html", "write_pdf", "write_pdf_from", "write_section", "build_report",
           "printable", "DEFAULT_TITLE"]  # and RefusingFetcher (nnopt.report.pdf)

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_TITLE = "Neural-network optimization: claims checked"
_TABLES = ("runs", "curves", "summary", "comparisons")
_machine = machine  # old private name (tests)


def load_config(path: str | Path | Config) -> Config:
    """The config and its studies, as the report reads them: the one place to change when
    the workflow hands over another file (e.g. a plan) instead of results/config.json. A
    Config passes through (the CLI hands a tuned study's confirmation runs this way)."""
    return path if isinstance(path, Config) else ag.read_config(path)


def load_tables(results_dir: str | Path) -> dict[str, pl.DataFrame]:
    results_dir = Path(results_dir)
    out = {}
    for name in _TABLES:
        path = results_dir / f"{name}.parquet"
        if not path.exists():
            raise SpecError(f"{path}: missing; run `nnopt aggregate` first")
        out[name] = pl.read_parquet(path)
    return out


# --- overview and claims ---------------------------------------------------------------------


def _unique(runs: pl.DataFrame, column: str) -> str:
    if column not in runs.columns:
        return "—"
    values = [str(v) for v in runs[column].drop_nulls().unique(maintain_order=True).to_list()]
    return ", ".join(values[:4]) + (f" (+{len(values) - 4} more)" if len(values) > 4 else "") or "—"


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


def _compute_s(runs: pl.DataFrame) -> float:
    """Wall time of training, summed over training jobs: a run trained alone counts its
    `wall_time_s`; the members of a stacked cohort (one `cohort_id` and start) trained as one
    model in one wall time, which each member records, so a cohort counts once."""
    if "wall_time_s" not in runs.columns:
        return 0.0
    for column, dtype in (("cohort_id", pl.String), ("cohort_wall_time_s", pl.Float64)):
        if column not in runs.columns:  # tables written before cohorts were recorded
            runs = runs.with_columns(pl.lit(None, dtype).alias(column))
    wall = pl.max_horizontal("wall_time_s", "cohort_wall_time_s").fill_null(0.0)
    alone = runs.filter(pl.col("cohort_id").is_null()).select(wall.sum()).item()
    cohorts = (runs.filter(pl.col("cohort_id").is_not_null())
               .group_by("cohort_id", "started_at").agg(wall.max().alias("wall_s"))["wall_s"])
    return float(alone or 0.0) + float(cohorts.sum() or 0.0)


def _overview(config: Config, runs: pl.DataFrame) -> dict:
    counts = dict(runs.group_by("status").len().iter_rows())
    canonical = json.dumps(config.raw, sort_keys=True, separators=(",", ":"), default=str)
    finished = runs["finished_at"].drop_nulls()
    seeds = sorted({len(s.seeds) for s in config.studies})
    return {
        "n_studies": len(config.studies), "n_runs": runs.height,
        "n_configs": runs.select("study", "config").unique().height,
        "status": {s: counts.get(s, 0) for s in ("ok", "stalled", "diverged", "failed",
                                                  "missing")},
        "seeds": " or ".join(map(str, seeds)) + " per configuration",
        "hardware": _hardware(runs),
        "versions": f"nnopt {_unique(runs, 'nnopt_version')}, torch "
                    f"{_unique(runs, 'torch_version')}, Python {_unique(runs, 'python_version')}",
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:16],
        "results_date": finished.max() if finished.len() else "—",
        "rendered_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "compute": _duration(_compute_s(runs)),
    }


def _article_unit(metric: str | None) -> str:
    """The unit of a source's number for `metric`: the metric's own, except memory, which
    the sources give in MB (ours may be bytes of optimizer state)."""
    if not metric:
        return ""
    if "bytes" in metric or "rss" in metric:
        return "MB"
    return metric_info(metric).unit


def _claim_view(res: ClaimResult) -> dict:
    c = res.claim
    unit = _article_unit(getattr(c, "metric", None))
    article = [{**a, "article": _with_unit(str(a["article"]), unit)} for a in res.article]
    rows = problem_rows(res)
    return {"id": c.id, "text": c.text, "source": c.source, "study": c.study,
            "anchor": f"study-{c.study}", "verdict": res.verdict,
            "css": res.verdict.replace(" ", "-"), "evidence": res.evidence,
            "article": article, "note": c.raw.get("note", ""),
            "source_kind": "forum post" if "forum" in (c.source or "").lower() else "article",
            "family": res.family, "summary": res.summary, "counts": _counts(rows),
            "problems": [{"problem": pr.problem, "verdict": pr.verdict,
                          "css": pr.verdict.replace(" ", "-"), "evidence": pr.evidence}
                         for pr in res.problems] if len(res.problems) > 1 else [],
            "forest": _forest(res, rows) if len(rows) > 1 else None}


def _counts(rows: list[dict]) -> str:
    """'n 10, n_used 9' over a claim's tests (runs of the compared configurations)."""
    n, used = sum(r["n"] or 0 for r in rows), sum(r["n_used"] or 0 for r in rows)
    return f"n {n}, n_used {used}" if n else ""


def _forest(res: ClaimResult, rows: list[dict]) -> str | None:
    """Per-problem effects in the metric's display unit (log ratio, rate for other kinds)."""
    c = res.claim
    plain = c.kind in ("ratio", "diverges")
    info = metric_info(c.metric)
    scale = 1.0 if plain else info.scale
    label = {"ratio": "log ratio − log bound", "diverges": "difference in failure rate"}.get(
        c.kind, f"difference in {info.axis_label}")
    scaled = [{**r, **{k: None if r[k] is None else r[k] * scale
                       for k in ("effect", "ci_low", "ci_high")}} for r in rows]
    margins = [r["margin"] for r in rows if r["margin"] is not None]
    return figures.forest_plot(scaled, margins[0] * scale if margins else None, label)


def _summary_of(view: dict) -> dict:
    """What the assembly needs of a section besides its HTML (written beside the fragment)."""
    return {"name": view["name"], "anchor": view["anchor"], "title": view["title"],
            "finding": view["finding"]}


def build_context(config: Config, tables: dict, claims: list[ClaimResult],
                  results_dir: Path, sections: Sequence[figures.SectionFn] = (),
                  studies: list[dict] | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """The template's data; `sections` add per-study blocks (e.g. nnopt.landscape.section).
    `studies`: pre-rendered sections ({name, anchor, title, finding, html}) to assemble
    instead of rendering each study here."""
    if studies is None:
        studies = [study_view(s, tables, results_dir, sections) for s in config.studies]
    verdicts = [r.verdict for r in claims]
    flags = design_flags(config, [r.claim for r in claims], ag.compared_runs(tables["runs"]),
                         alpha)  # fmt: skip
    return {
        "title": config.raw.get("title") or DEFAULT_TITLE,
        "overview": _overview(config, tables["runs"]),
        "setup": setup.overall_setup(list(config.studies)),
        "sources_note": setup.SOURCES_NOTE,
        "claims": [_claim_view(r) for r in claims],
        "has_claims": bool(claims),
        "design": [{"study": f.study, "kind": f.kind, "message": f.message} for f in flags],
        "verdict_counts": {v: verdicts.count(v) for v in VERDICTS},
        "findings": [s["finding"] for s in studies],
        "studies": studies,
        "css": (TEMPLATES / "report.css").read_text(),
        "js": (TEMPLATES / "report.js").read_text(),
    }


# --- rendering ---------------------------------------------------------------------------------


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["json_script"] = interactive.json_script
    return env


def render_section(view: dict) -> str:
    """One study's <section> (tables, figures, the JSON of its interactive curves)."""
    return _env().get_template("study.html.j2").render(s=view)


def render_html(context: dict[str, Any]) -> str:
    env = _env()
    studies = [s if "html" in s else {**s, "html": render_section(s)}
               for s in context["studies"]]
    for s in studies:
        s["html"] = Markup(s["html"])  # rendered (and escaped) by our own template
    # Control and bidi characters from the config never reach the HTML raw (report.glyphs).
    return visible_controls(env.get_template("report.html.j2").render(**{**context, "studies": studies}))


def _write_text_atomic(text: str, path: Path) -> None:
    write_text_atomic(path, text)  # nnopt.store.atomic: unique temp name, fsync, rename


def _one_study(config: Config, name: str) -> Config:
    try:
        study = config.study(name)
    except KeyError:
        names = ", ".join(s.name for s in config.studies)
        raise SpecError(f"--study {name!r}: not a study of the config (studies: {names})") \
            from None
    return dataclasses.replace(config, studies=(study,))


def study_tables(config: Config, runs_dir: str | Path) -> dict[str, pl.DataFrame]:
    """The four tables of a (one-study) config, aggregated from its run folders alone."""
    runs = ag.load_runs(config, runs_dir)
    summary = ag.summarize(runs, config)
    return {"runs": runs, "curves": ag.load_curves(runs, runs_dir), "summary": summary,
            "comparisons": ag.compare_to_baseline(runs, summary, config)}


def write_section(config_path, runs_dir, study: str, html_path, results_dir=None,
                  sections: Sequence[figures.SectionFn] = ()) -> dict:
    """Render one study's section from its own runs: `html_path` (the fragment) and beside
    it `<name>.json` (title, anchor, finding). Returns the summary written."""
    config = _one_study(load_config(config_path), study)
    tables = study_tables(config, runs_dir)
    results_dir = Path(results_dir) if results_dir else Path(runs_dir).parent
    view = study_view(config.studies[0], tables, results_dir, sections)
    del tables  # the curves are the largest table: free them before rendering
    html_path = Path(html_path)
    _write_text_atomic(render_section(view), html_path)
    summary = _summary_of(view)
    _write_text_atomic(json.dumps(summary), html_path.with_suffix(".json"))
    return summary


def _read_sections(config: Config, sections_dir: Path) -> list[dict]:
    out = []
    for study in config.studies:
        html = sections_dir / f"{study.name}.html"
        meta = html.with_suffix(".json")
        if not (html.exists() and meta.exists()):
            raise SpecError(f"{html}: missing; run `nnopt report-section --study {study.name}`")
        out.append({**json.loads(meta.read_text()), "html": html.read_text(encoding="utf-8")})
    return out


def build_report(config_path, results_dir, claims_path, html_path, pdf_path=None,
                 sections: Sequence[figures.SectionFn] = (), sections_dir=None) -> str:
    """Render the HTML (and the PDF when pdf_path is given); return the HTML. With
    `sections_dir`, the studies' sections are the fragments `write_section` left there and
    only results/runs.parquet is read (for the summary and the claims)."""
    config = load_config(config_path)
    if sections_dir:
        runs_path = Path(results_dir) / "runs.parquet"
        if not runs_path.exists():
            raise SpecError(f"{runs_path}: missing; run `nnopt aggregate` first")
        tables = {"runs": pl.read_parquet(runs_path)}
        studies = _read_sections(config, Path(sections_dir))
    else:
        tables, studies = load_tables(results_dir), None
    # No claims file (a study set of your own): no claims section, no "not run" rows.
    alpha, claims = load_claims(claims_path) if claims_path else (0.05, [])
    # Claims judge the compared runs: a tuned study's confirmation runs, never its trials.
    results = evaluate_claims(claims, config, ag.compared_runs(tables["runs"]), alpha)
    write_claims(results, Path(results_dir) / "claims.parquet")  # machine-readable verdicts
    context = build_context(config, tables, results, Path(results_dir), sections, studies, alpha)
    html = render_html(context)
    _write_text_atomic(html, Path(html_path))
    if pdf_path:
        write_report(html, pdf_path)  # printed in parts and merged, as the workflow does
    return html


def __getattr__(name: str):
    if name == "RefusingFetcher":  # nnopt.report.pdf builds it on first use (WeasyPrint)
        from nnopt.report import pdf

        return pdf.RefusingFetcher
    raise AttributeError(name)
