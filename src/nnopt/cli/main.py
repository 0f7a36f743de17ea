"""The `nnopt` command: a small argparse dispatcher, one function pair per verb.

Adding a verb: write `_args_<verb>(parser)` (its options) and `_run_<verb>(args) -> int`
(exit code), then add one line to `VERBS`. Heavy imports (torch, polars) stay inside the
`_run_*` functions so that `nnopt --help` is instant. A `SpecError` prints as one line
without a traceback and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from nnopt.config.spec import SpecError

__all__ = ["main", "VERBS"]


# --- train ---------------------------------------------------------------------------------


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, metavar="FILE.yaml", help="run spec (YAML or JSON)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--study", default="adhoc", help="study name recorded in metrics.json")
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")
    p.add_argument("--force", action="store_true", help="retrain even if DIR is finished")


def _run_train(args: argparse.Namespace) -> int:
    from nnopt.config.check import check_spec_file, check_writable
    from nnopt.train.runner import progress_hooks, run_one

    # Refuse bad specs, bad data files and unwritable outputs before any training starts.
    spec = check_spec_file(args.spec)
    check_writable(Path(args.out).parent, key="--out")
    status = run_one(
        spec, args.out, study=args.study, force=args.force, threads=args.threads,
        hooks=progress_hooks(spec.run_id, sys.stderr), data_cache=args.data_cache,
    )  # fmt: skip
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 80 + "\r")
    print(f"{spec.run_id} {status} -> {args.out}")
    return 0 if status in ("ok", "diverged") else 1


# --- train-batch ---------------------------------------------------------------------------


def _args_train_batch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs", required=True, metavar="RUNS.json",
        help="JSON list of {study, factors, spec, out}; spec is a (partial) run spec mapping",
    )  # fmt: skip
    p.add_argument("--manifest", required=True, metavar="OUT.json", help="manifest to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")


def _load_runs(path: str) -> list[dict]:
    from nnopt.config.spec import parse_spec

    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SpecError(f"{path}: cannot read runs file ({err})") from None
    if not isinstance(raw, list):
        raise SpecError(f"{path}: expected a JSON list of runs")
    items = []
    for i, item in enumerate(raw):
        missing = {"study", "spec", "out"} - set(item if isinstance(item, dict) else ())
        if missing:
            raise SpecError(f"{path}[{i}]: missing keys {sorted(missing)}")
        try:
            spec = parse_spec(item["spec"])
        except SpecError as err:
            raise SpecError(f"{path}[{i}].spec.{err}") from None
        items.append({**item, "spec": spec, "factors": item.get("factors") or {}})
    return items


def _write_json_atomic(path: str | Path, data: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _run_train_batch(args: argparse.Namespace) -> int:
    from nnopt.train.runner import run_batch

    items = _load_runs(args.runs)
    rows = run_batch(
        items, threads=args.threads, log=sys.stdout, data_cache=args.data_cache,
        progress=sys.stderr,
    )  # fmt: skip
    _write_json_atomic(args.manifest, rows)  # only reached when every run has ended
    return 0


# --- prepare-data --------------------------------------------------------------------------


def _args_prepare_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, metavar="FILE.yaml", help="run spec; uses its data")
    p.add_argument("--cache", required=True, metavar="DIR", help="cache folder for the .npz")


def _run_prepare_data(args: argparse.Namespace) -> int:
    from nnopt.train.data import prepare_dataset
    from nnopt.config.spec import load_spec

    print(prepare_dataset(load_spec(args.spec).data, args.cache))
    return 0


# --- check ---------------------------------------------------------------------------------


def _args_check(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="a study config (config/config.yaml)")
    what.add_argument("--spec", type=Path, help="a run spec file")
    p.add_argument(
        "--no-device-check",
        action="store_true",
        help="skip GPU checks (when jobs run on other machines, e.g. a cluster)",
    )


def _run_check(args: argparse.Namespace) -> int:
    """Check one file; print one line; 0 when it is fine, 2 when it is not."""
    from nnopt.config.check import check_config_file, check_spec_file

    devices = not args.no_device_check
    try:
        if args.config is not None:
            config = check_config_file(args.config, devices=devices)
            summary = f"{len(config.studies)} studies, {len(config.runs)} runs"
        else:
            spec = check_spec_file(args.spec, devices=devices)
            summary = f"run {spec.run_id}"
    except SpecError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(f"ok: {args.config or args.spec}: {summary}")
    return 0


# --- landscape -----------------------------------------------------------------------------


def _args_landscape(p: argparse.ArgumentParser) -> None:
    from nnopt.landscape.command import add_arguments

    add_arguments(p)


def _run_landscape(args: argparse.Namespace) -> int:
    from nnopt.landscape.command import run

    return run(args)


# --- aggregate / report (nnopt.analysis.aggregate, nnopt.report.build) ------------------------------------


def _args_aggregate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="resolved config (JSON or YAML)")
    p.add_argument("--runs", required=True, metavar="DIR", help="folder of {study}/{run_id}/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .parquet tables")


def _run_aggregate(args: argparse.Namespace) -> int:
    from nnopt.analysis.aggregate import aggregate, read_config

    for name, path in aggregate(read_config(args.config), args.runs, args.out).items():
        print(f"{name}: {path}")
    return 0


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="resolved config (JSON or YAML)")
    p.add_argument("--results", required=True, metavar="DIR", help="folder of the tables")
    p.add_argument("--claims", required=True, metavar="FILE.yaml", help="claims to check")
    p.add_argument("--html", required=True, metavar="FILE.html", help="HTML report to write")
    p.add_argument("--pdf", metavar="FILE.pdf", help="PDF report to write")
    p.add_argument("--sections", metavar="DIR",
                   help="assemble the studies' sections from DIR (nnopt report-section); "
                   "then only DIR and runs.parquet of --results are read")


def _run_report(args: argparse.Namespace) -> int:
    from nnopt.landscape.section import report_section
    from nnopt.report.build import build_report

    build_report(
        args.config, args.results, args.claims, args.html, args.pdf, sections=(report_section,),
        sections_dir=args.sections,
    )
    print(f"html: {args.html}" + (f"\npdf: {args.pdf}" if args.pdf else ""))
    return 0


def _args_report_pdf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", required=True, metavar="FILE.html", help="HTML report to print")
    p.add_argument("--pdf", required=True, metavar="FILE.pdf", help="PDF report to write")


def _run_report_pdf(args: argparse.Namespace) -> int:
    from nnopt.report.build import write_pdf_from

    write_pdf_from(args.html, args.pdf)
    print(f"pdf: {args.pdf}")
    return 0


def _args_report_section(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="resolved config (JSON or YAML)")
    p.add_argument("--study", required=True, help="the study whose section to render")
    p.add_argument("--runs", required=True, metavar="DIR", help="run folders (results/runs)")
    p.add_argument("--results", metavar="DIR", help="results folder (landscapes; default: "
                   "the parent of --runs)")
    p.add_argument("--html", required=True, metavar="FILE.html",
                   help="section fragment to write (FILE.json beside it)")


def _run_report_section(args: argparse.Namespace) -> int:
    from nnopt.landscape.section import report_section
    from nnopt.report.build import write_section

    write_section(args.config, args.runs, args.study, args.html, args.results,
                  sections=(report_section,))
    print(f"section: {args.html}")
    return 0


# --- dispatch ------------------------------------------------------------------------------

Verb = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

VERBS: dict[str, Verb] = {
    "train": ("train one run from a spec file into a run directory", _args_train, _run_train),
    "train-batch": (
        "train a list of runs in this process (one failure never stops the others)",
        _args_train_batch,
        _run_train_batch,
    ),
    "prepare-data": (
        "write a spec's prepared dataset to the cache (.npz)",
        _args_prepare_data,
        _run_prepare_data,
    ),
    "check": (
        "validate a config or spec (and its data files) without training; one line, exit 2",
        _args_check,
        _run_check,
    ),
    "landscape": (
        "loss landscape, trajectory and Hessian sharpness of a study's best seeds (or one run)",
        _args_landscape,
        _run_landscape,
    ),
    "aggregate": (
        "runs → results/{runs,curves,summary,comparisons}.parquet (missing runs shown)",
        _args_aggregate,
        _run_aggregate,
    ),
    "report": (
        "tables + claims → self-contained HTML and PDF report",
        _args_report,
        _run_report,
    ),
    "report-pdf": (
        "the PDF of an HTML report (WeasyPrint, nothing fetched; its own Snakemake job)",
        _args_report_pdf,
        _run_report_pdf,
    ),
    "report-section": (
        "one study's report section from its run folders (cached per study by Snakemake)",
        _args_report_section,
        _run_report_section,
    ),
}

_EPILOG = """examples:
  nnopt train --spec run.yaml --out results/runs/adhoc/run1
  nnopt train-batch --runs batch.json --manifest batch.manifest.json --threads 1
  nnopt check --config config/config.yaml
  snakemake --cores all          # the whole study set (see README)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnopt",
        description="Declarative, reproducible neural-network optimization studies.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
