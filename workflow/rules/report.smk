"""The report, cached per study.

Each study's section is its own job (`nnopt report-section`), rendered from that study's run
folders alone: its inputs are the study's own plan (results/plan/{study}.json, rewritten only
when that study's definition changes), its batch manifests and its landscapes, so a change to
one study re-renders that section and the assembly only. Sections render in parallel;
`report` then assembles them with the summary and the claims (the study set's `claims:`
file; without one, no claims section) into reports/report.html.

The PDF is printed in parts (nnopt.report.pdf; WeasyPrint's layout is most of the report's
time): `report_section_pdf` prints each study's section into results/report/{study}.pdf,
cached like the section and run beside the assembly, and `report_pdf` prints the rest of
reports/report.html (title page, summary, setup, claims, methods), merges the parts in, and
stamps the page numbers and the contents' numbers, so a change to one study re-prints one
part plus the rest.
"""


wildcard_constraints:
    study=r"[^/.]+",


rule report_section:
    input:
        plan=f"{RESULTS}/plan/{{study}}.json",
        batches=study_manifests,
        landscapes=study_landscape,
        search=lambda wildcards: STATE.search_outputs(wildcards.study),
    output:
        html=f"{RESULTS}/report/{{study}}.html",
        meta=f"{RESULTS}/report/{{study}}.json",
    log:
        "logs/report/{study}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=800,
    params:
        runs=lambda wildcards, input: Path(input.plan).parents[1] / "runs",
        results=lambda wildcards, input: Path(input.plan).parents[1],
        code=REPORT_CODE,
        search=lambda wildcards, input: Path(input.plan).parents[1] / "search",
    shell:
        "nnopt report-section --plan {input.plan} --study {wildcards.study}"
        " --runs {params.runs} --results {params.results} --search-dir {params.search}"
        " --html {output.html} > {log} 2>&1"


rule report:
    input:
        plan=PLAN,
        # The study set's `claims:` file; none (no claims section) when it sets none.
        claims=[CLAIMS] if CLAIMS else [],
        runs="results/runs.parquet",
        sections=STATE.report_sections(),
    output:
        # Flagged for `snakemake --report`: its own report then carries ours too.
        html=report(
            "reports/report.html", category="nnopt report", labels={"format": "HTML"}
        ),
    log:
        "logs/report.log",
    conda:
        ENV
    params:
        results=lambda wildcards, input: Path(input.runs).parent,
        sections=lambda wildcards, input: Path(input.sections[0]).parent,
        claims=f"--claims {shlex.quote(CLAIMS)}" if CLAIMS else "",
    shell:
        "nnopt report --plan {input.plan} --results {params.results}"
        " {params.claims} --sections {params.sections}"
        " --html {output.html} > {log} 2>&1"


rule report_section_pdf:
    input:
        html=f"{RESULTS}/report/{{study}}.html",
    output:
        pdf=f"{RESULTS}/report/{{study}}.pdf",
    log:
        "logs/report/{study}.pdf.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=800,
    params:
        code=REPORT_CODE,
    shell:
        "nnopt report-pdf --section {input.html} --pdf {output.pdf} > {log} 2>&1"


rule report_pdf:
    input:
        html="reports/report.html",
        # The studies' parts, in the report's (the config's) order.
        parts=[str(Path(p).with_suffix(".pdf")) for p in STATE.report_sections()],
    output:
        pdf=report(
            "reports/report.pdf", category="nnopt report", labels={"format": "PDF"}
        ),
    log:
        "logs/report_pdf.log",
    conda:
        ENV
    resources:
        mem_mb=800,
    params:
        code=REPORT_CODE,
    shell:
        "nnopt report-pdf --html {input.html} --parts {input.parts} --pdf {output.pdf}"
        " > {log} 2>&1"
