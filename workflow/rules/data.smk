rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    log:
        "logs/data/{dataset}.log",
    conda:
        ENV
    params:
        data=dataset_spec,
    script:
        "../scripts/prepare_data.py"
