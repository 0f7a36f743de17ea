"""Tuning searches of the studies with a `tune:` block (nnopt.search, docs/search.md).

A search is a few rounds. `search_round` plans round R from the finished rounds before it
(`nnopt search-round`: trials, or one successive-halving rung, or the confirmation runs on
fresh seeds) and writes results/search/{study}/round-RR.json plus its shard files;
`search_train` trains one shard with `nnopt train-batch`; `search_summary` writes
trials.parquet and chosen.json for the report. The study comes from its own plan slice
(results/plan/{study}.json). Every file name is known from the config, so the DAG is static:
`snakemake -n` lists every round's jobs, and the lines printed at start say how many trial
runs are planned so far and how many rounds are left. A planned round is never re-planned
(the inputs are `ancient`: a rewritten manifest does not restart the search), and finished
run directories are reused by run id, so a second `snakemake` continues a killed search.
The aggregate and the tuned studies' report sections wait for the summaries
(STATE.search_outputs) and read the searches with --search-dir.
"""

from nnopt.plan.packing import resource_class
from nnopt.search.driver import check_searches, plan_lines
from nnopt.search.rounds import round_count

SEARCH_DIR = f"{RESULTS}/search"
TUNED = {s.name: s for s in STATE.config.studies if s.tune is not None}


wildcard_constraints:
    round=r"[0-9]{2}",
    shard=r"[0-9]+",


if workflow.is_main_process and TUNED:
    try:  # rounds planned for another tune block: one line, before any job
        check_searches(STATE.config, SEARCH_DIR)
    except SpecError as err:
        config_error(str(err))
    for line in plan_lines(STATE.config, SEARCH_DIR):
        print(f"nnopt: {line}", file=sys.stderr)


def search_manifests(study, r):
    """The shard manifests of round r of a study: all of them mean the round is trained."""
    shards = TUNED[study].tune.shards
    return [
        f"{SEARCH_DIR}/{study}/round-{r:02d}.shard-{s}.manifest.json"
        for s in range(shards)
    ]


def search_previous(wildcards):
    r = int(wildcards.round)
    return (
        [] if r == 0 else [ancient(m) for m in search_manifests(wildcards.study, r - 1)]
    )


def search_data(wildcards):
    return STATE.study_data(wildcards.study)


def search_gpus(wildcards):
    """GPUs a trial claims: its study's first run's (trials differ in tuned values only)."""
    run = TUNED[wildcards.study].runs[0]
    return resource_class(run.spec, cuda_present=cuda_present())[1]


def search_last_round(wildcards):
    """The confirmation round's manifests: the whole search is trained."""
    study = wildcards.study
    return search_manifests(study, round_count(TUNED[study]) - 1)


def search_defaults(wildcards):
    """The study's own runs (the untuned defaults of the tuned-vs-default table)."""
    return STATE.study_manifests(wildcards.study)


rule search_round:
    input:
        plan=ancient(f"{RESULTS}/plan/{{study}}.json"),
        previous=search_previous,
    output:
        f"{SEARCH_DIR}/{{study}}/round-{{round}}.json",
    log:
        "logs/search/{study}/round-{round}.log",
    conda:
        ENV
    params:
        search=SEARCH_DIR,
        runs=f"{RESULTS}/runs",
    shell:
        "nnopt search-round --plan {input.plan} --study {wildcards.study}"
        " --round {wildcards.round} --search-dir {params.search}"
        " --runs-dir {params.runs} > {log} 2>&1"


rule search_train:
    input:
        round=ancient(f"{SEARCH_DIR}/{{study}}/round-{{round}}.json"),
        data=search_data,
    output:
        f"{SEARCH_DIR}/{{study}}/round-{{round}}.shard-{{shard}}.manifest.json",
    log:
        "logs/search/{study}/round-{round}.shard-{shard}.log",
    conda:
        ENV
    threads: 1
    resources:
        gpu=search_gpus,
        mem_mb=800,
    params:
        runs=lambda wildcards, input: str(input.round).replace(
            ".json", f".shard-{wildcards.shard}.json"
        ),
        cache=f"{RESULTS}/data",
    shell:
        "nnopt train-batch --runs {params.runs} --manifest {output} --threads {threads}"
        " --gpus {resources.gpu} --data-cache {params.cache} > {log} 2>&1"


rule search_summary:
    input:
        plan=ancient(f"{RESULTS}/plan/{{study}}.json"),
        confirmed=search_last_round,
        defaults=search_defaults,
    output:
        trials=f"{SEARCH_DIR}/{{study}}/trials.parquet",
        chosen=f"{SEARCH_DIR}/{{study}}/chosen.json",
    log:
        "logs/search/{study}/summary.log",
    conda:
        ENV
    params:
        search=SEARCH_DIR,
        runs=f"{RESULTS}/runs",
    shell:
        "nnopt search-summary --plan {input.plan} --study {wildcards.study}"
        " --search-dir {params.search} --runs-dir {params.runs} > {log} 2>&1"


rule search_all:
    input:
        STATE.search_outputs(),
