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
its own process for its peak RSS: the whole report (`nnopt report`, HTML + PDF) against one
cached section (`nnopt report-section`) plus the assembly (`nnopt report --sections`, HTML +
PDF). Targets: the re-render <= 10 s, every process's peak RSS <= 400 MB.
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


def _measured(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `nnopt ARGS` in a fresh process (os.wait4's ru_maxrss)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *map(str, args)],
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"nnopt {args[0]} failed ({status})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def _shipped_like(n_studies: int, lrs: int) -> dict:
    """About the shipped set's shape: n_studies one-factor studies x `lrs` values x 5 seeds,
    curves of 40 points (405 runs at 16 x 5, plus one)."""
    studies = [{"name": f"s{i}", "title": f"Study {i}", "seeds": 5,
                "grid": {"optimizer.lr": [round(0.1 / 2 ** j, 6) for j in range(lrs)]},
                "metrics": ["test_accuracy", "train_time_s", "steps_to_target"]}
               for i in range(n_studies)]
    return {"defaults": {"budget": {"epochs": 2},
                         "evaluation": {"target_val_accuracy": 0.5}}, "studies": studies}


def one_factor(workdir: Path, n_studies: int) -> None:
    raw = _shipped_like(n_studies, 5)
    cfg, claims = workdir / "config.json", ROOT / "config" / "claims.yaml"
    cfg.write_text(json.dumps(raw))
    make_runs(parse_config(raw), workdir / "runs", n_points=40)
    sections = workdir / "sections"
    for s in raw["studies"]:  # the cached sections before the change (not timed)
        _measured(["report-section", "--config", cfg, "--study", s["name"], "--runs",
                   workdir / "runs", "--html", sections / f"{s['name']}.html"])
    raw["studies"][0]["grid"]["optimizer.lr"].append(0.0001)  # one factor value: 5 new runs
    cfg.write_text(json.dumps(raw))
    config = parse_config(raw)
    make_runs(config, workdir / "runs", n_points=40)
    agg = _measured(["aggregate", "--config", cfg, "--runs", workdir / "runs", "--out", workdir])
    report_args = ["report", "--config", cfg, "--results", workdir, "--claims", claims]
    whole = _measured([*report_args, "--html", workdir / "whole.html",
                       "--pdf", workdir / "whole.pdf"])
    section = _measured(["report-section", "--config", cfg, "--study", "s0", "--runs",
                         workdir / "runs", "--html", sections / "s0.html"])
    html = _measured([*report_args, "--html", workdir / "a.html", "--sections", sections])
    pdf = _measured(["report-pdf", "--html", workdir / "a.html", "--pdf", workdir / "a.pdf"])
    print(f"one-factor change, {len(config.runs)} runs in {n_studies} studies (5 new runs):")
    print(f"  aggregate (both ways)     {agg[0]:6.2f} s  peak {agg[1]:5.0f} MB")
    print(f"  before: whole report+PDF  {whole[0]:6.2f} s  peak {whole[1]:5.0f} MB")
    print(f"  after:  one section       {section[0]:6.2f} s  peak {section[1]:5.0f} MB")
    print(f"          HTML assembly     {html[0]:6.2f} s  peak {html[1]:5.0f} MB")
    print(f"          PDF (own job)     {pdf[0]:6.2f} s  peak {pdf[1]:5.0f} MB")
    html_s = section[0] + html[0]
    print(f"  HTML re-render: {whole[0]:.2f} s -> {html_s:.2f} s ({whole[0] / html_s:.1f}x); "
          f"with the PDF {section[0] + html[0] + pdf[0]:.2f} s "
          f"({whole[0] / (html_s + pdf[0]):.1f}x); peak RSS {whole[1]:.0f} -> "
          f"{max(section[1], html[1], pdf[1]):.0f} MB")


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
