"""Design check: what in a study's design keeps its verdicts from meaning what they say.

`design_flags(config, claims, runs, alpha)` returns `Flag`s of three kinds:

* `identical` (config time) — two configurations of a study that run the same computation
  under different labels: their run specs agree seed by seed once fields the optimizer does
  not read are dropped (`_OPTIMIZER_FIELDS`) and names that build the same update are merged
  (the engine applies weight decay decoupled for every optimizer, so AdamW is Adam; momentum
  or Nesterov with momentum 0 is SGD). Such a pair is one method, not two.
* `alpha` (config time, needs claims) — a claim whose test cannot reach α with the study's
  seeds: the smallest p its test can give (exact permutation tests: 2/2^n paired by seed;
  Fisher's exact test: the all-versus-none table), times the size of its Holm family (the tests
  of all claims about the study), exceeds α. t-tests have no such floor and are not flagged.
* `edge` (needs results) — the best value of a swept numeric factor (by the validation metric
  that `pool: best` uses, for each combination of the other factors) sits on the edge of its
  range: the range was wrong, not the method.

`nnopt check --config C --claims K` prints the config-time flags; the report shows all three.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import polars as pl
from scipy import stats as sps

from nnopt.analysis.aggregate import study_frame
from nnopt.analysis.claim_tests import SELECTION_METRICS, ClaimRuns
from nnopt.analysis.inference import DETERMINISTIC
from nnopt.analysis.stats import min_p
from nnopt.config.metrics import metric_info
from nnopt.config.spec import RunSpec
from nnopt.config.studies import Config, Study

__all__ = ["Flag", "design_flags", "design_lines", "identical_configurations",
           "unreachable_alpha", "edge_optima", "normalized_spec"]

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
    kind: str  # identical | alpha | edge
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


def unreachable_alpha(claims, config: Config, alpha: float = 0.05) -> list[Flag]:
    """Claims whose test cannot reach α after Holm over their study's family."""
    flags = []
    names = {s.name: s for s in config.studies}
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


def edge_optima(study: Study, runs: pl.DataFrame) -> list[Flag]:
    """Numeric factors (3+ values) whose best value by validation sits on a sweep edge."""
    part = study_frame(runs, study)
    chosen = _selection(part) if part.height else None
    if chosen is None:
        return []
    metric, higher = chosen
    scored = ClaimRuns.counted(part, metric)
    flags = []
    for key in study.factor_keys:
        values = sorted(v for v in part[key].drop_nulls().unique().to_list()
                        if isinstance(v, (int, float)) and not isinstance(v, bool))
        if len(values) < 3 or part.schema[key] not in (pl.Int64, pl.Float64):
            continue
        others = [k for k in study.factor_keys if k != key]
        others += ["problem"] if "problem" in part.columns else []
        means = scored.group_by([*others, key]).agg(pl.col("value").mean().alias("score"))
        best = means.sort("score", descending=higher, nulls_last=True).group_by(
            others or pl.lit(0).alias("_all"), maintain_order=True).first()
        for row in best.iter_rows(named=True):
            if row[key] in (values[0], values[-1]) and not math.isnan(row["score"] or math.nan):
                edge = "top" if row[key] == values[-1] else "bottom"
                where = ", ".join(f"{k}={row[k]}" for k in others)
                flags.append(Flag(study.name, "edge", (
                    f"the best {key} by {metric} ({row[key]:g}) is on the {edge} edge of its "
                    f"sweep {values[0]:g}–{values[-1]:g}" + (f" (at {where})" if where else ""))))
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
    return [f"design: {f.study}: {f.message}" for f in design_flags(config, claims, alpha=alpha)]
