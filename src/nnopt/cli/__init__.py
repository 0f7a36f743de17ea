"""The `nnopt` command: one verb per workflow rule and per user action. `main` is the
dispatcher (the `VERBS` table, the parser, the exit codes); the verbs live by group in
`study_verbs`, `run_verbs`, `results_verbs`, `search_verbs` and `store_verbs`, each an
`args_<verb>` / `run_<verb>` pair; `init_study` writes a new study folder."""

from nnopt.cli.main import main

__all__ = ["main"]
