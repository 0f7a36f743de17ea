"""A tuned study's search as a few rounds of run files (no torch; the engine trains them).

Round r reads the finished runs of rounds < r and writes `round-RR.json` (all its runs) and
`round-RR.shard-S.json` (the same runs split for `nnopt train-batch` jobs) under
results/search/{study}/. The rounds of a study are

* trial rounds: one (grid/random/sobol/halton), ceil(k / batch) (tpe: ask, train, tell), or
  one per successive-halving rung (`asha`: rung i retrains the survivors from scratch for
  budgets[i] epochs, so budget-dependent schedules such as cosine stay correct);
* the confirmation round: each configuration's best trial (by the validation metric `select`,
  averaged over tuning seeds) rerun on the fresh confirmation seeds at the full budget.

A round file, once written, is never rewritten: rerunning a round is a no-op, so a second
`snakemake` (or a resumed driver) continues the search, and run directories are cached by
run id (a finished trial is never trained twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.spec import SpecError, parse_spec
from nnopt.config.studies import Study, _set_path
from nnopt.config.tune import TuneSpec
from nnopt.store.atomic import write_json_atomic
from nnopt.search.halving import promote, rank_key
from nnopt.search.samplers import fixed_trials, tpe_ask
from nnopt.store.runs import mark_pruned, read_run

__all__ = [
    "Target", "targets", "trial_round_count", "round_count", "round_path", "shard_path",
    "read_round", "write_round", "round_results", "best_trials", "search_key", "check_key",
    "confirmed_runs",
]  # fmt: skip


@dataclass(frozen=True)
class Target:
    """One compared configuration of a tuned study: the searches are per target."""

    index: int
    label: str
    factors: Mapping[str, Any]
    template: Mapping[str, Any]  # the run spec of its first static run (seed replaced)


def targets(study: Study) -> list[Target]:
    seen: dict[str, Target] = {}
    for run in study.runs:
        if run.config not in seen:
            seen[run.config] = Target(len(seen), run.config, dict(run.factors), run.spec.to_dict())
    return list(seen.values())


def search_key(study: Study) -> str:
    """A hash of what a search depends on (tune block, configurations' specs): a changed
    study is a new search, never silently continued from another one's rounds."""
    what = {"tune": dataclasses.asdict(_tune(study)), "targets": [t.template for t in targets(study)]}
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_key(study: Study, path: Path) -> None:
    planned = json.loads(path.read_text()).get("key")
    if planned != search_key(study):
        raise SpecError(
            f"{path}: planned for a different tune block or study {study.name}; delete "
            f"{path.parent} to start a new search"
        )


def _tune(study: Study) -> TuneSpec:
    if study.tune is None:
        raise SpecError(f"studies.{study.name}: has no tune block; nothing to search")
    return study.tune


def trial_round_count(study: Study) -> int:
    tune = _tune(study)
    if tune.asha is not None:
        return len(tune.asha.budgets)
    if tune.sampler == "tpe":
        most = max(tune.trials_for(t.label) for t in targets(study))
        return math.ceil(most / tune.batch)
    return 1


def round_count(study: Study) -> int:
    """Trial rounds plus the confirmation round."""
    return trial_round_count(study) + 1


def round_path(search_dir: str | Path, study: str, r: int) -> Path:
    return Path(search_dir, study, f"round-{r:02d}.json")


def shard_path(search_dir: str | Path, study: str, r: int, shard: int) -> Path:
    return Path(search_dir, study, f"round-{r:02d}.shard-{shard}.json")


def read_round(search_dir: str | Path, study: str, r: int) -> dict[str, Any]:
    path = round_path(search_dir, study, r)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: round {r} of study {study} is not planned yet") from None


def _item(study: Study, target: Target, values: Mapping, seed: int, epochs: int | None,
          runs_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    tree: Mapping[str, Any] = dict(target.template)
    for key, value in values.items():
        tree = _set_path(tree, key, value)
    tree = _set_path(tree, "seed", seed)
    if epochs is not None:  # ASHA rungs: a complete run of this budget, trained from scratch
        tree = _set_path(_set_path(tree, "budget.epochs", epochs), "budget.steps", None)
    try:
        spec = parse_spec(tree)
    except SpecError as err:
        raise SpecError(f"studies.{study.name}.tune: {err}") from None
    search = {"config": target.label, "config_index": target.index, "seed": seed,
              "values": dict(values), "budget_epochs": spec.budget.epochs, **meta}  # fmt: skip
    factors = {**target.factors, **{f"tune.{k}": v for k, v in values.items()}}
    factors.update({"search.phase": meta["phase"], "search.trial": meta.get("trial")})
    out = runs_dir / study.name / spec.run_id
    return {"study": study.name, "factors": factors, "spec": spec.to_dict(), "out": str(out),
            "run_id": spec.run_id, "search": search}  # fmt: skip


def _trial_items(study, target, trials, epochs, runs_dir, rung, r) -> list[dict]:
    tune = _tune(study)
    return [
        _item(study, target, values, seed, epochs, runs_dir,
              {"phase": "trial", "trial": t, "rung": rung, "round": r})
        for t, values in trials for seed in tune.seeds
    ]  # fmt: skip


def _fixed(tune: TuneSpec, target: Target) -> list[dict[str, Any]]:
    """The fixed sampler's trials of one configuration, over its own ranges."""
    return fixed_trials(tune, tune.trials_for(target.label), tune.params_for(target.label))


def _metric(item: Mapping[str, Any], select: str) -> tuple[str, float | None]:
    """(status, selection metric) of a trained item; a missing run is an error."""
    try:
        record = read_run(item["out"])
    except (OSError, ValueError):
        raise SpecError(
            f"{item['out']}: run {item['run_id']} of the previous round is not trained yet; "
            "train that round first"
        ) from None
    value = (record.get("metrics") or {}).get(select)
    return record.get("status", "failed"), value if isinstance(value, (int, float)) else None


def round_results(round_doc: Mapping, select: str) -> dict[tuple[int, int], float | None]:
    """(config index, trial) -> mean selection metric over tuning seeds (None: a seed failed)."""
    values: dict[tuple[int, int], list[float | None]] = {}
    for item in round_doc["runs"]:
        s = item["search"]
        values.setdefault((s["config_index"], s["trial"]), []).append(_metric(item, select)[1])
    return {
        key: None if any(v is None for v in vs) else sum(vs) / len(vs)  # type: ignore[misc]
        for key, vs in values.items()
    }


def _rounds_before(search_dir: Path, study: Study, r: int) -> list[dict]:
    return [read_round(search_dir, study.name, i) for i in range(r)]


def _asha_round(study, r, previous, runs_dir) -> list[dict]:
    tune = _tune(study)
    budgets = tune.asha.budgets
    items = []
    for target in targets(study):
        if r == 0:
            trials = list(enumerate(_fixed(tune, target)))
        else:
            done = previous[-1]
            scores = [(t, v) for (c, t), v in round_results(done, tune.select).items()
                      if c == target.index]  # fmt: skip
            keep, pruned = promote(scores, tune.asha.eta, tune.higher_is_better)
            for item in done["runs"]:
                s = item["search"]
                if s["config_index"] == target.index and s["trial"] in pruned:
                    mark_pruned(item["out"])
            values = {i["search"]["trial"]: i["search"]["values"] for i in done["runs"]
                      if i["search"]["config_index"] == target.index}  # fmt: skip
            trials = [(t, values[t]) for t in keep]
        items += _trial_items(study, target, trials, budgets[r], runs_dir, r, r)
    return items


def _tpe_round(study, r, previous, search_dir, runs_dir) -> list[dict]:
    tune = _tune(study)
    items = []
    for target in targets(study):
        results = {t: v for prev in previous for (c, t), v in
                   round_results(prev, tune.select).items() if c == target.index}  # fmt: skip
        asked = sum(1 for prev in previous for i in prev["runs"]
                    if i["search"]["config_index"] == target.index) // len(tune.seeds)  # fmt: skip
        n_new = min(tune.batch, tune.trials_for(target.label) - asked)
        if n_new <= 0:
            continue
        journal = Path(search_dir, study.name, f"optuna-{search_key(study)}.journal")
        trials = tpe_ask(journal, f"{study.name}/{target.index}", tune, results, n_new,
                         recorded=range(asked), params=tune.params_for(target.label))  # fmt: skip
        items += _trial_items(study, target, trials, None, runs_dir, None, r)
    return items


def best_trials(study: Study, trial_rounds: list[dict]) -> dict[int, tuple[int, dict, float | None]]:
    """config index -> (trial, values, metric) of its best trial.

    With successive halving only the last rung (the full budget) competes.
    """
    tune = _tune(study)
    rounds = trial_rounds[-1:] if tune.asha is not None else trial_rounds
    values = {(i["search"]["config_index"], i["search"]["trial"]): i["search"]["values"]
              for doc in rounds for i in doc["runs"]}  # fmt: skip
    scores = {k: v for doc in rounds for k, v in round_results(doc, tune.select).items()}
    best: dict[int, tuple[int, dict, float | None]] = {}
    for (c, t), v in sorted(scores.items()):
        old = best.get(c)
        if old is None or rank_key(v, tune.higher_is_better) < rank_key(old[2], tune.higher_is_better):
            best[c] = (t, values[(c, t)], v)
    return best


def _confirm_round(study, previous, runs_dir, r) -> list[dict]:
    tune = _tune(study)
    full = tune.asha.max_epochs if tune.asha is not None else None
    items = []
    chosen = best_trials(study, previous)
    for target in targets(study):
        if target.index not in chosen:
            continue  # every trial of this configuration is missing: nothing to confirm
        trial, values, _ = chosen[target.index]
        items += [_item(study, target, values, seed, full, runs_dir,
                        {"phase": "confirm", "trial": trial, "rung": None, "round": r})
                  for seed in tune.confirm_seeds]  # fmt: skip
    return items


def _with_cohorts(study: Study, items: list[dict], prefix: str) -> list[dict]:
    """The shard's items, each labelled with its stacked cohort (`{prefix}-c{i}`) where one
    pays, as the plan's batches are (nnopt.plan.cohorts): a round's trials differ only in
    their tuned values, so they stack like a study's configurations."""
    from nnopt.config.studies import Run
    from nnopt.plan.cohorts import is_timing_study, plan_units

    if not study.cohorts or is_timing_study(study.metrics):
        return items
    ids = [i["run_id"] for i in items]  # a run listed twice (a shared spec) trains alone
    runs = [Run(study.name, parse_spec(i["spec"]), ()) for i in items if ids.count(i["run_id"]) == 1]
    label = {r.run_id: f"{prefix}-c{n}" for n, unit in enumerate(
        u for u in plan_units(runs) if len(u) > 1) for r in unit}  # fmt: skip
    return [{**i, "cohort": label[i["run_id"]]} if i["run_id"] in label else i for i in items]


def write_round(study: Study, r: int, search_dir: str | Path, runs_dir: str | Path) -> Path:
    """Plan round r from the finished rounds before it; a planned round is kept as it is."""
    search_dir, runs_dir = Path(search_dir), Path(runs_dir)
    path = round_path(search_dir, study.name, r)
    if path.exists():
        check_key(study, path)
        return path
    n_trial = trial_round_count(study)
    if not 0 <= r <= n_trial:
        raise SpecError(f"--round: study {study.name} has rounds 0..{n_trial}, got {r}")
    previous = _rounds_before(search_dir, study, r)
    tune = _tune(study)
    if r == n_trial:
        phase, items = "confirm", _confirm_round(study, previous, runs_dir, r)
    elif tune.asha is not None:
        phase, items = "trial", _asha_round(study, r, previous, runs_dir)
    elif tune.sampler == "tpe":
        phase, items = "trial", _tpe_round(study, r, previous, search_dir, runs_dir)
    else:
        phase = "trial"
        items = [i for t in targets(study) for i in _trial_items(
            study, t, list(enumerate(_fixed(tune, t))), None,
            runs_dir, None, r)]  # fmt: skip
    for s in range(tune.shards):  # shards first: the round file marks a complete round
        shard = _with_cohorts(study, items[s :: tune.shards], f"{study.name}-r{r:02d}-s{s}")
        write_json_atomic(shard_path(search_dir, study.name, r, s), shard)
    doc = {"study": study.name, "key": search_key(study), "round": r, "phase": phase, "runs": items}
    write_json_atomic(path, doc)
    return path


def confirmed_runs(study: Study, search_dir: str | Path) -> tuple[Any, ...]:
    """The confirmation runs as the study's `Run`s (the compared configuration's factors, so
    they group as the study's configurations do); () until the confirmation round is planned."""
    from nnopt.config.studies import Run

    path = round_path(search_dir, study.name, trial_round_count(study))
    if study.tune is None or not path.exists():
        return ()
    check_key(study, path)
    by_label = {t.label: t for t in targets(study)}
    return tuple(
        Run(study.name, parse_spec(item["spec"]), tuple(by_label[item["search"]["config"]].factors.items()))
        for item in json.loads(path.read_text())["runs"]
    )
