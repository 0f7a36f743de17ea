"""Storage: the on-disk contract between runs and everything after them.

Owns the run directory (`runs`: metrics.json + curve.parquet, written atomically, read and
checked: `is_finished` is the one definition of a finished run), the plan file and its typed
reader (`plan_file`: results/plan.json, read by aggregate, landscape and report), and atomic
file writes (`atomic`: unique temp name, fsync, rename, cleanup on error, umask-respecting
modes). No torch. Imports only `nnopt.config`.
"""
