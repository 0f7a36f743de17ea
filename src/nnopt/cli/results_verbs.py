"""The verbs downstream of training, all reading the plan (never the config again):
`aggregate` (run folders -> parquet tables), `landscape` (nnopt.landscape.command),
`report-section` (one study's fragment), `report` (HTML, optionally PDF) and `report-pdf`.
An `args_<verb>(parser)` / `run_<verb>(args) -> int` pair each, listed by `nnopt.cli.main`;
only `landscape` imports torch, inside its `run_*`."""

from __future__ import annotations

import argparse

from nnopt.cli.support import add_plan_or_config

__all__ = [
    "args_aggregate",
    "run_aggregate",
    "args_report",
    "run_report",
    "args_report_section",
    "run_report_section",
    "args_report_pdf",
    "run_report_pdf",
    "args_landscape",
    "run_landscape",
]


def args_aggregate(p: argparse.ArgumentParser) -> None:
    add_plan_or_config(p)
    p.add_argument("--runs", required=True, metavar="DIR", help="folder of {study}/{run_id}/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .parquet tables")
    p.add_argument("--search-dir", metavar="DIR",
                   help="searches (results/search): tuned studies' trial and confirmation runs join "
                   "runs.parquet (column phase); comparisons use the confirmation runs")  # fmt: skip


def run_aggregate(args: argparse.Namespace) -> int:
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


def args_report(p: argparse.ArgumentParser) -> None:
    add_plan_or_config(p)
    p.add_argument("--results", required=True, metavar="DIR", help="folder of the tables")
    p.add_argument("--claims", metavar="FILE.yaml",
                   help="claims to check (default: none, and no claims section)")
    p.add_argument("--html", required=True, metavar="FILE.html", help="HTML report to write")
    p.add_argument("--pdf", metavar="FILE.pdf", help="PDF report to write")
    p.add_argument("--sections", metavar="DIR",
                   help="assemble the studies' sections from DIR (nnopt report-section); "
                   "then only DIR and runs.parquet of --results are read")


def run_report(args: argparse.Namespace) -> int:
    from nnopt.landscape.section import report_section
    from nnopt.report.build import build_report
    from nnopt.report.search_figures import search_section

    build_report(
        args.plan or args.config, args.results, args.claims, args.html, args.pdf,
        sections=(report_section, search_section), sections_dir=args.sections,
    )
    print(f"html: {args.html}" + (f"\npdf: {args.pdf}" if args.pdf else ""))
    return 0


def args_report_section(p: argparse.ArgumentParser) -> None:
    add_plan_or_config(p)
    p.add_argument("--study", required=True, help="the study whose section to render")
    p.add_argument("--runs", required=True, metavar="DIR", help="run folders (results/runs)")
    p.add_argument("--results", metavar="DIR", help="results folder (landscapes; default: "
                   "the parent of --runs)")
    p.add_argument("--html", required=True, metavar="FILE.html",
                   help="section fragment to write (FILE.json beside it)")
    p.add_argument("--search-dir", metavar="DIR",
                   help="searches (results/search): a tuned study shows its confirmation runs")  # fmt: skip


def run_report_section(args: argparse.Namespace) -> int:
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


def args_report_pdf(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--html", metavar="FILE.html", help="HTML report to print")
    what.add_argument("--section", metavar="FILE.html",
                      help="print one study's section (nnopt report-section) as its PDF part")
    p.add_argument("--parts", nargs="+", metavar="PART.pdf", help="with --html: the studies' "
                   "parts (--section), in the report's order, merged with the rest")
    p.add_argument("--pdf", required=True, metavar="FILE.pdf", help="PDF to write")


def run_report_pdf(args: argparse.Namespace) -> int:
    from nnopt.report import pdf

    if args.section:  # one study's part, cached beside its section
        pages = pdf.write_part_from(args.section, args.pdf)
    elif args.parts:  # the report: the rest printed here, the cached parts merged in
        pages = pdf.merge_report_from(args.html, args.parts, args.pdf)
    else:  # the report, its parts printed here too
        pages = pdf.write_report(pdf.read_html(args.html), args.pdf)
    print(f"pdf: {args.pdf} ({pages} pages)")
    return 0


def args_landscape(p: argparse.ArgumentParser) -> None:
    from nnopt.landscape.command import add_arguments

    add_arguments(p)


def run_landscape(args: argparse.Namespace) -> int:
    from nnopt.landscape.command import run

    return run(args)
