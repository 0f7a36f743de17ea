rule resolved_config:
    output:
        "results/config.json",
    log:
        "logs/config.log",
    params:
        config=config,
    run:
        packing.write_json_atomic(output[0], params.config)


rule aggregate:
    input:
        config="results/config.json",
        batches=all_manifests(),
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
        runs=lambda wildcards, output: Path(output.runs).with_suffix(""),
        out=lambda wildcards, output: Path(output.runs).parent,
    shell:
        "nnopt aggregate --config {input.config} --runs {params.runs}"
        " --out {params.out} > {log} 2>&1"
