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

from nnopt.search.driver import check_searches, plan_lines
from nnopt.search.rounds import round_count

# Rounds per tuned study (trial rounds + the confirmation round), fixed by the config.
SEARCH_ROUNDS = {s.name: round_count(s) for s in STATE.config.studies if s.tune}
# A search is a chain of rounds, each waiting for the last: its jobs go before the train
# batches (priority 10 x their cost in s), so the chain does not become the set's tail.
SEARCH_PRIORITY = 10**7


wildcard_constraints:
    round=r"[0-9]{2}",
    shard=r"[0-9]+",


if workflow.is_main_process and SEARCH_ROUNDS:
    try:  # rounds planned for another tune block: one line, before any job
        check_searches(STATE.config, f"{RESULTS}/search")
    except SpecError as err:
        config_error(str(err))
    for line in plan_lines(STATE.config, f"{RESULTS}/search"):
        print(f"nnopt: {line}", file=sys.stderr)


rule search_round:
    input:
        plan=ancient(f"{RESULTS}/plan/{{study}}.json"),
        # Round R plans from round R - 1's results: every shard of it trained.
        previous=lambda wildcards: [
            ancient(m)
            for m in STATE.search_manifests(wildcards.study, int(wildcards.round) - 1)
        ],
    output:
        f"{RESULTS}/search/{{study}}/round-{{round}}.json",
    log:
        "logs/search/{study}/round-{round}.log",
    priority: SEARCH_PRIORITY
    conda:
        ENV
    params:
        search=lambda wildcards, output: Path(output[0]).parents[1],
        runs=lambda wildcards, input: Path(input.plan).parents[1] / "runs",
    shell:
        "nnopt search-round --plan {input.plan} --study {wildcards.study}"
        " --round {wildcards.round} --search-dir {params.search}"
        " --runs-dir {params.runs} > {log} 2>&1"


rule search_train:
    input:
        round=ancient(f"{RESULTS}/search/{{study}}/round-{{round}}.json"),
        # Tuned keys never change the data: the study's own prepared files.
        data=lambda wildcards: STATE.study_data(wildcards.study),
    output:
        f"{RESULTS}/search/{{study}}/round-{{round}}.shard-{{shard}}.manifest.json",
    log:
        "logs/search/{study}/round-{round}.shard-{shard}.log",
    priority: SEARCH_PRIORITY
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda wildcards: STATE.search_gpus(wildcards.study),
        mem_mb=800,
    params:
        runs=lambda wildcards, input: str(input.round).replace(
            ".json", f".shard-{wildcards.shard}.json"
        ),
        cache=lambda wildcards, input: Path(input.round).parents[2] / "data",
    shell:
        "nnopt train-batch --runs {params.runs} --manifest {output} --threads {threads}"
        " --gpus {resources.gpu} --data-cache {params.cache} > {log} 2>&1"


rule search_summary:
    input:
        plan=ancient(f"{RESULTS}/plan/{{study}}.json"),
        # The confirmation round's shards: the whole search is trained.
        confirmed=lambda wildcards: STATE.search_manifests(
            wildcards.study, SEARCH_ROUNDS[wildcards.study] - 1
        ),
        # The study's own runs: the defaults of the tuned-vs-default table.
        defaults=lambda wildcards: STATE.study_manifests(wildcards.study),
    output:
        trials=f"{RESULTS}/search/{{study}}/trials.parquet",
        chosen=f"{RESULTS}/search/{{study}}/chosen.json",
    log:
        "logs/search/{study}/summary.log",
    conda:
        ENV
    params:
        search=lambda wildcards, output: Path(output.trials).parents[1],
        runs=lambda wildcards, input: Path(input.plan).parents[1] / "runs",
    shell:
        "nnopt search-summary --plan {input.plan} --study {wildcards.study}"
        " --search-dir {params.search} --runs-dir {params.runs} > {log} 2>&1"


rule search_all:
    input:
        STATE.search_outputs(),
