"""Storage: the on-disk contract between runs and everything after them.

Owns the run directory (`runs`: metrics.json + curve.parquet, written atomically, read and
checked) and atomic file writes (`atomic`: unique temp name, fsync, rename, cleanup on
error). No torch. Imports only `nnopt.config`.
"""
