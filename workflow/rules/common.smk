"""Parse time: the checked config, its plan and the input functions, all from the package.

nnopt.config.check.study_set re-reads every --configfile strictly and validates the merged
config (one line naming the key, exit 1, before any job); nnopt.plan.workflow writes
results/plan.json (only when it changed), finds the finished runs and packs the rest into
batches. Before any of that is written the main process takes the folder lock
(nnopt.plan.recovery): a second instance of another plan in the same folder is refused in
one line. See docs/architecture.md for the files that flow between the rules.

A study set runs in its own folder: `workdir:` below moves the workflow into the config's
`output:` folder (default: the config file's own folder; the repository root for the
shipped config), so every relative path of the rules (results/, reports/, logs/,
.snakemake/) lands there and a study set of your own never overwrites the shipped report.
"""

import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from nnopt.analysis.design import design_lines
from nnopt.config.check import check_writable, study_set
from nnopt.config.spec import SpecError
from nnopt.plan.packing import cuda_present
from nnopt.plan.recovery import claim_working_dir
from nnopt.plan.workflow import WorkflowState, plan_digest, plan_document
from nnopt.train.data import cache_path

RESULTS = "results"
PLAN = f"{RESULTS}/plan.json"
# One software environment for all jobs; used with --software-deployment-method conda.
ENV = "../envs/nnopt.yaml"


wildcard_constraints:
    batch=r"[A-Za-z0-9_-]+-[0-9a-f]{10}",
    dataset=r"[A-Za-z0-9_]+-[0-9a-f]{16}",


def config_error(message):
    """Report a bad config in one line and stop before the DAG is built."""
    print(f"nnopt: config error: {message}", file=sys.stderr)
    sys.exit(1)


def dataset_name(data):
    """The prepared file's stem, as the engine's cache names it (results/data/NAME.npz)."""
    return cache_path(data, f"{RESULTS}/data").stem


def planning_cores():
    """The parallelism batches are packed for: --cores, or --jobs on a cluster."""
    try:
        cores = workflow.cores
    except WorkflowError:  # cluster executors run without --cores
        cores = None
    return int(cores or workflow.nodes or 1)


SHIPPED = Path(workflow.basedir, "config", "config.yaml")


def load_study_set():
    """The checked config and its folders, read before `workdir:` moves the workflow (the
    config files are named relative to where snakemake was started)."""
    try:
        return study_set(workflow.configfiles, shipped=SHIPPED)
    except SpecError as err:
        config_error(str(err))


def claim_folder(document):
    """The folder lock, before anything is written (nnopt.plan.recovery): after a kill -9,
    drop stale locks and partial outputs unless another instance runs; refuse in one line,
    writing nothing, when a live instance runs another plan here (a dry run too)."""
    try:
        digest = plan_digest(document)
        cleaned = claim_working_dir(plan_digest=digest, configfiles=CONFIGFILES)
    except SpecError as err:
        print(f"nnopt: error: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:  # .snakemake cannot be made or locked (read-only, full)
        where = err.filename or ".snakemake"
        print(f"nnopt: error: {where}: cannot take the folder lock ({err.strerror})",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    for item in cleaned or []:
        print(f"nnopt: removed leftover of an interrupted run: {item}", file=sys.stderr)


def load_state(document):
    try:
        return WorkflowState.build(
            STUDY_SET.config,
            RESULTS,
            dataset_name=dataset_name,
            cores=planning_cores() if workflow.is_main_process else 1,
            cuda_present=cuda_present(),
            main_process=workflow.is_main_process,
            document=document,
        )
    except SpecError as err:  # the results folder cannot take the plan
        print(f"nnopt: error: {err}", file=sys.stderr)
        sys.exit(1)


STUDY_SET = load_study_set()
# The config files the live-plan record names (the shipped one only when alone), absolute:
# they are relative to where snakemake was started, and `workdir:` moves the workflow.
CONFIGFILES = [str(Path(f).resolve()) for f in workflow.configfiles]
CONFIGFILES = [f for f in CONFIGFILES if f != str(SHIPPED.resolve())] or CONFIGFILES
# The claims file of this study set, or None (then the report has no claims section).
CLAIMS = str(STUDY_SET.claims) if STUDY_SET.claims else None


workdir: str(STUDY_SET.output)


# A job elsewhere (not the main process) reads the batches the main process recorded.
if workflow.is_main_process:
    PLAN_DOCUMENT = plan_document(STUDY_SET.config, dataset_name)
    claim_folder(PLAN_DOCUMENT)
    STATE = load_state(PLAN_DOCUMENT)
else:
    STATE = load_state(None)
if workflow.is_main_process:
    print(STATE.table(), file=sys.stderr)
    for line in STATE.retry_lines():
        print(f"nnopt: {line}", file=sys.stderr)
    # Design check (nnopt.analysis.design): identical configurations, unreachable alpha.
    for line in design_lines(STATE.config, CLAIMS):
        print(f"nnopt: {line}", file=sys.stderr)


def batch_data(wildcards):
    """The prepared datasets a batch reads (results/data/NAME.npz)."""
    return STATE.batch_data(wildcards.batch)


def study_manifests(wildcards):
    return STATE.study_manifests(wildcards.study)


def study_landscape(wildcards):
    return [p for p in STATE.landscape_outputs() if f"/{wildcards.study}/" in p]


def report_code():
    """A hash of the report's code and templates: a section reruns when they change (the
    package is not a Snakemake input, so its edits would otherwise leave stale sections).
    """
    import hashlib

    import nnopt.report

    digest = hashlib.sha256()
    for path in sorted(Path(nnopt.report.__file__).parent.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".j2", ".css", ".js"):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


REPORT_CODE = report_code()


def batch_threads(wildcards):
    return STATE.batch_resources(wildcards.batch)["threads"]


def batch_exclusive(wildcards):
    return STATE.batch_resources(wildcards.batch)["exclusive"]


def batch_gpus(wildcards):
    return STATE.batch_resources(wildcards.batch)["gpus"]


def batch_cost_s(wildcards):
    return STATE.batch_resources(wildcards.batch)["cost_s"]


def landscape_cost_s(wildcards):
    """A study's landscape job: ~3 s to start plus ~1.5 s per configuration (snapshots read,
    two 21x21 planes on 512 samples, both ends of the Hessian: 1.0-1.3 CPU-s measured).
    """
    return 3 + 1.5 * len({r.config for r in STATE.config.study(wildcards.study).runs})


onstart:
    # Real runs only (not -n): a read-only or full results/logs folder gives one line naming
    # it before any job, instead of a Snakemake traceback from the first output.
    for folder in (RESULTS, "logs"):
        try:
            check_writable(folder, key=folder)
        except SpecError as err:
            print(f"nnopt: error: {err}", file=sys.stderr)
            sys.exit(1)
    STATE.write_todo()  # which runs each batch trains, for its job (here or on a cluster)
