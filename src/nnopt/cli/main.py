"""The `nnopt` command: a small argparse dispatcher, one function pair per verb.

Adding a verb: write `_args_<verb>(parser)` (its options) and `_run_<verb>(args) -> int`
(exit code), then add one line to `VERBS`. Heavy imports (torch, polars) stay inside the
`_run_*` functions so that `nnopt --help` is instant. A `SpecError` prints as one line
without a traceback and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from nnopt.config.spec import SpecError

__all__ = ["main", "VERBS"]


# --- train ---------------------------------------------------------------------------------


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, metavar="FILE.yaml", help="run spec (YAML or JSON)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--study", default="adhoc", help="study name recorded in metrics.json")
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")
    p.add_argument("--force", action="store_true", help="retrain even if DIR is finished")


def _check_threads(threads: int | None) -> None:
    """--threads is bounded like device.threads (config/README.md, Limits)."""
    from nnopt.config.limits import check_size

    if threads is not None and threads < 1:
        raise SpecError(f"--threads: expected an integer >= 1, got {threads}")
    check_size("--threads", threads, key="device.threads")


def _run_train(args: argparse.Namespace) -> int:
    from nnopt.config.check import check_spec_file
    from nnopt.config.check_io import check_out_dir
    from nnopt.train.runner import progress_hooks, run_one

    # Refuse bad specs, bad data files, broken plug-ins and outputs that are not (or cannot
    # become) a run directory before any training starts: --out replaces only an earlier run.
    spec = check_spec_file(args.spec)
    _check_threads(args.threads)
    _check_plugins([spec])
    check_out_dir(args.out, key="--out")
    status = run_one(
        spec, args.out, study=args.study, force=args.force, threads=args.threads,
        hooks=progress_hooks(spec.run_id, sys.stderr), data_cache=args.data_cache,
    )  # fmt: skip
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 80 + "\r")
    print(f"{spec.run_id} {status} -> {args.out}")
    from nnopt.store.runs import read_run
    from nnopt.store.status import final_metrics_table

    print(final_metrics_table(read_run(args.out)))
    return 0 if status in ("ok", "diverged") else 1


def _check_plugins(specs) -> None:
    """Import and build each distinct plug-in set on its data (nnopt.train.plugins)."""
    from nnopt.config.plugins import plugin_sections

    distinct = {tuple((s, p) for s, p, _ in plugin_sections(spec)): spec for spec in specs}
    if any(distinct):
        from nnopt.train.plugin_check import check_plugins

        for key, spec in distinct.items():
            if key:
                check_plugins(spec)


# --- train-batch ---------------------------------------------------------------------------


def _args_train_batch(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--batch", metavar="ID",
        help="a batch of the plan (the workflow's train rule; its runs are in "
        "batches/ID.todo.json beside the manifest)",
    )  # fmt: skip
    what.add_argument(
        "--runs", metavar="RUNS.json",
        help="JSON list of {study, factors, spec, out}; spec is a (partial) run spec mapping",
    )  # fmt: skip
    p.add_argument("--plan", metavar="PLAN.json", help="the plan file (with --batch)")
    p.add_argument("--manifest", required=True, metavar="OUT.json", help="manifest to write")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: spec)")
    p.add_argument("--gpus", type=int, default=0, metavar="N", help="GPUs to claim (lock files)")
    p.add_argument("--data-cache", metavar="DIR", help="prepared-dataset cache folder")


def _load_runs(path: str) -> list[dict]:
    from nnopt.config.spec import parse_spec

    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SpecError(f"{path}: cannot read runs file ({err})") from None
    if not isinstance(raw, list):
        raise SpecError(f"{path}: expected a JSON list of runs")
    items = []
    for i, item in enumerate(raw):
        missing = {"study", "spec", "out"} - set(item if isinstance(item, dict) else ())
        if missing:
            raise SpecError(f"{path}[{i}]: missing keys {sorted(missing)}")
        try:
            spec = parse_spec(item["spec"])
        except SpecError as err:
            raise SpecError(f"{path}[{i}].spec.{err}") from None
        items.append({**item, "spec": spec, "factors": item.get("factors") or {}})
    return items


def _plan_items(plan_path: str | None, batch: str, manifest: str) -> list[dict]:
    """The runs of one batch: ids from batches/ID.todo.json, specs from the plan."""
    from nnopt.plan.workflow import todo_path
    from nnopt.store.plan_file import Plan

    if plan_path is None:
        raise SpecError("--batch: needs --plan PLAN.json (the workflow's results/plan.json)")
    todo = todo_path(Path(manifest).parent, batch)
    try:
        record = json.loads(todo.read_text())
    except (OSError, ValueError) as err:
        raise SpecError(f"{todo}: cannot read the batch's run list ({err}); run snakemake "
                        "again (its main process writes it)") from None  # fmt: skip
    from nnopt.plan.packing import cohort_labels, shuffled

    runs = {(r.study, r.run_id): r for r in Plan.load(plan_path).config().runs}
    runs_dir = Path(plan_path).parent / "runs"
    cohort_of = cohort_labels(batch, record.get("cohorts", ()))
    items = []
    for run_id in record["run_ids"]:
        run = runs.get((record["study"], run_id))
        if run is None:  # an earlier batch rerun after its config changed: not planned now
            print(f"{record['study']}/{run_id} skipped: no longer in {plan_path}", flush=True)
            continue
        out = runs_dir / run.study / run.run_id
        items.append({"study": run.study, "factors": dict(run.factors), "spec": run.spec,
                      "out": str(out), "cohort": cohort_of.get(run_id)})  # fmt: skip
    return shuffled(items, batch)


def _run_train_batch(args: argparse.Namespace) -> int:
    import socket
    import time

    _check_threads(args.threads)
    from nnopt.store.atomic import write_json_atomic

    started = time.time()
    if args.gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        from nnopt.plan.packing import claim_gpus

        claim_gpus(args.gpus, ".snakemake/nnopt-gpu-locks")
    from nnopt.store.runs import read_run
    from nnopt.train.runner import run_batch  # after CUDA_VISIBLE_DEVICES: torch reads it once

    if args.batch is not None:
        items = _plan_items(args.plan, args.batch, args.manifest)
    else:
        items = _load_runs(args.runs)
    rows = run_batch(
        items, threads=args.threads, log=sys.stdout, data_cache=args.data_cache,
        progress=sys.stderr,
    )  # fmt: skip
    for row in rows:  # the job log also says why a run failed (metrics.json has it too)
        if row["status"] == "failed" and row["trained"]:
            traceback = read_run(row["out"]).get("traceback")
            print(f"\n{row['out']}:\n{traceback}", file=sys.stderr, flush=True)
    manifest = {
        "batch": args.batch,
        "threads": args.threads,
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "wall_time_s": round(time.time() - started, 3),  # the whole job, start-up included
        "runs": rows,
    }
    write_json_atomic(args.manifest, manifest)  # only reached when every run has ended
    return 0


# --- prepare-data --------------------------------------------------------------------------


def _args_prepare_data(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", metavar="NAME", help="a dataset of the plan (with --plan)")
    what.add_argument("--spec", metavar="FILE.yaml", help="run spec; uses its data")
    p.add_argument("--plan", metavar="PLAN.json", help="the plan file (with --dataset)")
    p.add_argument("--out", metavar="FILE.npz", help="the prepared file (with --dataset)")
    p.add_argument("--cache", metavar="DIR", help="cache folder for the .npz (with --spec)")


def _run_prepare_data(args: argparse.Namespace) -> int:
    from nnopt.config.spec import load_spec
    from nnopt.store.plan_file import Plan, spec_from_canonical
    from nnopt.train.data import prepare_dataset

    if args.spec is not None:
        if args.cache is None:
            raise SpecError("--spec: needs --cache DIR")
        print(prepare_dataset(load_spec(args.spec).data, args.cache))
        return 0
    if args.plan is None or args.out is None:
        raise SpecError("--dataset: needs --plan PLAN.json and --out FILE.npz")
    datasets = Plan.load(args.plan).datasets
    if args.dataset not in datasets:
        raise SpecError(f"--dataset {args.dataset}: not in {args.plan}; allowed: "
                        + ", ".join(sorted(datasets)))  # fmt: skip
    out = Path(args.out)
    path = prepare_dataset(spec_from_canonical({"data": datasets[args.dataset]}).data, out.parent)
    if path != out:  # the cache's naming and the rule's output must agree
        raise SpecError(f"--out {out}: the dataset's cache file is {path} (plan out of date?)")
    print(f"prepared {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


# --- check ---------------------------------------------------------------------------------


def _args_check(p: argparse.ArgumentParser) -> None:
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


def _run_check(args: argparse.Namespace) -> int:
    """Check one file; print one line; 0 when it is fine, 2 when it is not."""
    from nnopt.config.check import check_spec_file, study_set

    devices = not args.no_device_check
    try:
        if args.config is not None:
            # Exactly what `snakemake --configfile PATH` runs: merged, paths resolved
            # against the config's folder; errors name their file.
            checked = study_set(_workflow_files(args.config), devices=devices, name_file=True)
            config = checked.config
            _check_plugins([r.spec for r in config.runs])
            summary = f"{len(config.studies)} studies, {len(config.runs)} runs"
            design = _design_lines(config, args.claims or checked.claims)
        else:
            spec = check_spec_file(args.spec, devices=devices)
            _check_plugins([spec])
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


# --- landscape -----------------------------------------------------------------------------


def _args_landscape(p: argparse.ArgumentParser) -> None:
    from nnopt.landscape.command import add_arguments

    add_arguments(p)


def _run_landscape(args: argparse.Namespace) -> int:
    from nnopt.landscape.command import run

    return run(args)


# --- aggregate / report (nnopt.analysis.aggregate, nnopt.report.build) ------------------------------------


def _plan_or_config(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", metavar="PLAN.json", help="the workflow's results/plan.json")
    what.add_argument("--config", metavar="FILE", help="a config (YAML/JSON), expanded here")


def _args_aggregate(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)
    p.add_argument("--runs", required=True, metavar="DIR", help="folder of {study}/{run_id}/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .parquet tables")
    p.add_argument("--search-dir", metavar="DIR",
                   help="searches (results/search): tuned studies' trial and confirmation runs join "
                   "runs.parquet (column phase); comparisons use the confirmation runs")  # fmt: skip


def _run_aggregate(args: argparse.Namespace) -> int:
    from nnopt.analysis.aggregate import aggregate, read_config

    config = read_config(args.plan or args.config)
    searched = None
    if getattr(args, "search_dir", None):  # tuned studies: trial and confirmation runs too
        from nnopt.search.driver import check_searches, search_runs

        check_searches(config, args.search_dir)
        searched = {s.name: search_runs(s, args.search_dir) for s in config.studies}
    for name, path in aggregate(config, args.runs, args.out, searched).items():
        print(f"{name}: {path}")
    return 0


def _args_report(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)
    p.add_argument("--results", required=True, metavar="DIR", help="folder of the tables")
    p.add_argument("--claims", metavar="FILE.yaml",
                   help="claims to check (default: none, and no claims section)")
    p.add_argument("--html", required=True, metavar="FILE.html", help="HTML report to write")
    p.add_argument("--pdf", metavar="FILE.pdf", help="PDF report to write")
    p.add_argument("--sections", metavar="DIR",
                   help="assemble the studies' sections from DIR (nnopt report-section); "
                   "then only DIR and runs.parquet of --results are read")


def _run_report(args: argparse.Namespace) -> int:
    from nnopt.landscape.section import report_section
    from nnopt.report.build import build_report
    from nnopt.report.search_figures import search_section

    build_report(
        args.plan or args.config, args.results, args.claims, args.html, args.pdf,
        sections=(report_section, search_section), sections_dir=args.sections,
    )
    print(f"html: {args.html}" + (f"\npdf: {args.pdf}" if args.pdf else ""))
    return 0


# --- search (studies with a tune: block) ----------------------------------------------------


def _args_search_common(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)  # the workflow passes --plan results/plan/{study}.json
    p.add_argument("--study", required=True, help="a study with a tune: block")
    p.add_argument("--search-dir", default="results/search", metavar="DIR",
                   help="round files, trials.parquet, Optuna journal (default: %(default)s)")
    p.add_argument("--runs-dir", default="results/runs", metavar="DIR",
                   help="folder of {study}/{run_id}/ run directories (default: %(default)s)")  # fmt: skip


def _args_search_round(p: argparse.ArgumentParser) -> None:
    _args_search_common(p)
    p.add_argument("--round", required=True, type=int, metavar="R",
                   help="round to plan from the finished rounds before it (0 = first)")  # fmt: skip


def _tuned_study(args: argparse.Namespace):
    from nnopt.analysis.aggregate import read_config

    config = read_config(args.plan or args.config)
    try:
        return config.study(args.study)
    except KeyError:
        names = ", ".join(s.name for s in config.studies if s.tune is not None) or "none"
        raise SpecError(f"--study: no study {args.study!r}; tuned studies: {names}") from None


def _run_search_round(args: argparse.Namespace) -> int:
    from nnopt.search.rounds import read_round, write_round

    study = _tuned_study(args)
    path = write_round(study, args.round, args.search_dir, args.runs_dir)
    doc = read_round(args.search_dir, study.name, args.round)
    print(f"{study.name} round {args.round} ({doc['phase']}): {len(doc['runs'])} runs -> {path}")
    return 0


def _run_search_summary(args: argparse.Namespace) -> int:
    from nnopt.search.summary import summarize_search

    out = summarize_search(_tuned_study(args), args.search_dir, args.runs_dir)
    print(f"trials: {out / 'trials.parquet'}\nchosen: {out / 'chosen.json'}")
    return 0


# --- status -------------------------------------------------------------------------------


def _args_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results folder holding runs/ (and plan.json)")  # fmt: skip
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="reprint every SECONDS until every planned run is done")  # fmt: skip


def _run_status(args: argparse.Namespace) -> int:
    import time

    from nnopt.store.status import format_progress, read_progress

    if not Path(args.results).is_dir():
        raise SpecError(f"--results: folder not found: {args.results}")
    while True:
        progress = read_progress(args.results)
        line = format_progress(progress)
        if args.watch is None:
            print(line)
            return 0
        print("\r" + line.ljust(79), end="", flush=True)
        if progress.total and progress.done + progress.failed >= progress.total:
            print()
            return 0
        time.sleep(args.watch)


# --- merge / archive (nnopt.store.travel) -------------------------------------------------


def _args_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="results folders holding runs/")
    p.add_argument("--into", required=True, metavar="DST", help="results folder to merge into")


def _run_merge(args: argparse.Namespace) -> int:
    """Exit 1 when some run conflicts (same id, other values): those are listed, not copied."""
    from nnopt.store.travel import merge_results

    report = merge_results(args.sources, args.into)
    for line in report.conflicts:
        print(f"conflict: {line}", file=sys.stderr)
    print(f"merged into {args.into}: {report.summary()}")
    return 1 if report.conflicts else 0


def _args_archive(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE.tar.gz", help="bundle to write")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="config file(s) to include (repeat; default config/config.yaml)")  # fmt: skip
    p.add_argument("--results", default="results", metavar="DIR", help="results folder")
    p.add_argument("--reports", default="reports", metavar="DIR", help="reports folder")
    p.add_argument("--runs", action="store_true", help="also bundle every run folder")


def _run_archive(args: argparse.Namespace) -> int:
    from nnopt.store.travel import archive

    configs = args.config or ["config/config.yaml"]
    n = archive(args.out, configs=configs, results=args.results, reports=args.reports,
                runs=args.runs)  # fmt: skip
    print(f"{args.out}: {n} files + MANIFEST.sha256")
    return 0


def _args_report_pdf(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--html", metavar="FILE.html", help="HTML report to print")
    what.add_argument("--section", metavar="FILE.html",
                      help="print one study's section (nnopt report-section) as its PDF part")
    p.add_argument("--parts", nargs="+", metavar="PART.pdf", help="with --html: the studies' "
                   "parts (--section), in the report's order, merged with the rest")
    p.add_argument("--pdf", required=True, metavar="FILE.pdf", help="PDF to write")


def _run_report_pdf(args: argparse.Namespace) -> int:
    from nnopt.report import pdf

    if args.section:  # one study's part, cached beside its section
        pages = pdf.write_part_from(args.section, args.pdf)
    elif args.parts:  # the report: the rest printed here, the cached parts merged in
        pages = pdf.merge_report_from(args.html, args.parts, args.pdf)
    else:  # the report, its parts printed here too
        pages = pdf.write_report(pdf.read_html(args.html), args.pdf)
    print(f"pdf: {args.pdf} ({pages} pages)")
    return 0


def _args_report_section(p: argparse.ArgumentParser) -> None:
    _plan_or_config(p)
    p.add_argument("--study", required=True, help="the study whose section to render")
    p.add_argument("--runs", required=True, metavar="DIR", help="run folders (results/runs)")
    p.add_argument("--results", metavar="DIR", help="results folder (landscapes; default: "
                   "the parent of --runs)")
    p.add_argument("--html", required=True, metavar="FILE.html",
                   help="section fragment to write (FILE.json beside it)")
    p.add_argument("--search-dir", metavar="DIR",
                   help="searches (results/search): a tuned study shows its confirmation runs")  # fmt: skip


def _run_report_section(args: argparse.Namespace) -> int:
    from nnopt.analysis.aggregate import read_config
    from nnopt.landscape.section import report_section
    from nnopt.report.build import write_section
    from nnopt.report.search_figures import search_section

    config = read_config(args.plan or args.config)
    if args.search_dir:  # a tuned study's tables compare its confirmation runs
        from nnopt.search.driver import check_searches, with_confirmed_runs

        check_searches(config, args.search_dir)
        config = with_confirmed_runs(config, args.search_dir)
    write_section(config, args.runs, args.study, args.html, args.results,
                  sections=(report_section, search_section))
    print(f"section: {args.html}")
    return 0


# --- init (nnopt.cli.init_study) -----------------------------------------------------------


def _args_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="a new or empty folder for the study set")


def _run_init(args: argparse.Namespace) -> int:
    from nnopt.cli.init_study import init_study

    for path in init_study(args.folder):
        print(f"wrote {path}")
    print(f"next: nnopt check --config {Path(args.folder, 'config.yaml').as_posix()}")
    return 0


# --- dispatch ------------------------------------------------------------------------------

Verb = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

VERBS: dict[str, Verb] = {
    "init": (
        "write a ready-to-edit study folder (config, plug-in model and data, README)",
        _args_init,
        _run_init,
    ),
    "train": ("train one run from a spec file into a run directory", _args_train, _run_train),
    "train-batch": (
        "train a list of runs in this process (one failure never stops the others)",
        _args_train_batch,
        _run_train_batch,
    ),
    "prepare-data": (
        "write a spec's prepared dataset to the cache (.npz)",
        _args_prepare_data,
        _run_prepare_data,
    ),
    "check": (
        "validate a config or spec (and its data files) without training; one line, exit 2",
        _args_check,
        _run_check,
    ),
    "landscape": (
        "loss landscape, trajectory and Hessian sharpness of a study's best seeds (or one run)",
        _args_landscape,
        _run_landscape,
    ),
    "aggregate": (
        "runs → results/{runs,curves,summary,comparisons}.parquet (missing runs shown)",
        _args_aggregate,
        _run_aggregate,
    ),
    "report": (
        "tables + claims → self-contained HTML and PDF report",
        _args_report,
        _run_report,
    ),
    "search-round": (
        "plan round R of a tuned study's search from its finished rounds (a no-op once planned)",
        _args_search_round,
        _run_search_round,
    ),
    "search-summary": (
        "a finished search → results/search/{study}/trials.parquet and chosen.json",
        _args_search_common,
        _run_search_summary,
    ),
    "status": (
        "runs done/total and an ETA, read from the run folders (and results/plan.json)",
        _args_status,
        _run_status,
    ),
    "merge": (
        "gather run folders from several results trees into one (dedup by run id)",
        _args_merge,
        _run_merge,
    ),
    "archive": (
        "bundle config, result tables, report (and runs) with a SHA-256 manifest (.tar.gz)",
        _args_archive,
        _run_archive,
    ),
    "report-pdf": (
        "the PDF report, printed per study (--section) and merged (--parts); nothing fetched",
        _args_report_pdf,
        _run_report_pdf,
    ),
    "report-section": (
        "one study's report section from its run folders (cached per study by Snakemake)",
        _args_report_section,
        _run_report_section,
    ),
}

_EPILOG = """examples:
  nnopt train --spec run.yaml --out results/runs/adhoc/run1
  nnopt train-batch --runs batch.json --manifest batch.manifest.json --threads 1
  nnopt aggregate --plan results/plan.json --runs results/runs --out results
  nnopt check --config config/config.yaml
  nnopt init mystudy             # a study folder of your own (config, models.py, data.py)
  nnopt status --watch 10        # runs done/total and ETA while snakemake runs
  snakemake --cores all          # the whole study set (see README)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnopt",
        description="Declarative, reproducible neural-network optimization studies.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from nnopt import __version__

    parser.add_argument("--version", action="version", version=f"nnopt {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (help_text, add_args, run) in VERBS.items():
        verb = sub.add_parser(name, help=help_text, description=help_text)
        add_args(verb)
        verb.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as err:
        print(f"nnopt {args.verb}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only or vanished folders: name the path, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"nnopt {args.verb}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
