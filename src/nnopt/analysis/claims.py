"""Claims check: an article's assertions as checkable statements, judged from the runs.

A claims file (YAML) is `{alpha: 0.05, claims: [claim, ...]}`; its grammar is documented at
the top of config/claims.yaml. Each claim becomes one or more two-sample tests (nnopt.analysis.stats
rules), the tests of all claims about one study form one Holm family, and each claim gets
a verdict:

* supported    every test is significant after Holm, in the claimed direction;
* contradicted some test is significant after Holm in the opposite direction (for `best`:
               another configuration is significantly better);
* inconclusive otherwise (too few runs, overlapping results, metric not measured);
* not run      the claim's study is not in the config (never an error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl
from scipy import stats as sps

from nnopt.analysis import labels

from nnopt.analysis import stats
from nnopt.analysis.aggregate import format_value, target_is_set
from nnopt.config.metrics import metric_info
from nnopt.config.spec import SpecError
from nnopt.config.studies import Config, Study

__all__ = ["KINDS", "Claim", "ClaimResult", "load_claims", "parse_claims", "evaluate_claims",
           "check_claims"]

KINDS = ("greater", "less", "ordering", "best", "ratio", "diverges")
_KEYS = ("id", "text", "source", "study", "metric", "kind", "left", "right", "configs",
         "config", "among", "direction", "at_least", "at_most", "pool", "article", "note")
_NEEDS = {"greater": ("left", "right"), "less": ("left", "right"), "ordering": ("configs",),
          "best": ("config",), "ratio": ("left", "right"), "diverges": ("left", "right")}


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    study: str
    metric: str
    kind: str
    raw: Mapping[str, Any] = field(repr=False)


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str = "inconclusive"  # supported | contradicted | inconclusive | not run
    evidence: list[str] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)  # label, p, sign, p_holm
    article: list[dict] = field(default_factory=list)  # label, article, ours
    chosen: dict = field(default_factory=dict)  # pool=best: selector → configuration used


# --- parsing ------------------------------------------------------------------------------


def _check_claim(i: int, raw: Any, seen: set) -> Claim:
    path = f"claims[{i}]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping with id, text, study, metric, kind")
    for key in raw:
        if key not in _KEYS:
            raise SpecError(f"{path}.{key}: unknown key; allowed: {', '.join(_KEYS)}")
    for key in ("id", "text", "study", "kind"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise SpecError(f"{path}.{key}: required, a non-empty string")
    path = f"claims.{raw['id']}"
    if raw["id"] in seen:
        raise SpecError(f"{path}: duplicate claim id")
    if raw["kind"] not in KINDS:
        raise SpecError(f"{path}.kind: unknown value {raw['kind']!r}; allowed: {', '.join(KINDS)}")
    for key in _NEEDS[raw["kind"]]:
        if raw.get(key) is None:
            raise SpecError(f"{path}.{key}: required for kind {raw['kind']}")
    if raw["kind"] != "diverges" and not isinstance(raw.get("metric"), str):
        raise SpecError(f"{path}.metric: required, a metric name such as test_accuracy")
    if raw["kind"] == "ordering" and (not isinstance(raw["configs"], list) or len(raw["configs"]) < 2):
        raise SpecError(f"{path}.configs: expected a list of at least two configurations")
    if raw["kind"] == "ordering" and raw.get("direction", "increasing") not in ("increasing", "decreasing"):
        raise SpecError(f"{path}.direction: allowed: increasing, decreasing")
    if raw["kind"] == "best" and raw.get("direction", "auto") not in ("auto", "max", "min"):
        raise SpecError(f"{path}.direction: allowed: max, min (default: the metric's own)")
    if raw.get("pool", "all") not in ("all", "best"):
        raise SpecError(f"{path}.pool: allowed: all (pool matching configurations), best")
    if raw["kind"] == "ratio" and (raw.get("at_least") is None) == (raw.get("at_most") is None):
        raise SpecError(f"{path}: kind ratio needs exactly one of at_least, at_most")
    seen.add(raw["id"])
    return Claim(raw["id"], raw["text"], str(raw.get("source", "")), raw["study"],
                 str(raw.get("metric", "")), raw["kind"], raw)


def parse_claims(raw: Any, where: str = "claims") -> tuple[float, list[Claim]]:
    """Validate a claims document; return (alpha, claims). Errors name the claim and key."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("claims"), list):
        raise SpecError(f"{where}: expected a mapping with a list under 'claims'")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise SpecError(f"{where}: alpha: expected a number in (0, 1), got {alpha!r}")
    seen: set[str] = set()
    try:
        return float(alpha), [_check_claim(i, c, seen) for i, c in enumerate(raw["claims"])]
    except SpecError as err:
        raise SpecError(f"{where}: {err}") from None


def load_claims(path: str | Path) -> tuple[float, list[Claim]]:
    """Read a claims file with the strict YAML loader (a duplicate key is refused)."""
    from nnopt.config.check import read_yaml

    path = Path(path)
    return parse_claims(read_yaml(path), str(path))


# --- selecting runs -------------------------------------------------------------------------


def _selector(study: Study, sel: Any) -> dict[str, str]:
    """A configuration selector as {factor: formatted value}; a scalar means the study's rows
    factor (or its first factor)."""
    if isinstance(sel, Mapping):
        return {str(k): format_value(v) for k, v in sel.items()}
    key = study.rows or (study.factor_keys[0] if study.factor_keys else "")
    return {key: format_value(sel)}


class _Runs:
    """One study's runs, selected by configuration selectors. With pool='best', a selector
    that matches several configurations stands for the best of them by the claim's metric
    (e.g. each optimizer at its best learning rate); otherwise their runs are pooled."""

    def __init__(self, runs: pl.DataFrame, study: Study, pool: str = "all"):
        self.study, self.pool = study, pool
        self.frame = runs.filter(pl.col("study") == study.name)
        self.chosen: dict[str, str] = {}  # selector label → configuration picked by pool=best

    def label(self, sel: Mapping[str, str]) -> str:
        """The selector as the report names configurations ('relu', 'sgd, lr=0.1')."""
        return labels.display_label(sel, self.study) or ", ".join(sel.values())

    def select(self, sel: Mapping[str, str]) -> pl.DataFrame:
        missing = [k for k in sel if k not in self.frame.columns]
        if missing:
            raise LookupError(f"{missing[0]} is not a factor of study {self.study.name}")
        part = self.frame.filter(*[pl.col(k) == v for k, v in sel.items()])
        if part.height == 0:
            raise LookupError(f"no configuration of {self.study.name} has "
                              + ", ".join(f"{k}={v}" for k, v in sel.items()))
        return part

    def values(self, sel: Mapping[str, str], metric: str) -> np.ndarray:
        """ok runs' values; for censored metrics diverged runs too, never-reached = +inf."""
        part = self.select(sel)
        if metric not in part.columns:
            raise LookupError(f"metric {metric} was not measured")
        info = metric_info(metric)
        keep = ["ok", "diverged"] if info.censored else ["ok"]
        part = part.filter(pl.col("status").is_in(keep))
        if self.pool == "best" and part["config"].n_unique() > 1:
            part = self._best_config(part, metric, info)
            config = part["config"][0]
            self.chosen[self.label(sel)] = labels.short_labels(part, self.study)[config]
        if info.censored:  # never reached = +inf, but only where a target was set
            part = part.with_columns(pl.when(pl.col(metric).is_null()
                                             & target_is_set(pl.lit(metric)))
                                     .then(float("inf")).otherwise(pl.col(metric)).alias(metric))
        vals = part[metric].cast(pl.Float64).to_numpy()
        return vals[~np.isnan(vals)]

    @staticmethod
    def _best_config(part: pl.DataFrame, metric: str, info) -> pl.DataFrame:
        centre = pl.col(metric).median() if info.censored else pl.col(metric).mean()
        scores = part.group_by("config").agg(centre.alias("score")).drop_nulls("score")
        best = scores.sort("score", descending=info.higher_is_better)["config"][0]
        return part.filter(pl.col("config") == best)


# --- tests per kind ---------------------------------------------------------------------


def _describe(vals: np.ndarray, metric: str) -> str:
    info = metric_info(metric)
    if info.censored:
        reached = int(np.isfinite(vals).sum())
        med = np.median(vals) if len(vals) else math.nan
        if not np.isfinite(med):
            return f"never reached ({reached} of {len(vals)})"
        median = f"{med * info.scale:.{info.digits}f} {info.unit}"
        return f"median {median} ({reached} of {len(vals)} reached)"
    d = stats.describe(vals)
    if d.n == 0:
        return "no usable runs"
    half = (d.ci_high - d.ci_low) / 2 * info.scale if not math.isnan(d.ci_low) else math.nan
    ci = f" ± {half:.{info.digits}f}" if not math.isnan(half) else ""
    return f"{d.mean * info.scale:.{info.digits}f}{ci} {info.unit} (n={d.n})"


def _pair_test(runs: _Runs, metric: str, a_sel, b_sel, want: int, what: str) -> dict:
    """Test a against b; `want` = +1 if the claim says a's metric is larger, -1 if smaller."""
    a, b = runs.values(a_sel, metric), runs.values(b_sel, metric)
    c = stats.compare(a, b, censored=metric_info(metric).censored)
    observed = np.sign(c.effect_size if c.test == "mannwhitney" else c.diff)
    observed = 0 if (isinstance(observed, float) and math.isnan(observed)) else int(observed)
    evidence = (f"{runs.label(a_sel)}: {_describe(a, metric)} vs {runs.label(b_sel)}: "
                f"{_describe(b, metric)}; {c.test}")
    return {"label": what, "p": c.p, "sign": observed * want, "evidence": evidence}


def _tests_for(claim: Claim, runs: _Runs) -> list[dict]:
    r, study, metric = claim.raw, runs.study, claim.metric
    sel = lambda x: _selector(study, x)  # noqa: E731 (short local alias)
    if claim.kind in ("greater", "less"):
        want = 1 if claim.kind == "greater" else -1
        return [_pair_test(runs, metric, sel(r["left"]), sel(r["right"]), want, claim.kind)]
    if claim.kind == "ordering":
        want = -1 if r.get("direction", "increasing") == "increasing" else 1
        configs = [sel(c) for c in r["configs"]]
        return [_pair_test(runs, metric, a, b, want, f"{runs.label(a)} vs {runs.label(b)}")
                for a, b in zip(configs, configs[1:])]
    if claim.kind == "best":
        return _best_tests(claim, runs)
    if claim.kind == "ratio":
        return [_ratio_test(claim, runs)]
    return [_divergence_test(runs, sel(r["left"]), sel(r["right"]))]


def _best_tests(claim: Claim, runs: _Runs) -> list[dict]:
    r, info = claim.raw, metric_info(claim.metric)
    direction = r.get("direction", "auto")
    want = 1 if (direction == "max" or (direction == "auto" and info.higher_is_better)) else -1
    best = _selector(runs.study, r["config"])
    if r.get("among"):
        others = [_selector(runs.study, c) for c in r["among"]]
    else:  # every other configuration of the study
        keys = list(runs.study.factor_keys)
        combos = runs.frame.select(keys).unique(maintain_order=True).iter_rows(named=True)
        others = [dict(c) for c in combos]
    others = [o for o in others if not all(o.get(k) == v for k, v in best.items())]
    return [_pair_test(runs, claim.metric, best, o, want, f"vs {runs.label(o)}") for o in others]


def _ratio_test(claim: Claim, runs: _Runs) -> dict:
    """mean(left)/mean(right) against a bound: Welch on log values, left shifted by log(bound)."""
    r = claim.raw
    left, right = _selector(runs.study, r["left"]), _selector(runs.study, r["right"])
    a, b = runs.values(left, claim.metric), runs.values(right, claim.metric)
    bound, want = (r["at_least"], 1) if r.get("at_least") is not None else (r["at_most"], -1)
    a, b = a[np.isfinite(a) & (a > 0)], b[np.isfinite(b) & (b > 0)]
    c = stats.compare(np.log(a) - math.log(bound), np.log(b))
    ratio = math.exp(np.log(a).mean() - np.log(b).mean()) if len(a) and len(b) else math.nan
    sign = 0 if math.isnan(c.diff) else int(np.sign(c.diff))
    evidence = (f"{runs.label(left)}/{runs.label(right)} ratio of geometric means {ratio:.2f} "
                f"(claimed {'≥' if want > 0 else '≤'} {bound:g}; n={len(a)}, {len(b)}); {c.test} on logs")
    return {"label": "ratio", "p": c.p, "sign": sign * want, "evidence": evidence}


def _divergence_test(runs: _Runs, left, right) -> dict:
    """Fisher's exact test on diverged vs ok counts (left claimed to diverge more)."""
    counts = []
    for sel in (left, right):
        status = runs.select(sel)["status"]
        counts.append([(status == "diverged").sum(), (status == "ok").sum()])
    p = float(sps.fisher_exact(counts).pvalue) if min(map(sum, counts)) > 0 else math.nan
    rate = [d / (d + o) if d + o else math.nan for d, o in counts]
    sign = 0 if any(map(math.isnan, rate)) else int(np.sign(rate[0] - rate[1]))
    evidence = (f"{runs.label(left)}: {counts[0][0]} of {sum(counts[0])} diverged vs "
                f"{runs.label(right)}: {counts[1][0]} of {sum(counts[1])}; Fisher exact")
    return {"label": "diverged", "p": p, "sign": sign, "evidence": evidence}


def _selectors(claim: Claim) -> list[Any]:
    r = claim.raw
    out = [r.get(k) for k in ("left", "right", "config") if r.get(k) is not None]
    out += list(r.get("configs") or []) + list(r.get("among") or [])
    art = r.get("article") or {}
    out += [a["config"] for a in art] if isinstance(art, list) else list(art)
    return out


def check_claims(claims: list[Claim], config: Config) -> list[str]:
    """Problems a claims file has against a config before any run: unknown studies (these
    are reported 'not run') and selectors that match no configuration."""
    problems = []
    for claim in claims:
        if claim.study not in {s.name for s in config.studies}:
            problems.append(f"{claim.id}: study {claim.study} is not in the config (not run)")
            continue
        study = config.study(claim.study)
        configs = [{k: format_value(v) for k, v in r.factors} for r in study.runs]
        for sel in _selectors(claim):
            want = _selector(study, sel)
            if not any(all(c.get(k) == v for k, v in want.items()) for c in configs):
                problems.append(f"{claim.id}: no configuration of {study.name} has "
                                + ", ".join(f"{k}={v}" for k, v in want.items()))
    return list(dict.fromkeys(problems))


# --- verdicts ---------------------------------------------------------------------------------


def _article_rows(claim: Claim, runs: _Runs) -> list[dict]:
    art = claim.raw.get("article")
    if not art:
        return []
    items = art if isinstance(art, list) else [{"config": k, "value": v} for k, v in art.items()]
    rows = []
    for item in items:
        sel = _selector(runs.study, item["config"])
        try:
            ours = _describe(runs.values(sel, claim.metric), claim.metric) if claim.metric else ""
        except LookupError as err:
            ours = str(err)
        rows.append({"label": runs.label(sel), "article": item["value"], "ours": ours})
    return rows


def _verdict(tests: list[dict], alpha: float) -> str:
    if not tests or any(t["p_holm"] is None for t in tests):
        return "inconclusive"
    if any(t["p_holm"] < alpha and t["sign"] < 0 for t in tests):
        return "contradicted"
    if all(t["p_holm"] < alpha and t["sign"] > 0 for t in tests):
        return "supported"
    return "inconclusive"


def evaluate_claims(claims: list[Claim], config: Config, runs: pl.DataFrame,
                    alpha: float = 0.05) -> list[ClaimResult]:
    """Judge every claim; the tests of all claims about one study form one Holm family."""
    names = {s.name: s for s in config.studies}
    results = []
    for claim in claims:
        res = ClaimResult(claim)
        results.append(res)
        if claim.study not in names:
            res.verdict = "not run"
            res.evidence = [f"study {claim.study} is not in this config"]
            continue
        study_runs = _Runs(runs, names[claim.study], claim.raw.get("pool", "all"))
        try:
            res.tests = _tests_for(claim, study_runs)
            res.article = _article_rows(claim, study_runs)
        except LookupError as err:
            res.evidence = [str(err).strip("'\"")]
        res.chosen = dict(study_runs.chosen)
    for study in dict.fromkeys(r.claim.study for r in results):
        _holm_adjust([t for r in results if r.claim.study == study for t in r.tests])
    for res in results:
        if res.verdict == "not run" or not res.tests:
            continue
        res.verdict = _verdict(res.tests, alpha)
        res.evidence = [f"{t['evidence']} {_p(t['p'])}, Holm {_p(t['p_holm'])}"
                        for t in res.tests]
        if res.chosen:
            res.evidence.append("best configuration used: " + "; ".join(
                f"{k} → {v}" for k, v in res.chosen.items()))
    return results


def _holm_adjust(tests: list[dict]) -> None:
    """Set each test's `p_holm` within one family (one study's claims, like the study's own
    comparisons against its baseline): a family of every claim would make a 5-seed rank test
    (smallest two-sided p = 2/252) unable to support anything, however clear the data."""
    adjusted = stats.holm([math.nan if t["p"] is None else t["p"] for t in tests])
    for t, p in zip(tests, adjusted):
        t["p_holm"] = None if math.isnan(p) else float(p)


def _p(p: float | None) -> str:
    """'p = 0.012', 'p < 0.0001' or 'p n/a'."""
    if p is None or math.isnan(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"
