rule train:
    input:
        data=batch_data,
    output:
        "results/batches/{batch}.json",
    log:
        "logs/train/{batch}.log",
    # Costliest batches first: LPT over jobs, so no core idles at the end.
    priority: lambda wildcards: int(10 * batch_of(wildcards).cost_s)
    conda:
        ENV
    # A timing study's batch (exclusive) holds every core, so no job runs beside it; torch
    # still uses the batch's own threads (params.torch_threads).
    threads:
        lambda wildcards: (
            workflow.cores
            if batch_of(wildcards).exclusive
            else batch_of(wildcards).threads
        )
    resources:
        gpu=lambda wildcards: batch_of(wildcards).gpus,
        # A process is ~400 MB (torch + data); data-parallel ranks are processes too.
        mem_mb=lambda wildcards: 800 * max(batch_of(wildcards).threads, 1),
        # Minutes, with room for a machine 3x slower than the cost model's.
        runtime=lambda wildcards: 5 + int(3 * batch_of(wildcards).cost_s / 60),
    params:
        runs=batch_items,
        torch_threads=lambda wildcards: batch_of(wildcards).threads,
        cache_dir=lambda wildcards, input: Path(input.data[0]).parent,
    script:
        "../scripts/train_batch.py"


rule train_all:
    input:
        all_manifests(),
