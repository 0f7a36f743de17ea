"""nnopt.report: escaping, no fetches, the PDF's text, pages and running furniture.

One small report (HTML + PDF) is rendered once for the module; a loopback HTTP server counts
requests so that 'nothing fetched' is observed, not assumed.
"""

import http.server
import json
import re
import threading

import pytest
import yaml
from pypdf import PdfReader

from fixtures.make_runs import make_runs
from nnopt import aggregate as ag
from nnopt import report
from nnopt.studies import parse_config

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{ 7*7 }}"]


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _config(url):
    return {
        "defaults": {"budget": {"epochs": 2}, "evaluation": {"target_val_accuracy": 0.8}},
        "seeds": 3,
        "studies": [
            {"name": "hostile", "title": "Hostile <script>alert('t')</script> & co",
             "description": f'<img src="{url}/img.png"> <a href="file:///etc/passwd">x</a> '
                            "{{ config }} {% raw %}",
             "grid": {"data.label_column": HOSTILE},
             "metrics": ["test_accuracy", "steps_to_target"]},
            {"name": "grid", "title": "Learning rate x batch size",
             "grid": {"optimizer.lr": [0.1, 0.01], "budget.batch_size": [16, 64]},
             "seeds": 2, "metrics": ["test_accuracy", "train_time_s"]},
        ],
    }


CLAIMS = {"claims": [
    {"id": "sup", "text": "lr 0.1 beats 0.01", "study": "grid", "metric": "test_accuracy",
     "kind": "greater", "left": {"optimizer.lr": 0.1}, "right": {"optimizer.lr": 0.01}},
    {"id": "con", "text": "lr 0.01 beats 0.1", "study": "grid", "metric": "test_accuracy",
     "kind": "greater", "left": {"optimizer.lr": 0.01}, "right": {"optimizer.lr": 0.1}},
    {"id": "inc", "text": "batch 16 beats 64", "study": "grid", "metric": "test_accuracy",
     "kind": "greater", "left": {"budget.batch_size": 16}, "right": {"budget.batch_size": 64}},
    {"id": "nr", "text": "not run", "study": "parallel", "metric": "train_time_s",
     "kind": "less", "left": 2, "right": 1},
]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("report")
    raw = _config(server)
    config = parse_config(raw)
    means = {("grid", c): {"test_accuracy": 0.9 if "lr=0.1," in c else 0.7}
             for c in {r.config for r in config.study("grid").runs}}
    failed = config.study("hostile").runs[0].run_id
    make_runs(config, root / "runs", means=means, sd=0.01, statuses={failed: "failed"})
    (root / "config.json").write_text(json.dumps(raw))
    (root / "claims.yaml").write_text(yaml.safe_dump(CLAIMS))
    ag.aggregate(config, root / "runs", root)
    rc = report.main(["--config", str(root / "config.json"), "--results", str(root),
                      "--claims", str(root / "claims.yaml"), "--html", str(root / "r.html"),
                      "--pdf", str(root / "r.pdf")])
    assert rc == 0
    pdf = PdfReader(root / "r.pdf")
    text = [page.extract_text() for page in pdf.pages]
    return {"root": root, "html": (root / "r.html").read_text(), "pdf": pdf, "text": text,
            "config": config}


def test_html_escapes_hostile_names_descriptions_and_values(rendered):
    html = rendered["html"]
    assert "<script" not in html.lower()
    assert "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html or \
        "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "{{ 7*7 }}" in html and "{{ config }} {% raw %}" in html  # data, never templated


def test_nothing_is_fetched_from_network_or_disk(rendered, server, tmp_path):
    assert _Counter.hits == []  # the report's own rendering fetched nothing
    hostile = (f'<html><body><img src="{server}/a.png">'
               '<link rel="stylesheet" href="file:///etc/passwd">'
               '<img src="file:///etc/passwd"></body></html>')
    fetcher = report.write_pdf(hostile, tmp_path / "x.pdf")
    assert _Counter.hits == []
    assert any(u.startswith("http://127.0.0.1") for u in fetcher.refused)
    assert any(u.startswith("file:///etc/passwd") for u in fetcher.refused)


def test_html_is_self_contained(rendered):
    html = rendered["html"]
    assert not re.search(r'(src|href)="(?!#)', html)  # only in-page links
    assert "@import" not in html and "url(http" not in html


def test_pdf_text_holds_each_studys_table_values(rendered):
    text = " ".join(" ".join(t.split()) for t in rendered["text"])
    summary = ag.load_runs  # noqa: F841 (keeps the import honest)
    import polars as pl

    table = pl.read_parquet(rendered["root"] / "summary.parquet")
    for study in rendered["config"].studies:
        for metric in study.metrics:
            for row in table.filter((pl.col("study") == study.name)
                                    & (pl.col("metric") == metric)).iter_rows(named=True):
                cell = report.format_cell(row, metric)
                assert cell["value"] in text, (study.name, metric, cell)


def test_pdf_has_title_toc_sections_and_running_furniture(rendered):
    text, n_pages = rendered["text"], len(rendered["pdf"].pages)
    sections = 1 + 2 + len(rendered["config"].studies) + 1  # title, summary, claims, ..., methods
    assert n_pages >= sections
    assert "Contents" in text[0] and "Page" not in text[0]  # no footer on the title page
    toc = " ".join(text[0].split())
    assert re.search(r"Learning rate x batch size\W*\d+", toc)  # target-counter page numbers
    assert f"Page 2 of {n_pages}" in text[1]
    assert any("Claims" in t.split("\n")[0] or "Claims" in t[:200] for t in text[2:4])


def test_claims_verdicts_and_failed_runs_are_shown(rendered):
    html = rendered["html"]
    for verdict in ("supported", "contradicted", "inconclusive", "not run"):
        assert f'class="verdict {verdict.replace(" ", "-")}"' in html
    assert "out of &lt;memory&gt; &amp; &#34;quotes&#34;" in html or \
        "out of &lt;memory&gt; &amp; &quot;quotes&quot;" in html
    assert "failed" in html


def test_pdf_links_stay_inside_the_document(rendered):
    for page in rendered["pdf"].pages:
        for annot in page.get("/Annots") or []:
            action = annot.get_object().get("/A") or {}
            assert "/URI" not in action, action  # TOC and claim links are internal jumps


def test_reporting_modules_never_import_torch():
    import subprocess
    import sys

    code = ("import sys, nnopt.aggregate, nnopt.stats, nnopt.claims, nnopt.figures, "
            "nnopt.report; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_renders_when_no_run_has_finished(tmp_path):
    raw = {"seeds": 2, "studies": [
        {"name": "solo", "grid": {"model.activation": ["tanh"]},
         "metrics": ["test_accuracy", "not_a_metric"]},
        {"name": "pair", "grid": {"model.activation": ["sigmoid", "tanh"]}}]}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    ag.aggregate(parse_config(raw), tmp_path / "runs", tmp_path)  # no run directory at all
    html = report.build_report(tmp_path / "config.json", tmp_path,
                               _claims_file(tmp_path),
                               tmp_path / "r.html")
    assert html.count("no run directory") == 6  # every planned run is listed as missing
    assert "0/2 ok" in html and "2 missing" in html


def _claims_file(tmp_path):
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(CLAIMS))
    return tmp_path / "claims.yaml"
