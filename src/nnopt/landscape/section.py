"""The report's landscape block: a `nnopt.report.figures.SectionFn` that the `nnopt report` verb hands to the report.

For each study, `report_section` returns figures the report shows under it: gradient-norm
heatmaps (studies whose factors change gradient flow, or marked `landscape: true`), then,
when results/landscape/{study} exists, one contour figure per chosen run, the interpolation
curves and the sharpness table (an HTML table in the figure slot). No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from nnopt.landscape.figures import landscape_section, short_label

__all__ = ["report_section"]


# Studies whose factors change gradient flow get gradient heatmaps even without landscapes.
_GRADIENT_FACTORS = ("model.activation", "model.batch_norm", "model.depth", "init.")
# Seven narrow columns: the report's page is ~16 cm wide.
_TABLE_COLUMNS = {
    "config": "Configuration (seed)", "hessian_max_eigenvalue": "λ_max",
    "hessian_min_eigenvalue": "λ_min", "interp_barrier": "Path bump",
    "landscape_final_train_loss": "Final train loss",
    "final_train_loss_range": "Seeds' loss range (n)", "reproduced": "Exact re-run",
}  # fmt: skip


def _cell(v: Any) -> str:
    from html import escape

    if isinstance(v, float):
        return f"{v:.3g}"
    return "–" if v is None else escape(str(v).lower() if isinstance(v, bool) else str(v))


def _html_table(table: pl.DataFrame) -> str:
    """A small HTML table (escaped) for the report's figure slot."""
    from html import escape

    cols = [c for c in _TABLE_COLUMNS if c in table.columns]
    head = "".join(f"<th>{escape(_TABLE_COLUMNS[c])}</th>" for c in cols)
    rows = []
    for r in table.iter_rows(named=True):
        cells = {c: _cell(r[c]) for c in cols}
        if "seed" in r:
            cells["config"] += f" ({_cell(r['seed'])})"
        if "n_seeds" in r and "final_train_loss_range" in cells:
            cells["final_train_loss_range"] += f" ({_cell(r['n_seeds'])})"
        rows.append("<tr>" + "".join(f"<td>{cells[c]}</td>" for c in cols) + "</tr>")
    return (
        f'<table class="landscape-sharpness"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _wants_gradients(study: Any) -> bool:
    return bool(study.landscape) or any(k.startswith(_GRADIENT_FACTORS) for k in study.factor_keys)


_CAPTIONS = {
    "gradient_norms": "L2 norm of each weight matrix's gradient at every evaluation (log "
    "colour shared by the panels; input layer on top; grey = exactly zero). Dark top rows that "
    "stay dark are vanishing gradients; bright bands that grow are exploding ones.",
    "interpolation": "Loss on the straight line θ(α) = (1−α)·θ_init + α·θ_final (Goodfellow et al. "
    "2015). A curve that falls steadily from α = 0 to 1 means no barrier separated start and end.",
    "sharpness": "Top and bottom Hessian eigenvalues of the training loss at the final weights "
    "(LOBPCG on Hessian-vector products, by default); large λ_max = sharp minimum, clearly negative "
    "λ_min = not a minimum. Path bump = highest rise of the interpolation above its chord on "
    "[0, 1]. Seeds' loss range: spread of the final training loss over the configuration's seeds.",
    "landscape": "Training loss around the final weights (★) on two random filter-normalized "
    "directions (left; Li et al. 2018) and on the plane of the first two principal components of "
    "the weight snapshots, with the training path from the initial weights (○) (right). Each "
    "panel has its own log colour scale; blank areas: the loss was not finite there.",
}


def _study_tables(study: Any, results_dir: Path) -> tuple[pl.DataFrame, Any] | None:
    """The study's runs (and curves, for the heatmaps) read from its run folders with the
    aggregate's reader: the workflow renders a section as soon as its study's batches and
    landscapes exist, before (and without) the set's runs.parquet, which may be missing or
    from an earlier invocation. Without run folders: results/{runs,curves}.parquet."""
    if (results_dir / "runs" / study.name).is_dir():
        from nnopt.analysis.run_table import load_curves, load_runs
        from nnopt.config.studies import Config

        one = Config(studies=(study,), max_runs_per_study=len(study.runs), runs_per_job=None)
        runs = load_runs(one, results_dir / "runs")
        curves = load_curves(runs, results_dir / "runs") if _wants_gradients(study) else None
        return runs, curves
    runs_path, curves_path = results_dir / "runs.parquet", results_dir / "curves.parquet"
    if not runs_path.exists():
        return None
    runs = pl.read_parquet(runs_path).filter(pl.col("study") == study.name)
    curves = None
    if _wants_gradients(study) and curves_path.exists():
        curves = pl.scan_parquet(curves_path).filter(pl.col("study") == study.name).collect()
    return runs, curves


def report_section(study: Any, results_dir: Path) -> list:
    """Figures for `study` from its run folders (results/runs; `_study_tables`) and
    results/landscape/{study}; [] when there is nothing to show."""
    from nnopt.report.figures import Figure

    results_dir = Path(results_dir)
    landscape_dir = results_dir / "landscape" / study.name
    if not (_wants_gradients(study) or landscape_dir.is_dir()):
        return []
    tables = _study_tables(study, results_dir)
    if tables is None:
        return []
    runs, curves = tables
    from nnopt.report.figures import short_labels

    labels = short_labels(runs, study)  # the report's labels, in panel titles and the table
    section = landscape_section(study.name, runs, curves, results_dir / "runs", landscape_dir,
                                labels)
    out = []
    shown: set[str] = set()
    for key, svg in section["figures"].items():
        kind = "landscape" if key.startswith("landscape_") else key
        title = {"gradient_norms": "Per-layer gradient norms", "interpolation": "Linear interpolation",
                 "landscape": "Loss landscape"}[kind]  # fmt: skip
        # One landscape per configuration: the long caption once, then a pointer to it.
        caption = _CAPTIONS[kind] if kind not in shown else "As above, for the next configuration."
        shown.add(kind)
        out.append(Figure(key=key, title=title, svg=svg, caption=caption))
    missing, failed = section.get("missing") or [], section.get("failed") or {}
    note = ""
    if missing:
        note += f" No landscape for {', '.join(missing)}: no seed finished with status ok."
    if failed:
        errors = "; ".join(f"{labels.get(c) or short_label(c)}: {e}" for c, e in failed.items())
        note += f" Landscape computation failed for {errors} (logs/landscape/{study.name}.log)."
    if "sharpness" in section["tables"]:
        table = _html_table(section["tables"]["sharpness"])
        caption = _CAPTIONS["sharpness"] + note
        out.append(Figure(key="sharpness", title="Sharpness", svg=table, caption=caption))
    elif note:
        out.append(Figure(key="sharpness", title="Sharpness", svg="", caption=note.strip()))
    return out
