"""A finished search as tables: results/search/{study}/trials.parquet and chosen.json.

trials.parquet has one row per run: phase `trial` (status `pruned` when successive halving
stopped it), `confirm` (the chosen values on fresh seeds: what comparisons and claims use)
and `default` (the study's own runs with the untuned values, for "tuned vs default"), with
the tuned values as `tune.<key>` columns. chosen.json says, per configuration, the values
picked, the trial budget, and which values lie at the edge of their range.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.spec import SpecError
from nnopt.config.studies import Study
from nnopt.config.tune import Distribution, TuneSpec
from nnopt.store.atomic import write_json_atomic
from nnopt.search.rounds import (
    best_trials,
    read_round,
    round_count,
    targets,
    trial_round_count,
)
from nnopt.store.runs import read_run

__all__ = ["EDGE_FRACTION", "at_edge", "trial_rows", "summarize_search"]

# A chosen value in the outermost of k equal cells of its range, and at least in its outer
# 5 % (log scale for log ranges): with k trials spread evenly (grid, lhs, sobol), the best
# one in an outer cell says the optimum may lie beyond the range.
EDGE_FRACTION = 0.05
_METRICS = ("best_val_accuracy", "final_val_loss", "final_val_accuracy", "test_accuracy",
            "test_loss", "train_time_s", "epochs")  # fmt: skip


def at_edge(dist: Distribution, value: Any, trials: int = 1) -> str | None:
    """'low' / 'high' when `value` lies in the outer max(EDGE_FRACTION, 1 / trials) of the
    range (the outermost cell of `trials` equal ones), else None."""
    if dist.kind == "choice":
        if len(dist.args) < 3 or value not in dist.args:
            return None
        i = dist.args.index(value)
        return "low" if i == 0 else "high" if i == len(dist.args) - 1 else None
    lo, hi = dist.args
    scale = math.log if dist.log else float
    u = (scale(value) - scale(lo)) / (scale(hi) - scale(lo))
    edge = max(EDGE_FRACTION, 1 / max(trials, 1))
    return "low" if u <= edge else "high" if u >= 1 - edge else None


def _row(item: Mapping[str, Any], tune: TuneSpec) -> dict[str, Any]:
    s = item["search"]
    try:
        record = read_run(item["out"])
    except (OSError, ValueError):
        record = {"status": "missing", "metrics": {}}
    metrics = record.get("metrics") or {}
    row = {
        "study": item["study"], "run_id": item["run_id"], "config": s["config"],
        "config_index": s["config_index"], "phase": s["phase"], "trial": s.get("trial"),
        "rung": s.get("rung"), "round": s.get("round"), "budget_epochs": s.get("budget_epochs"),
        "seed": s["seed"], "status": record.get("status"), "select": metrics.get(tune.select),
        **{m: metrics.get(m) for m in _METRICS},
        **{f"tune.{k}": s["values"].get(k) for k in tune.all_params},
    }  # fmt: skip
    return row


def _default_items(study: Study, runs_dir: Path) -> list[dict[str, Any]]:
    """The study's own runs (untuned values) in the same item form, phase `default`."""
    index = {t.label: t.index for t in targets(study)}
    return [
        {"study": study.name, "run_id": run.run_id, "out": str(runs_dir / study.name / run.run_id),
         "search": {"config": run.config, "config_index": index[run.config], "phase": "default",
                    "seed": run.seed, "budget_epochs": run.spec.budget.epochs,
                    "values": {k: _get(run.spec.to_dict(), k)
                               for k in study.tune.params_for(run.config)}}}
        for run in study.runs
    ]  # fmt: skip


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, Mapping) else None
    return tree


def trial_rows(study: Study, search_dir: str | Path, runs_dir: str | Path) -> list[dict]:
    tune = study.tune
    rows = []
    for r in range(round_count(study)):
        rows += [_row(item, tune) for item in read_round(search_dir, study.name, r)["runs"]]
    return rows + [_row(item, tune) for item in _default_items(study, Path(runs_dir))]


def _chosen(study: Study, search_dir: Path) -> dict[str, Any]:
    tune = study.tune
    trial_rounds = [read_round(search_dir, study.name, r) for r in range(trial_round_count(study))]
    best = best_trials(study, trial_rounds)
    configs = []
    for t in targets(study):
        if t.index not in best:
            continue
        trial, values, metric = best[t.index]
        own = tune.params_for(t.label)
        k = tune.trials_for(t.label)
        edges = {key: e for key, v in values.items() if (e := at_edge(own[key], v, k))}
        configs.append({"config": t.label, "config_index": t.index, "trial": trial,
                        "values": values, "select": metric, "trials": tune.trials_for(t.label),
                        "params": _ranges(own), "at_edge": edges})  # fmt: skip
    ranges = _ranges(tune.all_params)
    return {"study": study.name, "sampler": tune.sampler, "seed": tune.seed,
            "select": tune.select, "higher_is_better": tune.higher_is_better,
            "trials": tune.trials, "tuning_seeds": list(tune.seeds),
            "confirm_seeds": list(tune.confirm_seeds), "params": ranges,
            "asha": None if tune.asha is None else list(tune.asha.budgets),
            "configs": configs}  # fmt: skip


def _ranges(params: Mapping[str, Distribution]) -> dict[str, dict[str, Any]]:
    return {k: {"kind": d.kind, "args": list(d.args)} for k, d in params.items()}


def summarize_search(study: Study, search_dir: str | Path, runs_dir: str | Path) -> Path:
    """Write trials.parquet and chosen.json of a finished search; return the folder."""
    import polars as pl

    if study.tune is None:
        raise SpecError(f"studies.{study.name}: has no tune block")
    out = Path(search_dir, study.name)
    rows = trial_rows(study, search_dir, runs_dir)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    tmp = out / ".trials.parquet.tmp"
    frame.write_parquet(tmp)
    tmp.replace(out / "trials.parquet")
    write_json_atomic(out / "chosen.json", _chosen(study, Path(search_dir)))
    return out
