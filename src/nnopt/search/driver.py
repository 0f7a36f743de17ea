"""Driving a search in one process, and the plan table `snakemake -n` prints.

`run_search` is what the Snakemake rules do, in order, without Snakemake: plan a round,
train it, plan the next. `train` is any function that makes the round's run directories
(the engine's `run_batch`, or a fake objective in tests); finished runs are skipped by run
id, so a driver killed at any point and started again ends with the same trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from nnopt.config.studies import Config, Study
from nnopt.config.spec import SpecError
from nnopt.config.studies import Run
from nnopt.search.rounds import (
    check_key,
    confirmed_runs,
    read_round,
    round_count,
    round_path,
    targets,
    write_round,
)
from nnopt.search.summary import summarize_search
from nnopt.store.runs import is_finished

__all__ = [
    "run_search", "rounds_done", "plan_lines", "check_searches", "with_confirmed_runs",
    "search_runs",
]  # fmt: skip

TrainFn = Callable[[list[dict[str, Any]]], Any]


def _unfinished(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for item in items:  # runs shared by two trials (same spec) are trained once
        if item["run_id"] not in seen and not is_finished(item["out"], item["run_id"]):
            seen.add(item["run_id"])
            out.append(item)
    return out


def run_search(
    study: Study,
    search_dir: str | Path,
    runs_dir: str | Path,
    train: TrainFn,
    *,
    stop_after_round: int | None = None,
) -> Path | None:
    """Plan and train every round (or up to `stop_after_round`), then summarize."""
    for r in range(round_count(study)):
        write_round(study, r, search_dir, runs_dir)
        todo = _unfinished(read_round(search_dir, study.name, r)["runs"])
        if todo:
            train(todo)
        if stop_after_round is not None and r >= stop_after_round:
            return None
    return summarize_search(study, search_dir, runs_dir)


def rounds_done(study: Study, search_dir: str | Path) -> int:
    """How many rounds are planned and fully trained."""
    done = 0
    for r in range(round_count(study)):
        if not round_path(search_dir, study.name, r).exists():
            break
        if _unfinished(read_round(search_dir, study.name, r)["runs"]):
            break
        done += 1
    return done


def plan_lines(config: Config, search_dir: str | Path) -> list[str]:
    """One line per tuned study: sampler, budget, trials planned so far, rounds left."""
    lines = []
    for study in config.studies:
        tune = study.tune
        if tune is None:
            continue
        n = round_count(study)
        planned = [r for r in range(n) if round_path(search_dir, study.name, r).exists()]
        trials = sum(
            1 for r in planned for i in read_round(search_dir, study.name, r)["runs"]
            if i["search"]["phase"] == "trial"
        )  # fmt: skip
        done = rounds_done(study, search_dir)
        ks = sorted({tune.trials_for(t.label) for t in targets(study)})
        budget = "k=" + "/".join(map(str, ks))
        halving = f", halving rungs {list(tune.asha.budgets)} epochs" if tune.asha else ""
        lines.append(
            f"search {study.name}: {tune.sampler} {budget} per configuration × "
            f"{len(targets(study))} configurations{halving}; trial runs planned {trials}; "
            f"rounds done {done}/{n}, left {n - done}"
        )
    return lines


def with_confirmed_runs(config: Config, search_dir: str | Path) -> Config:
    """`config` with each searched study's runs replaced by its confirmation runs (fresh
    seeds, chosen values), so aggregation, comparisons and claims use those; studies whose
    search has not reached its confirmation round keep their own runs."""
    from dataclasses import replace

    studies = []
    for study in config.studies:
        confirmed = confirmed_runs(study, search_dir) if study.tune is not None else ()
        studies.append(replace(study, runs=confirmed) if confirmed else study)
    return replace(config, studies=tuple(studies))


def check_searches(config: Config, search_dir: str | Path) -> None:
    """SpecError naming the folder when a tuned study's planned rounds belong to another
    tune block (a changed study is a new search: never continued from old rounds)."""
    for study in config.studies:
        if study.tune is not None:
            for r in range(round_count(study)):
                path = round_path(search_dir, study.name, r)
                if path.exists():
                    check_key(study, path)


def search_runs(study: Study, search_dir: str | Path) -> list[tuple[str, Run]]:
    """(phase, run) of every run the planned rounds of a tuned study list: `trial` (every
    rung of successive halving) and `confirm`; grouped under their compared configuration
    (its factors), each run once per phase. [] for a study without a tune block."""
    if study.tune is None:
        return []
    by_label = {t.label: t for t in targets(study)}
    out, seen = [], set()
    for r in range(round_count(study)):
        if not round_path(search_dir, study.name, r).exists():
            break
        for item in read_round(search_dir, study.name, r)["runs"]:
            phase = item["search"]["phase"]
            if (phase, item["run_id"]) in seen:
                continue
            seen.add((phase, item["run_id"]))
            factors = tuple(by_label[item["search"]["config"]].factors.items())
            out.append((phase, Run(study.name, _spec(item), factors)))
    return out


def _spec(item):
    from nnopt.store.plan_file import spec_from_canonical

    spec = spec_from_canonical(item["spec"])  # no data file opened: checked when planned
    if spec.run_id != item["run_id"]:
        raise SpecError(f"{item['out']}: its spec now hashes to {spec.run_id}, not "
                        f"{item['run_id']}; delete the study's search folder to search again")
    return spec
