"""Helpers more than one verb module of `nnopt.cli` uses: the plug-in check that `train`
and `check` run before anything trains, and the `--plan`/`--config` choice of the verbs
that read a study set after planning (aggregate, report, report-section, search-*).
Like the verbs, they import torch only where they build a plug-in."""

from __future__ import annotations

import argparse

__all__ = ["check_plugin_sets", "add_plan_or_config"]


def check_plugin_sets(specs) -> None:
    """Import and build each distinct plug-in set on its data (nnopt.train.plugins)."""
    from nnopt.config.plugins import plugin_sections

    distinct = {tuple((s, p) for s, p, _ in plugin_sections(spec)): spec for spec in specs}
    if any(distinct):
        from nnopt.train.plugin_check import check_plugins  # builds them (torch)

        for key, spec in distinct.items():
            if key:
                check_plugins(spec)


def add_plan_or_config(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", metavar="PLAN.json", help="the workflow's results/plan.json")
    what.add_argument("--config", metavar="FILE", help="a config (YAML/JSON), expanded here")
