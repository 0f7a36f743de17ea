# nnopt: declarative neural-network optimization studies (see config/README.md).
# Wiring only: the logic lives in src/nnopt and workflow/rules.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    train_all,
    search_all,


rule all:
    default_target: True
    input:
        rules.report.output,
        rules.report_pdf.output,
