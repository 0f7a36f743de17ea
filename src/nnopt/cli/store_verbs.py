"""The verbs on a results folder as a whole (nnopt.store.status, nnopt.store.travel):
`status` (runs done/total and an ETA), `merge` (run folders of several trees into one)
and `archive` (a .tar.gz with a SHA-256 manifest). They never import torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnopt.config.spec import SpecError

__all__ = ["args_status", "run_status", "args_merge", "run_merge", "args_archive", "run_archive"]


def args_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results folder holding runs/ (and plan.json)")  # fmt: skip
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="reprint every SECONDS until every planned run is done")  # fmt: skip


def run_status(args: argparse.Namespace) -> int:
    import time

    from nnopt.store.status import format_progress, read_progress

    if not Path(args.results).is_dir():
        raise SpecError(f"--results: folder not found: {args.results}")
    while True:
        progress = read_progress(args.results)
        line = format_progress(progress)
        if args.watch is None:
            print(line)
            return 0
        print("\r" + line.ljust(79), end="", flush=True)
        if progress.total and progress.done + progress.failed >= progress.total:
            print()
            return 0
        time.sleep(args.watch)


def args_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="results folders holding runs/")
    p.add_argument("--into", required=True, metavar="DST", help="results folder to merge into")


def run_merge(args: argparse.Namespace) -> int:
    """Exit 1 when some run conflicts (same id, other values): those are listed, not copied."""
    from nnopt.store.travel import merge_results

    report = merge_results(args.sources, args.into)
    for line in report.conflicts:
        print(f"conflict: {line}", file=sys.stderr)
    print(f"merged into {args.into}: {report.summary()}")
    return 1 if report.conflicts else 0


def args_archive(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE.tar.gz", help="bundle to write")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="config file(s) to include (repeat; default config/config.yaml)")  # fmt: skip
    p.add_argument("--results", default="results", metavar="DIR", help="results folder")
    p.add_argument("--reports", default="reports", metavar="DIR", help="reports folder")
    p.add_argument("--runs", action="store_true", help="also bundle every run folder")


def run_archive(args: argparse.Namespace) -> int:
    from nnopt.store.travel import archive

    configs = args.config or ["config/config.yaml"]
    n = archive(args.out, configs=configs, results=args.results, reports=args.reports,
                runs=args.runs)  # fmt: skip
    print(f"{args.out}: {n} files + MANIFEST.sha256")
    return 0
