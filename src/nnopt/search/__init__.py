"""Tuning searches of studies with a `tune:` block: samplers, successive halving, rounds."""

from nnopt.search.driver import plan_lines, run_search
from nnopt.search.rounds import round_count, write_round
from nnopt.search.summary import summarize_search

__all__ = ["plan_lines", "run_search", "round_count", "write_round", "summarize_search"]
