"""Loss landscapes of the studies marked `landscape: true` (nnopt.landscape.job).

One job per study: it picks the best seed of each configuration from runs.parquet, re-trains
it with weight snapshots, and evaluates the grids in resumable batches (part files under
results/landscape/{study}/.{run_id}.parts, kept when a job dies: rerun to resume). Finished
per-run outputs with the same settings are reused, so a new runs.parquet costs little.
Settings: the config's optional top-level `landscape:` mapping (docs/contract.md §5), read
from the plan.
"""


rule landscape:
    input:
        plan=PLAN,
        runs="results/runs.parquet",
    output:
        "results/landscape/{study}/sharpness.parquet",
    log:
        "logs/landscape/{study}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        runs=lambda wildcards, input: Path(input.plan).parent / "runs",
        data=lambda wildcards, input: Path(input.plan).parent / "data",
        out=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "nnopt landscape --study {wildcards.study} --plan {input.plan}"
        " --runs-table {input.runs} --runs-dir {params.runs} --data-cache {params.data}"
        " --out {params.out} --threads {threads} > {log} 2>&1"


rule landscape_all:
    input:
        STATE.landscape_outputs(),
