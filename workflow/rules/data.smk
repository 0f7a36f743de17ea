rule prepare_data:
    input:
        # ancient: the dataset's name hashes its spec and fingerprint; another change to
        # the plan must not rebuild it (and with it every batch that reads it).
        plan=ancient(PLAN),
    output:
        "results/data/{dataset}.npz",
    log:
        "logs/data/{dataset}.log",
    conda:
        ENV
    shell:
        "nnopt prepare-data --plan {input.plan} --dataset {wildcards.dataset}"
        " --out {output} > {log} 2>&1"
