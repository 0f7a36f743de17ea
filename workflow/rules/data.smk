rule prepare_data:
    input:
        plan=PLAN,
    output:
        "results/data/{dataset}.npz",
    log:
        "logs/data/{dataset}.log",
    conda:
        ENV
    shell:
        "nnopt prepare-data --plan {input.plan} --dataset {wildcards.dataset}"
        " --out {output} > {log} 2>&1"
