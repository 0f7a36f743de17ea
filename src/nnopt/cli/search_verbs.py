"""The verbs of a tuned study's search (a `tune:` block, docs/search.md): `search-round`
plans round R from the finished rounds before it, `search-summary` writes trials.parquet
and chosen.json. The round's runs are trained by `train-batch --runs`."""

from __future__ import annotations

import argparse

from nnopt.cli.support import add_plan_or_config
from nnopt.config.spec import SpecError

__all__ = ["args_search_common", "args_search_round", "run_search_round", "run_search_summary"]


def args_search_common(p: argparse.ArgumentParser) -> None:
    add_plan_or_config(p)  # the workflow passes --plan results/plan/{study}.json
    p.add_argument("--study", required=True, help="a study with a tune: block")
    p.add_argument("--search-dir", default="results/search", metavar="DIR",
                   help="round files, trials.parquet, Optuna journal (default: %(default)s)")
    p.add_argument("--runs-dir", default="results/runs", metavar="DIR",
                   help="folder of {study}/{run_id}/ run directories (default: %(default)s)")  # fmt: skip


def args_search_round(p: argparse.ArgumentParser) -> None:
    args_search_common(p)
    p.add_argument("--round", required=True, type=int, metavar="R",
                   help="round to plan from the finished rounds before it (0 = first)")  # fmt: skip


def _tuned_study(args: argparse.Namespace):
    from nnopt.analysis.aggregate import read_config

    config = read_config(args.plan or args.config)
    try:
        return config.study(args.study)
    except KeyError:
        names = ", ".join(s.name for s in config.studies if s.tune is not None) or "none"
        raise SpecError(f"--study: no study {args.study!r}; tuned studies: {names}") from None


def run_search_round(args: argparse.Namespace) -> int:
    from nnopt.search.rounds import read_round, write_round

    study = _tuned_study(args)
    path = write_round(study, args.round, args.search_dir, args.runs_dir)
    doc = read_round(args.search_dir, study.name, args.round)
    print(f"{study.name} round {args.round} ({doc['phase']}): {len(doc['runs'])} runs -> {path}")
    return 0


def run_search_summary(args: argparse.Namespace) -> int:
    from nnopt.search.summary import summarize_search

    out = summarize_search(_tuned_study(args), args.search_dir, args.runs_dir)
    print(f"trials: {out / 'trials.parquet'}\nchosen: {out / 'chosen.json'}")
    return 0
