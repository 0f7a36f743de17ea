"""Tuning searches of the studies with a `tune:` block (nnopt.search, docs/search.md).

A search is a few rounds. `search_round` plans round R from the finished rounds before it
(`nnopt search-round`: trials, or one successive-halving rung, or the confirmation runs on
fresh seeds) and writes results/search/{study}/round-RR.json plus its shard files;
`search_train` trains one shard with `nnopt train-batch`; `search_summary` writes
trials.parquet and chosen.json for the report. Every file name is known from the config, so
the DAG is static: `snakemake -n` lists every round's jobs, and the plan lines printed at
start say how many trials are planned so far and how many rounds are left. A planned round
is never re-planned (the inputs are `ancient`: a rewritten manifest does not restart the
search), and finished run directories are reused by run id, so a second `snakemake`
continues a killed search.
"""

from nnopt.search.driver import plan_lines
from nnopt.search.rounds import round_count

SEARCH_DIR = f"{RESULTS}/search"
TUNED = {s.name: s for s in STUDIES.studies if s.tune is not None}


wildcard_constraints:
    round=r"[0-9]{2}",
    shard=r"[0-9]+",


if workflow.is_main_process:
    for line in plan_lines(STUDIES, SEARCH_DIR):
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
    """The prepared datasets a study's runs read (tuned keys never change the data)."""
    runs = TUNED[wildcards.study].runs
    return sorted({str(cache_path(r.spec.data, DATA_DIR)) for r in runs})


def study_batches(wildcards):
    """The manifests of the batches holding the study's own runs (the untuned defaults)."""
    return [
        f"{BATCH_DIR}/{b.batch_id}.json"
        for b in BATCHES.values()
        if any(r.study == wildcards.study for r in b.runs)
    ]


def search_outputs():
    return [f"{SEARCH_DIR}/{name}/trials.parquet" for name in sorted(TUNED)]


rule search_round:
    input:
        config=ancient("results/config.json"),
        previous=search_previous,
    output:
        f"{SEARCH_DIR}/{{study}}/round-{{round}}.json",
    log:
        "logs/search/{study}/round-{round}.log",
    conda:
        ENV
    shell:
        "nnopt search-round --config {input.config} --study {wildcards.study}"
        " --round {wildcards.round} --search-dir "
        + SEARCH_DIR
        + " --runs-dir "
        + RUNS_DIR
        + " > {log} 2>&1"


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
        mem_mb=800,
    params:
        runs=lambda wildcards, input: str(input.round).replace(
            ".json", f".shard-{wildcards.shard}.json"
        ),
        cache_dir=DATA_DIR,
    shell:
        "nnopt train-batch --runs {params.runs} --manifest {output} --threads {threads}"
        " --data-cache {params.cache_dir} > {log} 2>&1"


rule search_summary:
    input:
        config=ancient("results/config.json"),
        confirmed=lambda wildcards: search_manifests(
            wildcards.study, round_count(TUNED[wildcards.study]) - 1
        ),
        defaults=study_batches,
    output:
        trials=f"{SEARCH_DIR}/{{study}}/trials.parquet",
        chosen=f"{SEARCH_DIR}/{{study}}/chosen.json",
    log:
        "logs/search/{study}/summary.log",
    conda:
        ENV
    shell:
        "nnopt search-summary --config {input.config} --study {wildcards.study}"
        " --search-dir " + SEARCH_DIR + " --runs-dir " + RUNS_DIR + " > {log} 2>&1"


rule search_all:
    input:
        search_outputs(),
