rule aggregate:
    input:
        plan=PLAN,
        batches=STATE.manifests(),
    output:
        runs="results/runs.parquet",
        curves="results/curves.parquet",
        summary="results/summary.parquet",
        comparisons="results/comparisons.parquet",
    log:
        "logs/aggregate.log",
    params:
        runs=f"{RESULTS}/runs",
        out=RESULTS,
    conda:
        ENV
    shell:
        "nnopt aggregate --plan {input.plan} --runs {params.runs}"
        " --out {params.out} > {log} 2>&1"
