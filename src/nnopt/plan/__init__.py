"""Planning: the workflow's plan, which runs go into which Snakemake job, and recovery.

Owns making the plan and the retry policy the Snakefiles ask for (`workflow`: plan.json,
finished runs, batches of the unfinished ones, input functions), packing runs into batches
by a cost model (`packing`) and the cleanup of an interrupted run's leftovers (`recovery`).
No torch. Imports `nnopt.config` and `nnopt.store`.
"""
