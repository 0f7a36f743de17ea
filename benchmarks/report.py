"""Aggregation and report time for 10, 1,000 and 10,000 synthetic runs.

    python benchmarks/report.py                 # sizes 10 1000 10000
    python benchmarks/report.py --sizes 10 1000 --no-pdf

Fake run directories come from tests/fixtures/make_runs.py (seeded numpy, no torch; writing
them is not timed). After one untimed warm-up it times, in this process, `nnopt aggregate`,
`nnopt report` (HTML) and the PDF rendering, and prints seconds, seconds per 1,000 runs and
the growth ratio to the previous size beside the ratio of run counts (growth no worse than
linear: time ratio <= run ratio). Target: aggregate + report <= 20 s for 1,000 runs.
Studies hold 200 configurations x 5 seeds each, so 10,000 runs are 10 such studies.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--no-pdf", action="store_true", help="time the HTML only")
    args = parser.parse_args(argv)
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
