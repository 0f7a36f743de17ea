"""Loss landscapes of the studies marked `landscape: true` (nnopt.landscape.job).

One job per study: it picks the best seed of each configuration from the study's own run
folders (as its plan, results/plan/{study}.json, expands them: the aggregate's reader), so
it starts as soon as that study's batches are done instead of after the whole aggregate.
The runs bring their weight snapshots (snapshots.pt, written by the single engine and by
cohorts); a run without them is re-trained. The grids are evaluated in resumable batches
(part files under results/landscape/{study}/.{run_id}.parts, kept when a job dies: rerun to
resume). Finished per-run outputs with the same settings are reused. Settings: the config's
optional top-level `landscape:` mapping (docs/contract.md §5), read from the plan.
"""


rule landscape:
    input:
        plan=f"{RESULTS}/plan/{{study}}.json",
        batches=study_manifests,
    output:
        "results/landscape/{study}/sharpness.parquet",
    log:
        "logs/landscape/{study}.log",
    # On the train rule's scale (10 x estimated seconds), so a ready landscape runs before
    # every shorter train batch: longest-processing-time first over both.
    priority: lambda wildcards: int(10 * landscape_cost_s(wildcards))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        runs=lambda wildcards, input: Path(input.plan).parents[1] / "runs",
        data=lambda wildcards, input: Path(input.plan).parents[1] / "data",
        out=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "nnopt landscape --study {wildcards.study} --plan {input.plan}"
        " --runs-dir {params.runs} --data-cache {params.data}"
        " --out {params.out} --threads {threads} > {log} 2>&1"


rule landscape_all:
    input:
        STATE.landscape_outputs(),
