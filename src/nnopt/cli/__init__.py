"""The `nnopt` command: one verb per workflow rule and per user action (`main`)."""

from nnopt.cli.main import main

__all__ = ["main"]
