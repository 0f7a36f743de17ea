rule train:
    input:
        data=batch_data,
    output:
        "results/batches/{batch}.json",
    log:
        "logs/train/{batch}.log",
    # Costliest batches first: LPT over jobs, so no core idles at the end.
    priority: lambda wildcards: int(10 * BATCHES[wildcards.batch].cost_s)
    conda:
        ENV
    threads: lambda wildcards: BATCHES[wildcards.batch].threads
    resources:
        gpu=lambda wildcards: BATCHES[wildcards.batch].gpus,
        mem_mb=1000,
        runtime=lambda wildcards: 5 + int(BATCHES[wildcards.batch].cost_s / 20),
    params:
        runs=batch_items,
        cache_dir=lambda wildcards, input: Path(input.data[0]).parent,
    script:
        "../scripts/train_batch.py"


rule train_all:
    input:
        all_manifests(),
