rule train:
    input:
        # ancient: a new plan (another study changed) must not rerun batches already done;
        # a batch's runs are fixed by its id, and their specs in the plan by their run ids.
        plan=ancient(PLAN),
        data=batch_data,
    output:
        "results/batches/{batch}.json",
    log:
        "logs/train/{batch}.log",
    # Costliest batches first: LPT over jobs, so no core idles at the end.
    priority: lambda wildcards: int(10 * batch_cost_s(wildcards))
    conda:
        ENV
    # A timing study's batch (exclusive) holds every core, so no job runs beside it; torch
    # still uses the batch's own threads (params.torch_threads).
    threads:
        lambda wildcards: (
            workflow.cores if batch_exclusive(wildcards) else batch_threads(wildcards)
        )
    resources:
        gpu=batch_gpus,
        # A process is ~400 MB (torch + data); data-parallel ranks are processes too.
        mem_mb=lambda wildcards, threads: 800 * max(threads, 1),
        # Minutes, with room for a machine 3x slower than the cost model's.
        runtime=lambda wildcards: 5 + int(3 * batch_cost_s(wildcards) / 60),
    params:
        cache=lambda wildcards, input: Path(input.plan).parent / "data",
        torch_threads=batch_threads,
    shell:
        "nnopt train-batch --plan {input.plan} --batch {wildcards.batch}"
        " --manifest {output} --threads {params.torch_threads} --gpus {resources.gpu}"
        " --data-cache {params.cache} > {log} 2>&1"


rule train_all:
    input:
        STATE.manifests(),
