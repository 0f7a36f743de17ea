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
    conda:
        ENV
    params:
        runs=lambda wildcards, input: Path(input.plan).parent / "runs",
        out=lambda wildcards, output: Path(output.runs).parent,
    shell:
        "nnopt aggregate --plan {input.plan} --runs {params.runs}"
        " --out {params.out} > {log} 2>&1"
