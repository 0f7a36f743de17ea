rule aggregate:
    input:
        plan=PLAN,
        batches=STATE.manifests(),
        searches=STATE.search_outputs(),
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
        # Tuned studies: trial and confirmation runs join runs.parquet (column phase).
        search=lambda wildcards, input: Path(input.plan).parent / "search",
    shell:
        "nnopt aggregate --plan {input.plan} --runs {params.runs}"
        " --search-dir {params.search} --out {params.out} > {log} 2>&1"
