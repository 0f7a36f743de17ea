"""Validation, study expansion and packing at parse time, and the input functions.

Order matters: the config is checked against the JSON schema, then every study is expanded
and every run spec validated (nnopt.config.studies.parse_config), before any job exists. A bad
config prints one line naming the key and exits 1: no traceback, no job started.
"""

import dataclasses
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from nnopt.plan import packing
from nnopt.train.data import cache_path
from nnopt.plan.recovery import claim_working_dir
from nnopt.store.runs import is_finished
from nnopt.config.spec import SpecError
from nnopt.config.check import check_config, check_config_files, check_writable
from nnopt.config.studies import schema_error_message

RESULTS = "results"
RUNS_DIR = f"{RESULTS}/runs"
DATA_DIR = f"{RESULTS}/data"
BATCH_DIR = f"{RESULTS}/batches"
# One software environment for all jobs; used with --software-deployment-method conda.
ENV = "../envs/nnopt.yaml"


wildcard_constraints:
    batch=r"[A-Za-z0-9_-]+-[0-9a-f]{10}",
    dataset=r"[A-Za-z0-9_]+-[0-9a-f]{16}",


def config_error(message):
    """Report a bad config in one line and stop before the DAG is built."""
    print(f"nnopt: config error: {message}", file=sys.stderr)
    sys.exit(1)


def load_studies():
    try:  # Snakemake's loader keeps duplicate keys and runs YTE code: re-read strictly
        check_config_files(workflow.configfiles)
    except SpecError as err:
        config_error(str(err))
    try:
        validate(config, "../schemas/config.schema.yaml", set_default=False)
    except WorkflowError as err:
        # validate() raises WorkflowError from inside `except ValidationError`.
        cause = err.__context__
        if hasattr(cause, "absolute_path"):
            config_error(schema_error_message(cause, config))
        config_error(str(err).splitlines()[0])
    try:
        return check_config(config)
    except SpecError as err:
        config_error(str(err))


def run_dir(run):
    return Path(RUNS_DIR, run.study, run.run_id)


def finished_runs(batches):
    return {
        r.run_id for b in batches for r in b.runs if is_finished(run_dir(r), r.run_id)
    }


def retry_unfinished(batches, finished):
    """Drop the manifest of a batch with failed or missing runs, so Snakemake reruns it.

    The runner then skips the runs of that batch that are finished.
    """
    for batch in batches:
        manifest = Path(BATCH_DIR, f"{batch.batch_id}.json")
        # Each run's own directory: a spec shared by two studies has one per study.
        unfinished = [
            r.run_id for r in batch.runs if not is_finished(run_dir(r), r.run_id)
        ]
        if manifest.exists() and unfinished:
            failed = set(packing.failed_runs(manifest)) & set(unfinished)
            kind = "failed" if failed else "missing"
            print(
                f"nnopt: retrying {len(unfinished)} {kind} runs of batch {batch.batch_id}",
                file=sys.stderr,
            )
            manifest.unlink()


def plan_cores():
    """The parallelism the plan is made for: --cores, or --jobs on a cluster.

    Remote jobs (e.g. under SLURM) parse this file again with their own cores; they read
    the main process's value from NNOPT_PLAN_CORES so they find the same batches.
    """
    if not workflow.is_main_process and "NNOPT_PLAN_CORES" in os.environ:
        return int(os.environ["NNOPT_PLAN_CORES"])
    try:
        cores = workflow.cores
    except WorkflowError:  # cluster executors run without --cores
        cores = None
    os.environ["NNOPT_PLAN_CORES"] = str(cores or workflow.nodes or 1)
    return int(os.environ["NNOPT_PLAN_CORES"])


STUDIES = load_studies()
BATCHES = {
    b.batch_id: b
    for b in packing.plan_batches(
        STUDIES, cores=plan_cores(), cuda_present=packing.cuda_present()
    )
}
DATASETS = {
    cache_path(r.spec.data, DATA_DIR).stem: r.spec.data
    for b in BATCHES.values()
    for r in b.runs
}

if workflow.is_main_process:
    # After a kill -9: drop stale locks and partial outputs, unless another instance runs.
    for item in claim_working_dir() or []:
        print(f"nnopt: removed leftover of an interrupted run: {item}", file=sys.stderr)
    FINISHED = finished_runs(BATCHES.values())
    print(
        packing.plan_table(STUDIES, list(BATCHES.values()), FINISHED), file=sys.stderr
    )
    retry_unfinished(BATCHES.values(), FINISHED)


def batch_of(wildcards):
    try:
        return BATCHES[wildcards.batch]
    except KeyError:
        raise WorkflowError(
            f"batch {wildcards.batch} is not in the current plan (config or "
            "NNOPT_PLAN_CORES changed since it was scheduled); run snakemake again"
        ) from None


def batch_data(wildcards):
    """The prepared datasets a batch reads (results/data/{name}-{key}.npz)."""
    runs = batch_of(wildcards).runs
    return sorted({str(cache_path(r.spec.data, DATA_DIR)) for r in runs})


def batch_items(wildcards):
    return packing.run_items(batch_of(wildcards), RUNS_DIR)


def all_manifests():
    return [f"{BATCH_DIR}/{b}.json" for b in sorted(BATCHES)]


def dataset_spec(wildcards):
    return dataclasses.asdict(DATASETS[wildcards.dataset])


def landscape_outputs():
    """The per-study sharpness tables the report waits for (empty: no marked study)."""
    return [
        f"{RESULTS}/landscape/{s.name}/sharpness.parquet"
        for s in STUDIES.studies
        if s.landscape
    ]


onstart:
    # Real runs only (not -n): a read-only or full results/logs folder gives one line naming
    # it before any job, instead of a Snakemake traceback from the first output.
    for folder in (RESULTS, "logs"):
        try:
            check_writable(folder, key=folder)
        except SpecError as err:
            print(f"nnopt: error: {err}", file=sys.stderr)
            sys.exit(1)
