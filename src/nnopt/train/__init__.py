"""Training: the PyTorch engine that turns one `RunSpec` into a `RunResult`.

Owns the training loop (`engine`, `loop`, `state`, `strategy`, `record`), stacked cohorts
(`cohort`, `cohort_trainer`, `cohort_parts`, `stacked`), data (`data`), models and inits
(`models`), optimizers, schedules and penalties (`optim`), checkpoints (`checkpoint`),
per-run memory (`memory`), data-parallel training (`distributed`, `launch`) and running
specs into run directories (`runner`). Knows nothing of Snakemake. Imports `nnopt.config`
and `nnopt.store`.
"""
