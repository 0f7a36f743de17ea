"""The verbs that train or prepare training inputs: `train` (one run from a spec file),
`train-batch` (the workflow's train rule: a batch of the plan, or a runs file) and
`prepare-data` (a dataset of the plan into the cache). Each is an `args_<verb>(parser)` /
`run_<verb>(args) -> int` pair that `nnopt.cli.main` lists; torch is imported only inside
`run_*`, after the inputs are checked (and after CUDA_VISIBLE_DEVICES is set)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nnopt.cli.support import check_plugin_sets
from nnopt.config.spec import SpecError

__all__ = [
    "args_train",
    "run_train",
    "args_train_batch",
    "run_train_batch",
    "args_prepare_data",
    "run_prepare_data",
]


def args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, metavar="FILE.yaml", help="run spec (YAML or JSON)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--study", default="adhoc", help="study name recorded in metrics.json")
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")
    p.add_argument("--force", action="store_true", help="retrain even if DIR is finished")


def _check_threads(threads: int | None) -> None:
    """--threads is bounded like device.threads (config/README.md, Limits)."""
    from nnopt.config.limits import check_size

    if threads is not None and threads < 1:
        raise SpecError(f"--threads: expected an integer >= 1, got {threads}")
    check_size("--threads", threads, key="device.threads")


def run_train(args: argparse.Namespace) -> int:
    from nnopt.config.check import check_spec_file
    from nnopt.config.check_io import check_out_dir
    from nnopt.train.runner import progress_hooks, run_one

    # Refuse bad specs, bad data files, broken plug-ins and outputs that are not (or cannot
    # become) a run directory before any training starts: --out replaces only an earlier run.
    spec = check_spec_file(args.spec)
    _check_threads(args.threads)
    check_plugin_sets([spec])
    check_out_dir(args.out, key="--out")
    status = run_one(
        spec, args.out, study=args.study, force=args.force, threads=args.threads,
        hooks=progress_hooks(spec.run_id, sys.stderr), data_cache=args.data_cache,
    )  # fmt: skip
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 80 + "\r")
    print(f"{spec.run_id} {status} -> {args.out}")
    from nnopt.store.runs import read_run
    from nnopt.store.status import final_metrics_table

    print(final_metrics_table(read_run(args.out)))
    return 0 if status in ("ok", "diverged") else 1


def args_train_batch(p: argparse.ArgumentParser) -> None:
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
    from nnopt.plan.packing import cohort_labels, shuffled

    runs = {(r.study, r.run_id): r for r in Plan.load(plan_path).config().runs}
    runs_dir = Path(plan_path).parent / "runs"
    cohort_of = cohort_labels(batch, record.get("cohorts", ()))
    items = []
    for run_id in record["run_ids"]:
        run = runs.get((record["study"], run_id))
        if run is None:  # an earlier batch rerun after its config changed: not planned now
            print(f"{record['study']}/{run_id} skipped: no longer in {plan_path}", flush=True)
            continue
        out = runs_dir / run.study / run.run_id
        items.append({"study": run.study, "factors": dict(run.factors), "spec": run.spec,
                      "out": str(out), "cohort": cohort_of.get(run_id)})  # fmt: skip
    return shuffled(items, batch)


def run_train_batch(args: argparse.Namespace) -> int:
    import socket
    import time

    _check_threads(args.threads)
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


def args_prepare_data(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", metavar="NAME", help="a dataset of the plan (with --plan)")
    what.add_argument("--spec", metavar="FILE.yaml", help="run spec; uses its data")
    p.add_argument("--plan", metavar="PLAN.json", help="the plan file (with --dataset)")
    p.add_argument("--out", metavar="FILE.npz", help="the prepared file (with --dataset)")
    p.add_argument("--cache", metavar="DIR", help="cache folder for the .npz (with --spec)")


def run_prepare_data(args: argparse.Namespace) -> int:
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
