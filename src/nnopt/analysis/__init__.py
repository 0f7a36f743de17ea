"""Analysis: run directories -> result tables, statistics and claim verdicts (no torch).

Owns aggregation with Polars (`aggregate`: the runs and curves tables in `run_table`, the
summary in `summary`, the comparisons in `comparisons`), the statistical tests and intervals
(`stats`), the inference behind verdicts: pairing, margins, TOST, power (`inference`), the
claims file and its verdicts per problem (`claims`, tests in `claim_tests`,
results/claims.parquet in `claims_table`), the design check (`design`), and the display
names of configurations (`labels`, shared by claims evidence and the report). Imports
`nnopt.config` and `nnopt.store`.
"""
