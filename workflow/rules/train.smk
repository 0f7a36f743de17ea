rule train:
    input:
        data=batch_data,
    output:
        "results/batches/{batch}.json",
    log:
        "logs/train/{batch}.log",
    params:
        plan=PLAN,
        cache=f"{RESULTS}/data",
    threads: batch_threads
    resources:
        gpu=batch_gpus,
        # A process is ~400 MB (torch + data); data-parallel ranks are processes too.
        mem_mb=lambda wildcards, threads: 800 * max(threads, 1),
        # Minutes, with room for a machine 3x slower than the cost model's.
        runtime=lambda wildcards: 5 + int(3 * batch_cost_s(wildcards) / 60),
    # Costliest batches first: LPT over jobs, so no core idles at the end.
    priority: lambda wildcards: int(10 * batch_cost_s(wildcards))
    conda:
        ENV
    shell:
        "nnopt train-batch --plan {params.plan} --batch {wildcards.batch}"
        " --manifest {output} --threads {threads} --gpus {resources.gpu}"
        " --data-cache {params.cache} > {log} 2>&1"


rule train_all:
    input:
        STATE.manifests(),
