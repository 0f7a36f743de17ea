"""Design check: what in a study's design keeps its verdicts from meaning what they say.

`design_flags(config, claims, runs, alpha)` returns `Flag`s of four kinds:

* `identical` (config time) — two configurations of a study that run the same computation
  under different labels: their run specs agree seed by seed once fields the optimizer does
  not read are dropped (`_OPTIMIZER_FIELDS`) and names that build the same update are merged
  (the engine applies weight decay decoupled for every optimizer, so AdamW is Adam; momentum
  or Nesterov with momentum 0 is SGD). Such a pair is one method, not two.
* `alpha` (config time, needs claims) — a claim whose test cannot reach α with the study's
  seeds: the smallest p its test can give (exact permutation tests: 2/2^n paired by seed;
  Fisher's exact test: the all-versus-none table), times the size of its Holm family (the tests
  of all claims about the study), exceeds α. t-tests have no such floor and are not flagged.
* `untuned` (config time, needs claims) — a `pool: best` claim (each side at its best, i.e.
  tuned) where a side's selector matches one configuration: nothing was chosen.
* `edge` (needs results) — the best value of a swept numeric factor (by the validation metric
  that `pool: best` uses) sits on the edge of the values its group swept, a group being one
  combination of the other factors: the range was wrong, not the method (a bottom edge at the
  factor's own bound, 0 for a rate or penalty and 1 for a count, is not flagged). In a zip study
  (each optimizer at its own rate) a group with one or two values has no inside, so it is
  never "on the edge"; it is flagged `untuned` only where a claim calls it tuned.

`nnopt check --config C --claims K` prints the config-time flags; the report shows all four.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import polars as pl
from scipy import stats as sps

from nnopt.analysis.aggregate import format_value, study_frame
from nnopt.analysis.claim_tests import SELECTION_METRICS, ClaimRuns, selector
from nnopt.analysis.inference import DETERMINISTIC
from nnopt.analysis.stats import min_p
from nnopt.config.metrics import metric_info
from nnopt.config.spec import RunSpec
from nnopt.config.studies import Config, Study

__all__ = ["Flag", "design_flags", "design_lines", "identical_configurations",
           "unreachable_alpha", "edge_optima", "untuned_selections", "normalized_spec"]

# Optimizer fields each optimizer reads (nnopt.train.optim builds it from these alone).
_OPTIMIZER_FIELDS = {
    "sgd": ("lr",), "momentum": ("lr", "momentum"), "nesterov": ("lr", "momentum"),
    "adam": ("lr", "beta1", "beta2", "eps"), "adamw": ("lr", "beta1", "beta2", "eps"),
    "nadam": ("lr", "beta1", "beta2", "eps"), "adagrad": ("lr", "eps"),
    "rmsprop": ("lr", "alpha", "eps"), "adadelta": ("lr", "rho", "eps"),
}
_SAME_UPDATE = {"adamw": "adam"}  # weight decay is decoupled and applied alike for all


@dataclass(frozen=True)
class Flag:
    study: str
    kind: str  # identical | alpha | untuned | edge
    message: str


def normalized_spec(spec: RunSpec) -> str:
    """The spec as canonical JSON with what cannot change the computation removed."""
    d = spec.to_dict()
    d.pop("checkpoint", None)
    opt = d["optimizer"]
    name = _SAME_UPDATE.get(opt["name"], opt["name"])
    if name in ("momentum", "nesterov") and opt["momentum"] == 0:
        name = "sgd"
    d["optimizer"] = {"name": name, **{k: opt[k] for k in _OPTIMIZER_FIELDS.get(name, opt)}}
    if d["model"]["kind"] == "mlp":
        d["model"].pop("kernel_size", None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def identical_configurations(study: Study) -> list[tuple[str, str]]:
    """Pairs of configuration labels (first seen, duplicate) that compute the same thing."""
    keys: dict[str, set] = {}
    for run in study.runs:
        keys.setdefault(run.config, set()).add(normalized_spec(run.spec))
    seen: dict[frozenset, str] = {}
    pairs = []
    for label, specs in keys.items():
        # a tuned study's configurations differ by the ranges they search too (AdamW with
        # its decay tuned is not Adam, though their untuned default runs agree)
        own = () if study.tune is None else (repr(sorted(study.tune.params_for(label).items())),)
        key = frozenset(specs) | frozenset(own)
        if key in seen:
            pairs.append((seen[key], label))
        else:
            seen[key] = label
    return pairs


def _n_tests(claim, study: Study) -> int:
    if claim.kind == "ordering":
        return len(claim.raw["configs"]) - 1
    if claim.kind == "best":
        among = claim.raw.get("among")
        return len(among) if among else max(1, len({r.config for r in study.runs}) - 1)
    return 1


def _floor(claim, n: int) -> tuple[str, float] | None:
    """(test, smallest p) for claims whose test has a floor; None for t-tests/deterministic."""
    if claim.kind == "diverges":
        return "Fisher exact test", float(sps.fisher_exact([[n, 0], [0, n]]).pvalue)
    if claim.metric in DETERMINISTIC or not metric_info(claim.metric).censored:
        return None
    return "sign-flip permutation test (paired by seed)", min_p(n, n, paired=True)


def _configured(config: Config) -> dict[str, Study]:
    """Configured study name (what a claim names) -> its study; a study replicated over
    problems (nnopt.config.problems: `{name}__{problem}`) -> its first copy: the copies share
    configurations and seeds, and each problem is its own Holm family of the same size."""
    out: dict[str, Study] = {}
    for study in config.studies:
        out.setdefault(study.family or study.name, study)
    return out


def unreachable_alpha(claims, config: Config, alpha: float = 0.05) -> list[Flag]:
    """Claims whose test cannot reach α after Holm over their study's family."""
    flags = []
    names = _configured(config)
    for study_name in dict.fromkeys(c.study for c in claims):
        study = names.get(study_name)
        if study is None:
            continue
        mine = [c for c in claims if c.study == study_name]
        # a tuned study's claims use its confirmation runs (nnopt.search), on confirm_seeds
        seeds = study.seeds if study.tune is None else study.tune.confirm_seeds
        m, n = sum(_n_tests(c, study) for c in mine), len(seeds)
        for claim in mine:
            floor = _floor(claim, n)
            if floor and floor[1] * m > alpha:
                test, p = floor
                need = next((k for k in range(n, 65) if (_floor(claim, k) or (0, 0))[1] * m
                             <= alpha), None)
                more = f"; {need} seeds would" if need else ""
                flags.append(Flag(study_name, "alpha", (
                    f"{claim.id}: a {test} over {n} seed{'s' if n > 1 else ''} cannot go "
                    f"below p = {p:.3g}; after "
                    f"Holm over the {m} test{'s' if m > 1 else ''} about study {study_name} "
                    f"the smallest is "
                    f"{min(1.0, p * m):.3g} > α = {alpha:g}{more}")))
    return flags


def _selection(runs: pl.DataFrame) -> tuple[str, bool] | None:
    for metric, higher in SELECTION_METRICS:
        if metric in runs.columns and runs[metric].drop_nulls().len():
            return metric, higher
    return None


def _numeric(values) -> list:
    return sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))


def edge_optima(study: Study, runs: pl.DataFrame) -> list[Flag]:
    """Numeric factors whose best value by validation sits on an edge of the values its group
    swept. A group is one combination of the other factors (and problem): in a zip study each
    optimizer has its own rates, so the edge is judged on that optimizer's rates, never on the
    study's whole range; a group that swept fewer than 3 values has no inside to be on, so it
    is not flagged here (`untuned_selections` says where a claim would call it tuned)."""
    part = study_frame(runs, study)
    chosen = _selection(part) if part.height else None
    if chosen is None:
        return []
    metric, higher = chosen
    scored = ClaimRuns.counted(part, metric)
    flags = []
    for key in study.factor_keys:
        if part.schema[key] not in (pl.Int64, pl.Float64):
            continue
        others = [k for k in study.factor_keys if k != key]
        others += ["problem"] if "problem" in part.columns else []
        group = others or [pl.lit(0).alias("_all")]
        means = scored.group_by([*group, key]).agg(pl.col("value").mean().alias("score"))
        swept = part.group_by(group).agg(pl.col(key).unique().alias("_swept"))
        best = means.sort("score", descending=higher, nulls_last=True).group_by(
            group, maintain_order=True).first()
        best = best.join(swept, on=[g if isinstance(g, str) else "_all" for g in group],
                         nulls_equal=True)  # a study without problems has problem null
        for row in best.iter_rows(named=True):
            values = _numeric(row["_swept"])
            if len(values) < 3 or math.isnan(row["score"] or math.nan):
                continue
            if row[key] in (values[0], values[-1]):
                edge = "top" if row[key] == values[-1] else "bottom"
                if edge == "bottom" and _at_domain_bound(row[key], part.schema[key]):
                    continue  # nothing lies below 0 (a rate, a penalty) or 1 (a count)
                where = ", ".join(f"{k}={row[k]}" for k in others if row[k] is not None)
                flags.append(Flag(study.name, "edge", (
                    f"the best {key} by {metric} ({row[key]:g}) is on the {edge} edge of its "
                    f"sweep {values[0]:g}–{values[-1]:g}" + (f" (at {where})" if where else ""))))
    return flags


def _at_domain_bound(value: float, dtype: pl.DataType) -> bool:
    """The smallest value a factor can take: 0 for a float (dropout rate, penalty, momentum),
    1 for an integer (world size, depth). An optimum there is the bound itself, not a sweep
    that stopped too soon."""
    return value <= (1 if dtype == pl.Int64 else 0)


def _sides(claim) -> list:
    """The selectors a claim compares (not its article rows)."""
    r = claim.raw
    return ([r[k] for k in ("left", "right", "config") if r.get(k) is not None]
            + list(r.get("configs") or []) + list(r.get("among") or []))


def untuned_selections(claims, config: Config) -> list[Flag]:
    """`pool: best` claims (each side "at its best", i.e. tuned) with a side whose selector
    matches a single configuration: there was nothing to choose from, so it is not tuned."""
    studies, flags = _configured(config), []
    for claim in claims:
        study = studies.get(claim.study)
        if claim.raw.get("pool") != "best" or study is None:
            continue
        configs = [{k: format_value(v) for k, v in r.factors} for r in study.runs]
        seen: list[dict] = []
        for want in (selector(study, sel) for sel in _sides(claim)):
            matches = {str(c) for c in configs if all(c.get(k) == v for k, v in want.items())}
            if want not in seen and len(matches) == 1:
                flags.append(Flag(study.family or study.name, "untuned", (
                    f"{claim.id}: pool: best has one configuration to choose from for "
                    f"{', '.join(f'{k}={v}' for k, v in want.items())}, so it is not tuned")))
            seen.append(want)
    return flags


def design_flags(config: Config, claims=(), runs: pl.DataFrame | None = None,
                 alpha: float = 0.05) -> list[Flag]:
    """All flags: identical configurations and unreachable α at config time; sweep-edge
    optima too when `runs` (results/runs.parquet) is given."""
    flags = []
    for study in config.studies:
        flags += [Flag(study.name, "identical",
                       f"{a} and {b} run the same computation (the same method under two labels)")
                  for a, b in identical_configurations(study)]
    flags += unreachable_alpha(list(claims), config, alpha)
    flags += untuned_selections(list(claims), config)
    if runs is not None:
        for study in config.studies:
            flags += edge_optima(study, runs)
    return flags


def design_lines(config: Config, claims_path=None) -> list[str]:
    """The config-time check as printable lines ('design: study: message'), for `nnopt check`
    and `snakemake -n`; a claims file that cannot be read gives one line saying so."""
    from nnopt.analysis.claims import load_claims
    from nnopt.config.spec import SpecError

    try:
        alpha, claims = load_claims(claims_path) if claims_path else (0.05, [])
    except SpecError as err:
        return [f"design: claims not checked: {err}"]
    from nnopt.analysis.claims import check_claims

    lines = [f"design: {f.study}: {f.message}" for f in design_flags(config, claims, alpha=alpha)]
    # A selector that matches no configuration (a typo, a value the study does not run): the
    # claim would be inconclusive. A study not in the config is "not run" by design: no line.
    return lines + [f"design: claims: {p}" for p in check_claims(claims, config)
                    if not p.endswith("(not run)")]  # fmt: skip
