"""The verbs of a study set before it trains: `init` writes a ready-to-edit study folder
(nnopt.cli.init_study), `check` validates a config or a spec exactly as the workflow will
(one line, exit 2) and prints the design check's warnings. An `args_<verb>(parser)` /
`run_<verb>(args) -> int` pair each, listed by `nnopt.cli.main`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnopt.cli.support import check_plugin_sets
from nnopt.config.spec import SpecError

__all__ = ["args_init", "run_init", "args_check", "run_check"]


def args_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="a new or empty folder for the study set")


def run_init(args: argparse.Namespace) -> int:
    from nnopt.cli.init_study import init_study

    for path in init_study(args.folder):
        print(f"wrote {path}")
    print(f"next: nnopt check --config {Path(args.folder, 'config.yaml').as_posix()}")
    return 0


def args_check(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="a study config (config/config.yaml)")
    what.add_argument("--spec", type=Path, help="a run spec file")
    p.add_argument(
        "--no-device-check",
        action="store_true",
        help="skip GPU checks (when jobs run on other machines, e.g. a cluster)",
    )
    p.add_argument("--claims", type=Path, metavar="FILE.yaml",
                   help="with --config: also print the design check of these claims "
                        "(comparisons that cannot reach alpha with their seeds)")


def _workflow_files(path: Path) -> list[Path]:
    """The files `snakemake --configfile PATH` hands the workflow here (merged_config then
    uses the shipped one only when PATH says `inherit: shipped`)."""
    from nnopt.config.check import SHIPPED_CONFIG

    if SHIPPED_CONFIG.is_file() and path.resolve() != SHIPPED_CONFIG.resolve():
        return [SHIPPED_CONFIG, path]
    return [path]


def run_check(args: argparse.Namespace) -> int:
    """Check one file; print one line; 0 when it is fine, 2 when it is not."""
    from nnopt.config.check import check_spec_file, study_set

    devices = not args.no_device_check
    try:
        if args.config is not None:
            # Exactly what `snakemake --configfile PATH` runs: merged, paths resolved
            # against the config's folder; errors name their file.
            checked = study_set(_workflow_files(args.config), devices=devices, name_file=True)
            config = checked.config
            check_plugin_sets([r.spec for r in config.runs])
            summary = f"{len(config.studies)} studies, {len(config.runs)} runs"
            design = _design_lines(config, args.claims or checked.claims)
        else:
            spec = check_spec_file(args.spec, devices=devices)
            check_plugin_sets([spec])
            summary = f"run {spec.run_id}"
    except SpecError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(f"ok: {args.config or args.spec}: {summary}")
    for line in design if args.config is not None else ():
        print(line)
    return 0


def _design_lines(config, claims_path: Path | None) -> list[str]:
    """The config-time design check (nnopt.analysis.design): warnings, not errors."""
    from nnopt.analysis.design import design_lines

    if claims_path is not None:
        from nnopt.analysis.claims import load_claims

        load_claims(claims_path)  # a bad claims file is an error of this check (SpecError)
    return design_lines(config, claims_path)
