"""Claims check: an article's assertions as checkable statements, judged from the runs.

A claims file (YAML) is `{alpha: 0.05, margins: {metric: margin}, claims: [claim, ...]}`; its
grammar is documented at the top of config/claims.yaml. Each claim is judged on every problem
of its study (the runs' `problem` column; a study without one has one problem, named after its
dataset and model): one or more tests (nnopt.analysis.claim_tests, rules in
nnopt.analysis.inference), Holm-adjusted over the family of all tests of the claims about the
same study on the same problem (stated in `family`). Each test, each claim per problem, and
each claim overall gets a verdict:

* supported     every test is significant after Holm in the claimed direction, by more than
                the metric's minimum relevant difference (margin);
* contradicted  some test is so in the opposite direction (`best`: another configuration is
                better);
* equivalent    the difference is within ±margin (TOST significant after Holm, or a 95 %
                interval inside the margin); for `best` the configuration is tied, no best;
* underpowered  neither, and the seeds were too few to decide (`seeds_needed` says how many);
* inconclusive  otherwise (metric not measured, unknown configuration, no usable runs);
* not run       the claim's study is not in the config (never an error);
* mixed         (overall only) the problems disagree; `summary` says "holds on k of K".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import polars as pl

from nnopt.analysis import inference, stats
from nnopt.analysis.aggregate import format_value
from nnopt.analysis.claim_tests import ClaimRuns, describe_sample, selector, tests_for
from nnopt.analysis.claim_values import check_id, check_metric, check_values
from nnopt.config.spec import SpecError
from nnopt.config.studies import Config, Study

__all__ = ["KINDS", "VERDICTS", "Claim", "ClaimResult", "ProblemResult", "load_claims",
           "parse_claims", "evaluate_claims", "check_claims", "problems_of"]

KINDS = ("greater", "less", "ordering", "best", "ratio", "diverges")
VERDICTS = ("supported", "contradicted", "equivalent", "underpowered", "inconclusive",
            "mixed", "not run")
_KEYS = ("id", "text", "source", "study", "metric", "kind", "left", "right", "configs",
         "config", "among", "direction", "at_least", "at_most", "pool", "article", "note",
         "margin")
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
    margin: float | str | None = None  # the claim's, else the file's for its metric, else default


@dataclass
class ProblemResult:
    problem: str
    verdict: str = "inconclusive"
    tests: list[dict] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)  # pool=best: selector → configuration used
    seeds_needed: int | None = None
    family: str = ""


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str = "inconclusive"  # overall: one of VERDICTS
    evidence: list[str] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)  # every problem's tests
    article: list[dict] = field(default_factory=list)  # label, article, ours
    chosen: dict = field(default_factory=dict)
    problems: list[ProblemResult] = field(default_factory=list)
    summary: str = ""  # "holds on 2 of 3 problems"
    family: str = ""


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
    check_id(path, raw["id"])
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
    check_values(path, raw)
    margin = _check_margin(f"{path}.margin", raw.get("margin"))
    seen.add(raw["id"])
    return Claim(raw["id"], raw["text"], str(raw.get("source", "")), raw["study"],
                 str(raw.get("metric", "")), raw["kind"], raw, margin)


def _check_margin(path: str, value: Any) -> float | str | None:
    """A margin: a number in the metric's stored unit (accuracy 0.01 = 1 point) or 'N%' of the
    reference configuration's mean."""
    if value is None:
        return None
    if isinstance(value, str) and value.endswith("%"):
        try:
            if float(value[:-1]) > 0:
                return value
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise SpecError(f"{path}: expected a positive number (in the metric's unit, accuracy 0.01 "
                    f"= 1 point) or a percentage such as '10%', got {value!r}")


def parse_claims(raw: Any, where: str = "claims") -> tuple[float, list[Claim]]:
    """Validate a claims document; return (alpha, claims). Errors name the claim and key."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("claims"), list):
        raise SpecError(f"{where}: expected a mapping with a list under 'claims'")
    for key in raw:
        if key not in ("alpha", "margins", "claims"):
            raise SpecError(f"{where}: {key}: unknown key; allowed: alpha, margins, claims")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise SpecError(f"{where}: alpha: expected a number in (0, 1), got {alpha!r}")
    seen: set[str] = set()
    try:
        margins = raw.get("margins") or {}
        if not isinstance(margins, Mapping):
            raise SpecError("margins: expected a mapping of metric names to margins")
        for key in margins:
            check_metric(f"margins.{key}", key)
        margins = {str(k): _check_margin(f"margins.{k}", v) for k, v in margins.items()}
        claims = [_check_claim(i, c, seen) for i, c in enumerate(raw["claims"])]
    except SpecError as err:
        raise SpecError(f"{where}: {err}") from None
    return float(alpha), [c if c.margin is not None or c.metric not in margins
                          else dataclasses.replace(c, margin=margins[c.metric]) for c in claims]


def load_claims(path: str | Path) -> tuple[float, list[Claim]]:
    """Read a claims file with the strict YAML loader (a duplicate key is refused)."""
    from nnopt.config.check import read_yaml

    path = Path(path)
    return parse_claims(read_yaml(path), str(path))


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
    families = _families(config)
    for claim in claims:
        if claim.study not in families:
            problems.append(f"{claim.id}: study {claim.study} is not in the config (not run)")
            continue
        study = families[claim.study][0]  # the problems' copies share their configurations
        configs = [{k: format_value(v) for k, v in r.factors} for r in study.runs]
        for sel in _selectors(claim):
            want = selector(study, sel)
            if not any(all(c.get(k) == v for k, v in want.items()) for c in configs):
                problems.append(f"{claim.id}: no configuration of {study.name} has "
                                + ", ".join(f"{k}={v}" for k, v in want.items()))
    return list(dict.fromkeys(problems))


# --- verdicts ---------------------------------------------------------------------------------


def problems_of(study: Study, runs: pl.DataFrame) -> list[str]:
    """The study's problems: the runs' `problem` column, else one named dataset-model."""
    part = runs.filter(pl.col("study") == study.name)
    if "problem" in part.columns and part["problem"].drop_nulls().len():
        return part["problem"].drop_nulls().unique(maintain_order=True).to_list()
    spec = study.runs[0].spec if study.runs else None
    return [f"{spec.data.name}-{spec.model.kind}" if spec else study.name]


def _problem_frame(runs: pl.DataFrame, study: Study, problem: str, single: bool) -> pl.DataFrame:
    part = runs.filter(pl.col("study") == study.name)
    if "problem" in part.columns and not single:
        part = part.filter(pl.col("problem") == problem)
    return part


def _families(config: Config) -> dict[str, list[Study]]:
    """Configured study name -> its studies: itself, or one copy per problem
    (nnopt.config.problems: `{name}__{problem}`, with `family` and `problem` set)."""
    out: dict[str, list[Study]] = {}
    for study in config.studies:
        out.setdefault(study.family or study.name, []).append(study)
    return out


def _problem_parts(studies: list[Study], runs: pl.DataFrame):
    """(problem, study, runs of that problem) for each problem of a configured study."""
    if len(studies) > 1 or studies[0].problem is not None:  # one study per problem
        return [(s.problem, s, runs.filter(pl.col("study") == s.name)) for s in studies]
    study = studies[0]
    problems = problems_of(study, runs)
    return [(p, study, _problem_frame(runs, study, p, len(problems) == 1)) for p in problems]


def _article_rows(claim: Claim, runs: ClaimRuns) -> list[dict]:
    art = claim.raw.get("article")
    if not art:
        return []
    items = art if isinstance(art, list) else [{"config": k, "value": v} for k, v in art.items()]
    rows = []
    for item in items:
        sel = selector(runs.study, item["config"])
        try:
            if claim.metric:
                vals, _, n = runs.sample(sel, claim.metric)
                ours = describe_sample(vals, claim.metric, n)
            else:
                ours = ""
        except LookupError as err:
            ours = str(err)
        rows.append({"label": runs.label(sel), "article": item["value"], "ours": ours})
    return rows


def _judge(res: ProblemResult, claim: Claim, runs: ClaimRuns) -> None:
    try:
        res.tests = tests_for(claim, runs)
    except LookupError as err:
        res.evidence = [str(err).strip("'\"")]
    res.chosen = dict(runs.chosen)


def evaluate_claims(claims: list[Claim], config: Config, runs: pl.DataFrame,
                    alpha: float = 0.05) -> list[ClaimResult]:
    """Judge every claim on every problem of its study (module docstring)."""
    families = _families(config)
    results = []
    for claim in claims:
        res = ClaimResult(claim)
        results.append(res)
        if claim.study not in families:
            res.verdict, res.evidence = "not run", [f"study {claim.study} is not in this config"]
            continue
        for problem, study, frame in _problem_parts(families[claim.study], runs):
            claim_runs = ClaimRuns(frame, study, claim.raw.get("pool", "all"))
            res.problems.append(pr := ProblemResult(problem))
            _judge(pr, claim, claim_runs)
            if not res.article:
                res.article = _article_rows(claim, claim_runs)
    _adjust_families(results, alpha)
    for res in results:
        if res.verdict != "not run":
            _overall(res)
    return results


def _adjust_families(results: list[ClaimResult], alpha: float) -> None:
    """Holm within (study, problem): every test of the claims about that study there."""
    families: dict[tuple[str, str], list[tuple[ClaimResult, ProblemResult]]] = {}
    for res in results:
        for pr in res.problems:
            families.setdefault((res.claim.study, pr.problem), []).append((res, pr))
    for (study, problem), members in families.items():
        tests = [t for _, pr in members for t in pr.tests]
        n_claims = len({r.claim.id for r, pr in members if pr.tests})
        for key, out in (("p", "p_holm"), ("p_tost", "p_tost_holm")):
            raw = [math.nan if getattr(t["result"], key) is None else getattr(t["result"], key)
                   for t in tests]
            for t, p in zip(tests, stats.holm(raw)):
                t[out] = None if math.isnan(p) else float(p)
        family = (f"Holm over the {len(tests)} tests of the {n_claims} claims about study "
                  f"{study} on {problem}")
        for res, pr in members:
            pr.family = res.family = family
            for t in pr.tests:
                t["verdict"], t["seeds_needed"] = inference.decide(
                    t["result"], want=t["want"], p_adjusted=t["p_holm"],
                    p_tost_adjusted=t["p_tost_holm"], alpha=alpha, family_size=len(tests))
            _problem_verdict(pr, res.claim)


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return "inconclusive"
    if "contradicted" in verdicts:
        return "contradicted"
    if all(v == "supported" for v in verdicts):
        return "supported"
    if "equivalent" in verdicts and all(v in ("supported", "equivalent") for v in verdicts):
        return "equivalent"
    return "underpowered" if "underpowered" in verdicts else "inconclusive"


def _problem_verdict(pr: ProblemResult, claim: Claim) -> None:
    pr.verdict = _combine([t["verdict"] for t in pr.tests])
    needs = [t["seeds_needed"] for t in pr.tests if t["seeds_needed"] is not None
             and t["verdict"] == "underpowered"]
    pr.seeds_needed = max(needs) if needs else None
    pr.evidence = [_evidence_line(t) for t in pr.tests] or pr.evidence
    if claim.kind == "best" and pr.verdict == "equivalent":
        tied = [t["label"].removeprefix("vs ") for t in pr.tests if t["verdict"] == "equivalent"]
        pr.evidence.append("no best: tied with " + ", ".join(tied))
    if pr.verdict == "underpowered" and pr.seeds_needed:
        pr.evidence.append(f"a decision needs about {pr.seeds_needed} seeds per configuration")
    if pr.chosen:
        pr.evidence.append("best configuration (by validation) used: " + "; ".join(
            f"{k} → {v}" for k, v in pr.chosen.items()))


_TEST_NAMES = {"paired_t": "paired t-test (by seed)", "welch": "Welch t-test",
               "paired_permutation": "exact sign-flip permutation test (by seed)",
               "permutation": "permutation test", "fisher": "Fisher exact test",
               "deterministic": "deterministic: compared, not tested", "none": "no test"}


def _evidence_line(t: dict) -> str:
    r = t["result"]
    parts = [t["evidence"], _TEST_NAMES.get(r.test, r.test)]
    if r.p is not None:
        parts.append(f"{_p(r.p)}, Holm {_p(t['p_holm'])}")
    if math.isfinite(r.margin):
        parts.append(f"margin ±{_number(r.margin, t['metric'])}")
    return "; ".join(parts) + f" → {t['verdict']}"


def _number(value: float, metric: str) -> str:
    from nnopt.config.metrics import metric_info

    info = metric_info(metric)
    return f"{value * info.scale:.{max(info.digits, 1)}g} {info.unit}".strip()


def _overall(res: ClaimResult) -> None:
    verdicts = [pr.verdict for pr in res.problems]
    res.verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    res.tests = [t for pr in res.problems for t in pr.tests]
    held = verdicts.count("supported")
    res.summary = f"holds on {held} of {len(verdicts)} problem{'s' if len(verdicts) > 1 else ''}"
    if len(res.problems) == 1:
        res.evidence, res.chosen = res.problems[0].evidence, res.problems[0].chosen
    else:
        res.evidence = [f"{pr.problem}: {pr.verdict}" for pr in res.problems]
        res.family = "Holm within each problem: " + "; ".join(
            dict.fromkeys(pr.family for pr in res.problems))


def _p(p: float | None) -> str:
    """'p = 0.012', 'p < 0.0001' or 'p n/a'."""
    if p is None or math.isnan(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"
