"""Machine-readable verdicts: results/claims.parquet, one row per claim × problem plus an
`overall` row per claim (problem "overall").

Columns: claim, study, problem, verdict, summary, effect, ci_low, ci_high, p, p_adjusted, test,
n, n_used, margin, seeds_needed, family. A problem row describes the test that decides its
verdict: the first contradicting test of a contradicted claim, otherwise the weakest (largest
Holm-adjusted p) of its tests; effect, interval and margin are in the metric's stored unit
(accuracy as a fraction), on logs for ratio claims, a rate difference for divergence claims.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from nnopt.analysis.aggregate import write_parquet_atomic
from nnopt.analysis.claims import ClaimResult, ProblemResult

__all__ = ["CLAIMS_SCHEMA", "claims_frame", "problem_rows", "write_claims"]

CLAIMS_SCHEMA = {
    "claim": pl.String, "study": pl.String, "problem": pl.String, "verdict": pl.String,
    "summary": pl.String, "effect": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "p": pl.Float64, "p_adjusted": pl.Float64, "test": pl.String, "n": pl.Int64,
    "n_used": pl.Int64, "margin": pl.Float64, "seeds_needed": pl.Int64, "family": pl.String,
}


def _deciding(pr: ProblemResult) -> dict | None:
    if not pr.tests:
        return None
    contra = [t for t in pr.tests if t["verdict"] == "contradicted"]
    if contra:
        return contra[0]
    return max(pr.tests, key=lambda t: 1.0 if t["p_holm"] is None else t["p_holm"])


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _problem_row(res: ClaimResult, pr: ProblemResult) -> dict:
    t = _deciding(pr)
    r = t["result"] if t else None
    return {
        "claim": res.claim.id, "study": res.claim.study, "problem": pr.problem,
        "verdict": pr.verdict, "summary": pr.verdict,
        "effect": _finite(r.effect) if r else None, "ci_low": _finite(r.ci_low) if r else None,
        "ci_high": _finite(r.ci_high) if r else None, "p": r.p if r else None,
        "p_adjusted": t["p_holm"] if t else None, "test": r.test if r else "none",
        "n": sum(x["n"] for x in pr.tests), "n_used": sum(x["n_used"] for x in pr.tests),
        "margin": _finite(r.margin) if r else None, "seeds_needed": pr.seeds_needed,
        "family": pr.family,
    }


def problem_rows(res: ClaimResult) -> list[dict]:
    """One claim's per-problem rows of the table (no overall row)."""
    return [_problem_row(res, pr) for pr in res.problems]


def claims_frame(results: list[ClaimResult]) -> pl.DataFrame:
    """The table of the module docstring, in the claims file's order."""
    rows = []
    for res in results:
        per_problem = problem_rows(res)
        rows += per_problem
        rows.append({
            **{k: None for k in CLAIMS_SCHEMA}, "claim": res.claim.id, "study": res.claim.study,
            "problem": "overall", "verdict": res.verdict, "summary": res.summary or res.verdict,
            "test": "none", "n": sum(r["n"] for r in per_problem),
            "n_used": sum(r["n_used"] for r in per_problem), "family": res.family,
        })
    return pl.DataFrame(rows, schema=CLAIMS_SCHEMA)


def write_claims(results: list[ClaimResult], path: str | Path) -> Path:
    path = Path(path)
    write_parquet_atomic(claims_frame(results), path)
    return path
