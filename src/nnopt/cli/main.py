"""The `nnopt` command: a small argparse dispatcher over the verb modules of `nnopt.cli`.

Each verb is an `args_<verb>(parser)` (its options) / `run_<verb>(args) -> int` (exit
code) pair in the module of its group: `study_verbs` (init, check), `run_verbs` (train,
train-batch, prepare-data), `results_verbs` (aggregate, landscape, report-section, report,
report-pdf), `search_verbs` (search-round, search-summary), `store_verbs` (status, merge,
archive). Adding a verb: write its pair there, then add one line to `VERBS`. Heavy imports
(torch, polars) stay inside the `run_*` functions so that `nnopt --help` is instant. A
`SpecError` prints as one line without a traceback and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from nnopt.cli import results_verbs, run_verbs, search_verbs, store_verbs, study_verbs
from nnopt.config.spec import SpecError

__all__ = ["main", "VERBS", "build_parser"]


Verb = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

VERBS: dict[str, Verb] = {
    "init": (
        "write a ready-to-edit study folder (config, plug-in model and data, README)",
        study_verbs.args_init,
        study_verbs.run_init,
    ),
    "train": (
        "train one run from a spec file into a run directory",
        run_verbs.args_train,
        run_verbs.run_train,
    ),
    "train-batch": (
        "train a list of runs in this process (one failure never stops the others)",
        run_verbs.args_train_batch,
        run_verbs.run_train_batch,
    ),
    "prepare-data": (
        "write a spec's prepared dataset to the cache (.npz)",
        run_verbs.args_prepare_data,
        run_verbs.run_prepare_data,
    ),
    "check": (
        "validate a config or spec (and its data files) without training; one line, exit 2",
        study_verbs.args_check,
        study_verbs.run_check,
    ),
    "landscape": (
        "loss landscape, trajectory and Hessian sharpness of a study's best seeds (or one run)",
        results_verbs.args_landscape,
        results_verbs.run_landscape,
    ),
    "aggregate": (
        "runs → results/{runs,curves,summary,comparisons}.parquet (missing runs shown)",
        results_verbs.args_aggregate,
        results_verbs.run_aggregate,
    ),
    "report": (
        "tables + claims → self-contained HTML and PDF report",
        results_verbs.args_report,
        results_verbs.run_report,
    ),
    "search-round": (
        "plan round R of a tuned study's search from its finished rounds (a no-op once planned)",
        search_verbs.args_search_round,
        search_verbs.run_search_round,
    ),
    "search-summary": (
        "a finished search → results/search/{study}/trials.parquet and chosen.json",
        search_verbs.args_search_common,
        search_verbs.run_search_summary,
    ),
    "status": (
        "runs done/total and an ETA, read from the run folders (and results/plan.json)",
        store_verbs.args_status,
        store_verbs.run_status,
    ),
    "merge": (
        "gather run folders from several results trees into one (dedup by run id)",
        store_verbs.args_merge,
        store_verbs.run_merge,
    ),
    "archive": (
        "bundle config, result tables, report (and runs) with a SHA-256 manifest (.tar.gz)",
        store_verbs.args_archive,
        store_verbs.run_archive,
    ),
    "report-pdf": (
        "the PDF report, printed per study (--section) and merged (--parts); nothing fetched",
        results_verbs.args_report_pdf,
        results_verbs.run_report_pdf,
    ),
    "report-section": (
        "one study's report section from its run folders (cached per study by Snakemake)",
        results_verbs.args_report_section,
        results_verbs.run_report_section,
    ),
}

_EPILOG = """examples:
  nnopt train --spec run.yaml --out results/runs/adhoc/run1
  nnopt train-batch --runs batch.json --manifest batch.manifest.json --threads 1
  nnopt aggregate --plan results/plan.json --runs results/runs --out results
  nnopt check --config config/config.yaml
  nnopt init mystudy             # a study folder of your own (config, models.py, data.py)
  nnopt status --watch 10        # runs done/total and ETA while snakemake runs
  snakemake --cores all          # the whole study set (see README)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnopt",
        description="Declarative, reproducible neural-network optimization studies.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from nnopt import __version__

    parser.add_argument("--version", action="version", version=f"nnopt {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (help_text, add_args, run) in VERBS.items():
        verb = sub.add_parser(name, help=help_text, description=help_text)
        add_args(verb)
        verb.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as err:
        print(f"nnopt {args.verb}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only or vanished folders: name the path, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"nnopt {args.verb}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
