"""Analysis: run directories -> result tables, statistics and claim verdicts (no torch).

Owns aggregation with Polars (`aggregate`), the statistical tests and intervals (`stats`),
the claims file and its verdicts (`claims`), and the display names of configurations
(`labels`, shared by claims evidence and the report). Imports `nnopt.config` and
`nnopt.store`.
"""
