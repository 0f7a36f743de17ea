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
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--batch", metavar="ID",
        help="a batch of the plan (the workflow's train rule; its runs are in "
        "batches/ID.todo.json beside the manifest)",
    )  # fmt: skip
    what.add_argument(
        "--runs", metavar="RUNS.json",
        help="JSON list of {study, factors, spec, out}; spec is a (partial) run spec mapping",
    )  # fmt: skip
    p.add_argument("--plan", metavar="PLAN.json", help="the plan file (with --batch)")
    p.add_argument("--manifest", required=True, metavar="OUT.json", help="manifest to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--gpus", type=int, default=0, metavar="N", help="GPUs to claim (lock files)")
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


def _plan_items(plan_path: str | None, batch: str, manifest: str) -> list[dict]:
    """The runs of one batch: ids from batches/ID.todo.json, specs from the plan."""
    from nnopt.plan.workflow import todo_path
    from nnopt.store.plan_file import Plan

    if plan_path is None:
        raise SpecError("--batch: needs --plan PLAN.json (the workflow's results/plan.json)")
    todo = todo_path(Path(manifest).parent, batch)
    try:
        record = json.loads(todo.read_text())
    except (OSError, ValueError) as err:
        raise SpecError(f"{todo}: cannot read the batch's run list ({err}); run snakemake "
                        "again (its main process writes it)") from None  # fmt: skip
    runs = {(r.study, r.run_id): r for r in Plan.load(plan_path).config().runs}
    runs_dir = Path(plan_path).parent / "runs"
    items = []
    for run_id in record["run_ids"]:
        run = runs.get((record["study"], run_id))
        if run is None:  # an earlier batch rerun after its config changed: not planned now
            print(f"{record['study']}/{run_id} skipped: no longer in {plan_path}", flush=True)
            continue
        out = runs_dir / run.study / run.run_id
        items.append({"study": run.study, "factors": dict(run.factors), "spec": run.spec,
                      "out": str(out)})  # fmt: skip
    return items


def _run_train_batch(args: argparse.Namespace) -> int:
    import socket
    import time

    from nnopt.store.atomic import write_json_atomic

    started = time.time()
    if args.gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        from nnopt.plan.packing import claim_gpus

        claim_gpus(args.gpus, ".snakemake/nnopt-gpu-locks")
    from nnopt.store.runs import read_run
    from nnopt.train.runner import run_batch  # after CUDA_VISIBLE_DEVICES: torch reads it once

    if args.batch is not None:
        items = _plan_items(args.plan, args.batch, args.manifest)
    else:
        items = _load_runs(args.runs)
    rows = run_batch(
        items, threads=args.threads, log=sys.stdout, data_cache=args.data_cache,
        progress=sys.stderr,
    )  # fmt: skip
    for row in rows:  # the job log also says why a run failed (metrics.json has it too)
        if row["status"] == "failed" and row["trained"]:
            traceback = read_run(row["out"]).get("traceback")
            print(f"\n{row['out']}:\n{traceback}", file=sys.stderr, flush=True)
    manifest = {
        "batch": args.batch,
        "threads": args.threads,
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "wall_time_s": round(time.time() - started, 3),  # the whole job, start-up included
        "runs": rows,
    }
    write_json_atomic(args.manifest, manifest)  # only reached when every run has ended
    return 0


# --- prepare-data --------------------------------------------------------------------------


def _args_prepare_data(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", metavar="NAME", help="a dataset of the plan (with --plan)")
    what.add_argument("--spec", metavar="FILE.yaml", help="run spec; uses its data")
    p.add_argument("--plan", metavar="PLAN.json", help="the plan file (with --dataset)")
    p.add_argument("--out", metavar="FILE.npz", help="the prepared file (with --dataset)")
    p.add_argument("--cache", metavar="DIR", help="cache folder for the .npz (with --spec)")


def _run_prepare_data(args: argparse.Namespace) -> int:
    from nnopt.config.spec import load_spec
    from nnopt.store.plan_file import Plan, spec_from_canonical
    from nnopt.train.data import prepare_dataset

    if args.spec is not None:
        if args.cache is None:
            raise SpecError("--spec: needs --cache DIR")
        print(prepare_dataset(load_spec(args.spec).data, args.cache))
        return 0
    if args.plan is None or args.out is None:
        raise SpecError("--dataset: needs --plan PLAN.json and --out FILE.npz")
    datasets = Plan.load(args.plan).datasets
    if args.dataset not in datasets:
        raise SpecError(f"--dataset {args.dataset}: not in {args.plan}; allowed: "
                        + ", ".join(sorted(datasets)))  # fmt: skip
    out = Path(args.out)
    path = prepare_dataset(spec_from_canonical({"data": datasets[args.dataset]}).data, out.parent)
    if path != out:  # the cache's naming and the rule's output must agree
        raise SpecError(f"--out {out}: the dataset's cache file is {path} (plan out of date?)")
    print(f"prepared {out} ({out.stat().st_size / 1e6:.1f} MB)")
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


def _workflow_files(path: Path) -> list[Path]:
    """The files `snakemake --configfile PATH` hands the workflow here (merged_config then
    uses the shipped one only when PATH says `inherit: shipped`)."""
    from nnopt.config.check import SHIPPED_CONFIG

    if SHIPPED_CONFIG.is_file() and path.resolve() != SHIPPED_CONFIG.resolve():
        return [SHIPPED_CONFIG, path]
    return [path]


def _run_check(args: argparse.Namespace) -> int:
    """Check one file; print one line; 0 when it is fine, 2 when it is not."""
    from nnopt.config.check import check_config, check_spec_file, merged_config

    devices = not args.no_device_check
    try:
        if args.config is not None:
            raw = merged_config(_workflow_files(args.config))  # file errors name their file
            try:
                config = check_config(raw, devices=devices)
            except SpecError as err:
                raise SpecError(f"{args.config}: {err}") from None
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


def _plan_or_config(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", metavar="PLAN.json", help="the workflow's results/plan.json")
    what.add_argument("--config", metavar="FILE", help="a config (YAML/JSON), expanded here")


def _args_aggregate(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)
    p.add_argument("--runs", required=True, metavar="DIR", help="folder of {study}/{run_id}/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .parquet tables")


def _run_aggregate(args: argparse.Namespace) -> int:
    from nnopt.analysis.aggregate import aggregate, read_config

    config = read_config(args.plan or args.config)
    for name, path in aggregate(config, args.runs, args.out).items():
        print(f"{name}: {path}")
    return 0


def _args_report(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)
    p.add_argument("--results", required=True, metavar="DIR", help="folder of the tables")
    p.add_argument("--claims", required=True, metavar="FILE.yaml", help="claims to check")
    p.add_argument("--html", required=True, metavar="FILE.html", help="HTML report to write")
    p.add_argument("--pdf", metavar="FILE.pdf", help="PDF report to write")


def _run_report(args: argparse.Namespace) -> int:
    from nnopt.landscape.section import report_section
    from nnopt.report.build import build_report

    build_report(
        args.plan or args.config, args.results, args.claims, args.html, args.pdf, sections=(report_section,)
    )
    print(f"html: {args.html}" + (f"\npdf: {args.pdf}" if args.pdf else ""))
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
}

_EPILOG = """examples:
  nnopt train --spec run.yaml --out results/runs/adhoc/run1
  nnopt train-batch --runs batch.json --manifest batch.manifest.json --threads 1
  nnopt aggregate --plan results/plan.json --runs results/runs --out results
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
