rule report:
    input:
        plan=PLAN,
        claims="config/claims.yaml",
        runs="results/runs.parquet",
        curves="results/curves.parquet",
        summary="results/summary.parquet",
        comparisons="results/comparisons.parquet",
        landscapes=STATE.landscape_outputs(),
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
        "nnopt report --plan {input.plan} --results {params.results}"
        " --claims {input.claims} --html {output.html} --pdf {output.pdf} > {log} 2>&1"
