"""Planning: which runs go into which Snakemake job, and recovery of the working folder.

Owns packing runs into batches by a cost model (`packing`) and the cleanup of an
interrupted run's leftovers (`recovery`). No torch. Imports `nnopt.config` and
`nnopt.store`.
"""
