"""The `nnopt landscape` verb: settings from the config's `landscape:` mapping and `--set`,
then one study (`--study`, as the workflow's landscape rule calls it) or one run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnopt.config.spec import SpecError

if TYPE_CHECKING:  # tables imports polars: `nnopt VERB --help` builds this verb's options too
    from nnopt.landscape.tables import LandscapeSettings

__all__ = ["add_arguments", "run"]


def add_arguments(p: Any) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--study", help="study name: the best seed of each configuration")
    what.add_argument("--run-dir", metavar="DIR", help="one finished run directory")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (results/landscape/STUDY)"
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config (YAML/JSON) whose `landscape:` mapping gives the settings",
    )
    p.add_argument(
        "--plan",
        dest="config",
        metavar="PLAN.json",
        help="the workflow's plan file (its config's `landscape:` mapping gives the settings)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting"
    )
    p.add_argument(
        "--runs-table",
        metavar="FILE",
        help="runs.parquet (--study); default: the study's runs read from --runs-dir, as the "
        "--plan/--config expands them (the workflow: the study's own plan, so a landscape "
        "starts when its study's training is done, not after the whole aggregate)",
    )
    p.add_argument(
        "--runs-dir", default="results/runs", metavar="DIR", help="run directories root (--study)"
    )
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")
    p.add_argument(
        "--max-batches",
        type=int,
        metavar="N",
        help="stop after N new batches per run (resume later)",
    )
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default 1)")


def _settings(config: str | None, overrides: list[str]) -> LandscapeSettings:
    import yaml

    from nnopt.landscape.tables import parse_settings

    raw: dict[str, Any] = {}
    if config is not None:
        from nnopt.config.check import read_yaml

        from nnopt.store.plan_file import Plan

        try:  # results/plan.json: the config as the workflow ran it (JSON, read fast)
            doc = {"landscape": Plan.load(config).landscape_settings()}
        except SpecError:
            doc = read_yaml(Path(config))  # YAML is a superset of JSON; errors name the file
        raw = dict((doc or {}).get("landscape") or {}) if isinstance(doc, dict) else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value)
    return parse_settings(raw)


def _study_runs(args: Any) -> Any:
    """The runs to choose from: --runs-table, else the study's run folders (--runs-dir) as
    the config expands them (the aggregate's own reader, so the same rows and statuses)."""
    import dataclasses

    import polars as pl

    if args.runs_table is None and args.config is None:
        args.runs_table = "results/runs.parquet"
    if args.runs_table is not None:
        if not Path(args.runs_table).exists():
            raise SpecError(
                f"--runs-table {args.runs_table}: not found (run the aggregate step first)"
            )
        return pl.read_parquet(args.runs_table)
    from nnopt.analysis.aggregate import read_config
    from nnopt.analysis.run_table import load_runs

    config = read_config(args.config)
    try:
        study = config.study(args.study)
    except KeyError:
        names = ", ".join(s.name for s in config.studies)
        raise SpecError(f"--study {args.study}: not a study of {args.config} ({names})") from None
    return load_runs(dataclasses.replace(config, studies=(study,)), args.runs_dir)


def run(args: Any) -> int:
    """The `landscape` verb: one study (for the workflow) or one run directory."""
    import torch

    from nnopt.landscape.job import landscape_run, landscape_study

    settings = _settings(args.config, args.set)
    torch.set_num_threads(args.threads)
    if args.run_dir is not None:
        if not (Path(args.run_dir) / "metrics.json").exists():
            raise SpecError(f"--run-dir {args.run_dir}: no metrics.json (not a finished run)")
        path = landscape_run(
            args.run_dir,
            args.out,
            settings,
            data_cache=args.data_cache,
            max_batches=args.max_batches,
        )
    else:
        path = landscape_study(
            args.study, _study_runs(args), args.runs_dir, args.out, settings,
            data_cache=args.data_cache, max_batches=args.max_batches,
        )  # fmt: skip
    print(
        path
        if path is not None
        else f"stopped after --max-batches {args.max_batches}; rerun to resume"
    )
    return 0
