"""Aggregation and report time for 10, 1,000 and 10,000 synthetic runs.

    python benchmarks/report.py                 # sizes 10 1000 10000
    python benchmarks/report.py --sizes 10 1000 --no-pdf

Fake run directories come from tests/fixtures/make_runs.py (seeded numpy, no torch; writing
them is not timed). After one untimed warm-up it times, in this process, `nnopt aggregate`,
`nnopt report` (HTML) and the PDF rendering, and prints seconds, seconds per 1,000 runs and
the growth ratio to the previous size beside the ratio of run counts (growth no worse than
linear: time ratio <= run ratio). Target: aggregate + report <= 20 s for 1,000 runs.
Studies hold 200 configurations x 5 seeds each, so 10,000 runs are 10 such studies.

    python benchmarks/report.py --one-factor 16

times a one-factor change (5 new runs in one of 16 studies, ~405 runs) both ways, each step in
its own process for its peak RSS. Before: the whole HTML report (`nnopt report`) and its PDF
laid out in one pass. After, as the workflow runs it: the changed study's section
(`nnopt report-section`); then at once, as Snakemake's two cores run them, the assembly
(`nnopt report --sections`) and that study's PDF part (`nnopt report-pdf --section`); then
the rest of the PDF printed and merged with the cached parts (`nnopt report-pdf --parts`).
Each step prints its wall and CPU seconds (CPU: what it takes alone on an idle core; on a
shared machine wall times grow with the load) and the critical paths both ways with ratios.
Targets: the re-render <= 10 s, PDF included; every process's peak RSS <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.make_runs import make_runs, synthetic_config  # noqa: E402

from nnopt import cli  # noqa: E402

from nnopt.report import build as report  # noqa: E402
from nnopt.config.studies import parse_config  # noqa: E402


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(n_runs: int, workdir: Path, pdf: bool) -> dict:
    raw = synthetic_config(n_runs)
    config = parse_config(raw)
    (workdir / "config.json").write_text(json.dumps(raw))
    make_runs(config, workdir / "runs", n_points=20)
    cfg = str(workdir / "config.json")
    agg_s = _time(lambda: cli.main(["aggregate", "--config", cfg, "--runs", str(workdir / "runs"),
                                          "--out", str(workdir)]))
    args = ["report", "--config", cfg, "--results", str(workdir), "--claims",
            str(ROOT / "config" / "claims.yaml"), "--html", str(workdir / "report.html")]
    html_s = _time(lambda: cli.main(args))
    html = (workdir / "report.html").read_text()
    pdf_s = _time(lambda: report.write_pdf(html, workdir / "report.pdf")) if pdf else 0.0
    return {"runs": len(config.runs), "studies": len(config.studies), "aggregate_s": agg_s,
            "html_s": html_s, "pdf_s": pdf_s, "total_s": agg_s + html_s + pdf_s}


# --- a one-factor change: the whole report vs one cached section plus the assembly ---------

_CLI = "import sys; from nnopt import cli; sys.exit(cli.main(sys.argv[1:]))"
# The PDF as it was printed before the parts: the whole HTML laid out in one pass.
_ONE_PASS = "import sys; from nnopt.report import pdf; pdf.write_pdf_from(*sys.argv[1:])"
# The parts of every study before the change (one process, not timed).
_PARTS = ("import sys; from pathlib import Path; from nnopt.report import pdf\n"
          "for p in sys.argv[1:]: pdf.write_part_from(p, Path(p).with_suffix('.pdf'))")


def _started(args: list[str], code: str = _CLI) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.DEVNULL)


def _waited(proc: subprocess.Popen) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a started process (os.wait4's rusage); fails when it
    failed. CPU time is what the process would take alone on an idle core: on a shared
    machine wall times grow with the load, CPU times much less."""
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{proc.args[3:5]} failed ({status})")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _measured(args: list[str], code: str = _CLI) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of `nnopt ARGS` (or of `code`) in a fresh
    process."""
    start = time.perf_counter()
    cpu, rss = _waited(_started(args, code))
    return time.perf_counter() - start, cpu, rss


def _side_by_side(*commands: list[str]) -> tuple[float, list[tuple[float, float, float]]]:
    """The wall time of `nnopt` commands run at once (as Snakemake runs independent jobs on
    2 cores) and each one's (wall seconds, CPU seconds, peak RSS in MB)."""
    start = time.perf_counter()
    procs = [_started(c) for c in commands]
    each = []
    for proc in procs:
        cpu, rss = _waited(proc)
        each.append((time.perf_counter() - start, cpu, rss))
    return time.perf_counter() - start, each


def _shipped_like(n_studies: int, lrs: int) -> dict:
    """About the shipped set's shape: n_studies one-factor studies x `lrs` values x 5 seeds,
    curves of 40 points (405 runs at 16 x 5, plus one)."""
    studies = [{"name": f"s{i}", "title": f"Study {i}", "seeds": 5,
                "grid": {"optimizer.lr": [round(0.1 / 2 ** j, 6) for j in range(lrs)]},
                "metrics": ["test_accuracy", "train_time_s", "steps_to_target"]}
               for i in range(n_studies)]
    return {"defaults": {"budget": {"epochs": 2},
                         "evaluation": {"target_val_accuracy": 0.5}}, "studies": studies}


def _cached_sections(raw: dict, cfg: Path, runs: Path, sections: Path) -> list[Path]:
    """Every study's section and PDF part as the workflow caches them (not timed)."""
    paths = [sections / f"{s['name']}.html" for s in raw["studies"]]
    for path in paths:
        _measured(["report-section", "--config", cfg, "--study", path.stem, "--runs", runs,
                   "--html", path])
    _measured(paths, _PARTS)
    return paths


def one_factor(workdir: Path, n_studies: int) -> None:
    raw = _shipped_like(n_studies, 5)
    cfg, claims, runs = workdir / "config.json", ROOT / "config" / "claims.yaml", workdir / "runs"
    cfg.write_text(json.dumps(raw))
    make_runs(parse_config(raw), runs, n_points=40)
    sections = _cached_sections(raw, cfg, runs, workdir / "sections")
    raw["studies"][0]["grid"]["optimizer.lr"].append(0.0001)  # one factor value: 5 new runs
    cfg.write_text(json.dumps(raw))
    config = parse_config(raw)
    make_runs(config, runs, n_points=40)
    agg = _measured(["aggregate", "--config", cfg, "--runs", runs, "--out", workdir])
    report_args = ["report", "--config", cfg, "--results", workdir, "--claims", claims]
    whole = _measured([*report_args, "--html", workdir / "whole.html"])
    one_pass = _measured([workdir / "whole.html", workdir / "whole.pdf"], _ONE_PASS)
    section = _measured(["report-section", "--config", cfg, "--study", "s0", "--runs", runs,
                         "--html", sections[0]])
    both_s, (html, part) = _side_by_side(
        [*report_args, "--html", workdir / "a.html", "--sections", sections[0].parent],
        ["report-pdf", "--section", sections[0], "--pdf", sections[0].with_suffix(".pdf")])
    merge = _measured(["report-pdf", "--html", workdir / "a.html", "--parts",
                       *[p.with_suffix(".pdf") for p in sections], "--pdf", workdir / "a.pdf"])
    _print_one_factor(len(config.runs), n_studies, agg, whole, one_pass, section, html, part,
                      both_s, merge)


def _print_one_factor(n_runs, n_studies, agg, whole, one_pass, section, html, part, both_s,
                      merge) -> None:
    def line(label: str, measured: tuple[float, float, float]) -> str:
        return (f"  {label:<32} {measured[0]:6.2f} s  CPU {measured[1]:6.2f} s  "
                f"peak {measured[2]:5.0f} MB")

    def path(label: str, wall: float, cpu: float, ref: tuple[float, float] | None) -> str:
        ratio = f"  ({ref[0] / wall:.1f}x, CPU {ref[1] / cpu:.1f}x)" if ref else ""
        return f"  {label:<47} {wall:6.2f} s  CPU path {cpu:6.2f} s{ratio}"

    print(f"one-factor change, {n_runs} runs in {n_studies} studies (5 new runs):")
    print(line("aggregate (both ways)", agg))
    print(line("before: whole report, HTML", whole))
    print(line("        the PDF in one pass", one_pass))
    print(line("after:  one section, HTML", section))
    print(line("        HTML assembly   } at once", html))
    print(line("        the study's PDF part }", part))
    print(line("        PDF: the rest + merge", merge))
    # Critical paths; the CPU path is the wall time on idle cores (the two jobs at once:
    # the longer of the two).
    html_path = (section[0] + html[0], section[1] + html[1])
    pdf_path = (section[0] + both_s + merge[0], section[1] + max(html[1], part[1]) + merge[1])
    whole_path = (whole[0] + one_pass[0], whole[1] + one_pass[1])
    last_stop = (section[0] + html[0] + one_pass[0], section[1] + html[1] + one_pass[1])
    print("re-render after the change (target <= 10 s, PDF included):")
    print(path("HTML, whole report", *whole[:2], None))
    print(path("HTML, one section + assembly", *html_path, whole[:2]))
    print(path("+ PDF, whole report, PDF in one pass", *whole_path, None))
    print(path("+ PDF, last stop: section, assembly, one pass", *last_stop, whole_path))
    print(path("+ PDF, in parts: section, assembly|part, merge", *pdf_path, whole_path))
    print(f"  the PDF after the HTML: {one_pass[0]:.2f} s -> {merge[0]:.2f} s "
          f"({one_pass[0] / merge[0]:.1f}x, CPU {one_pass[1] / merge[1]:.1f}x); peak RSS "
          f"{max(whole[2], one_pass[2]):.0f} -> "
          f"{max(section[2], html[2], part[2], merge[2]):.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--no-pdf", action="store_true", help="time the HTML only")
    parser.add_argument("--one-factor", type=int, metavar="STUDIES", default=0,
                        help="instead: a one-factor change in a set of STUDIES studies "
                        "(16: the shipped set's size), whole report vs section + assembly")
    args = parser.parse_args(argv)
    if args.one_factor:
        with tempfile.TemporaryDirectory(prefix="nnopt-bench-one-factor-") as tmp:
            one_factor(Path(tmp), args.one_factor)
        return
    with tempfile.TemporaryDirectory(prefix="nnopt-bench-warmup-") as tmp:
        bench(5, Path(tmp), pdf=not args.no_pdf)  # imports, font caches: not timed below
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"nnopt-bench-{n}-") as tmp:
            rows.append(bench(n, Path(tmp), pdf=not args.no_pdf))
    print(f"{'runs':>7} {'studies':>7} {'aggregate_s':>11} {'html_s':>7} {'pdf_s':>7} "
          f"{'total_s':>8} {'s/1k runs':>9} {'time ratio':>10} {'run ratio':>9}")
    prev = None
    for r in rows:
        ratio = f"{r['total_s'] / prev['total_s']:.1f}" if prev else "—"
        run_ratio = f"{r['runs'] / prev['runs']:.0f}" if prev else "—"
        print(f"{r['runs']:>7} {r['studies']:>7} {r['aggregate_s']:>11.2f} {r['html_s']:>7.2f} "
              f"{r['pdf_s']:>7.2f} {r['total_s']:>8.2f} {1000 * r['total_s'] / r['runs']:>9.2f} "
              f"{ratio:>10} {run_ratio:>9}")
        prev = r


if __name__ == "__main__":
    main()
