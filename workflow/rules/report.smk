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
        # Flagged for `snakemake --report`: its own report then carries ours too.
        html=report(
            "reports/report.html", category="nnopt report", labels={"format": "HTML"}
        ),
        pdf=report(
            "reports/report.pdf", category="nnopt report", labels={"format": "PDF"}
        ),
    log:
        "logs/report.log",
    conda:
        ENV
    params:
        results=lambda wildcards, input: Path(input.runs).parent,
    shell:
        "nnopt report --config {input.config} --results {params.results}"
        " --claims {input.claims} --html {output.html} --pdf {output.pdf} > {log} 2>&1"
