rule report:
    input:
        config="results/config.json",
        claims="config/claims.yaml",
        runs="results/runs.parquet",
        curves="results/curves.parquet",
        summary="results/summary.parquet",
        comparisons="results/comparisons.parquet",
        landscapes=landscape_outputs(),
    output:
        html="reports/report.html",
        pdf="reports/report.pdf",
    log:
        "logs/report.log",
    conda:
        ENV
    params:
        results=lambda wildcards, input: Path(input.runs).parent,
    shell:
        "nnopt report --config {input.config} --results {params.results}"
        " --claims {input.claims} --html {output.html} --pdf {output.pdf} > {log} 2>&1"
