"""nnopt.report.build: escaping, no fetches, the PDF's text, pages and running furniture.

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
from nnopt import cli
from nnopt.analysis import aggregate as ag
from nnopt.report import build as report
from nnopt.config.studies import parse_config

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
    rc = cli.main(["report", "--config", str(root / "config.json"), "--results", str(root),
                      "--claims", str(root / "claims.yaml"), "--html", str(root / "r.html"),
                      "--pdf", str(root / "r.pdf")])
    assert rc == 0
    pdf = PdfReader(root / "r.pdf")
    text = [page.extract_text() for page in pdf.pages]
    return {"root": root, "html": (root / "r.html").read_text(), "pdf": pdf, "text": text,
            "config": config}


def test_html_escapes_hostile_names_descriptions_and_values(rendered):
    html = rendered["html"]
    # The only script elements are ours: the inline program and the studies' JSON data.
    tags = re.findall(r"<script[^>]*>", html, flags=re.I)
    assert tags and set(tags) <= {"<script>"} | {
        f'<script type="application/json" id="data-{s}" class="nnopt-data">'
        for s in ("hostile", "grid")}
    assert html.lower().count("</script") == len(tags)  # no config string closes one early
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
    # "batch 16 beats 64" pools two learning rates 0.2 apart: spread too large for 2 seeds
    for verdict in ("supported", "contradicted", "underpowered", "not run"):
        assert f'class="verdict {verdict.replace(" ", "-")}"' in html
    import polars as pl

    table = pl.read_parquet(rendered["root"] / "claims.parquet")  # written by `nnopt report`
    assert table.filter(pl.col("problem") == "overall")["verdict"].to_list() == [
        "supported", "contradicted", "underpowered", "not run"]
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

    code = ("import sys, nnopt.analysis.aggregate, nnopt.analysis.stats, nnopt.analysis.claims, nnopt.report.figures, "
            "nnopt.report.build; assert 'torch' not in sys.modules, 'torch imported'")
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


# --- labels, words for censored differences, the parallel note --------------------------------


def test_hardware_line_names_the_core_count_when_the_runs_recorded_it(rendered):
    import polars as pl

    assert "Test CPU, 2 CPU cores (cpu; 1 thread per run; hosts fixture-host)" in rendered["html"]
    runs = pl.read_parquet(rendered["root"] / "runs.parquet").drop("cpu_count")  # older results
    assert report._hardware(runs) == "Test CPU (cpu; 1 thread per run; hosts fixture-host)"
    assert report._machine(runs) == {"device_name": "Test CPU", "cpu_count": None, "threads": 1}


@pytest.mark.parametrize("diff, medians, expected", [
    (float("-inf"), {}, ("−∞", "baseline never reached")),
    (float("inf"), {}, ("+∞", "never reached")),
    (None, {("a", "epochs_to_target"): float("inf"), ("b", "epochs_to_target"): float("inf")},
     ("—", "neither reached")),
    (None, {("a", "epochs_to_target"): 5.0, ("b", "epochs_to_target"): float("inf")}, ("—", "")),
    (-2.0, {}, ("-2.0\u00a0epochs", "")),
])
def test_time_to_target_differences_say_who_never_reached_the_target(diff, medians, expected):
    row = {"metric": "epochs_to_target", "diff": diff, "config": "a", "baseline": "b"}
    assert report._difference(row, medians) == expected


def test_a_difference_without_unit_has_no_trailing_space():
    row = {"metric": "final_train_loss", "diff": 0.2111, "config": "a", "baseline": "b"}
    assert report._difference(row, {}) == ("0.211", "")
    row = {"metric": "test_accuracy", "diff": -0.0001, "config": "a", "baseline": "b"}
    assert report._difference(row, {}) == ("0.0\u00a0%", "")  # never '-0.0 %'


SMALL = {
    "defaults": {"budget": {"epochs": 2}},
    "seeds": 3,
    "studies": [
        {"name": "reg", "title": "Regularizers", "rows": "label.regularizer",
         "zip": {"label.regularizer": ["none", "l2"], "regularization.l2": [0.0, 0.001],
                 "regularization.weight_decay": [0.0, 0.0]},
         "baseline": {"label.regularizer": "none"}, "metrics": ["final_train_loss"]},
        {"name": "par", "title": "Workers", "grid": {"device.world_size": [1, 2]},
         "baseline": {"device.world_size": 1}, "metrics": ["train_time_s"]},
    ],
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    config = parse_config(SMALL)
    par = {r.config for r in config.study("par").runs}
    means = {("par", c): {"train_time_s": 0.1 if c.endswith("=1") else 0.7} for c in par}
    make_runs(config, root / "runs", means=means, sd=0.001)  # little noise: ratios near 7.0
    ag.aggregate(config, root / "runs", root)
    return config, root, report.load_tables(root)


def _views(small, tables=None):
    config, root, loaded = small
    context = report.build_context(config, tables or loaded, [], root)
    return {s["name"]: s for s in context["studies"]}, context


def test_a_label_study_is_shown_by_its_labels(small):
    views, context = _views(small)
    reg = views["reg"]
    assert reg["table"]["headers"] == ["Regularizer", "Final train loss"]  # no l2/decay columns
    assert [r["factors"] for r in reg["table"]["rows"]] == [["none"], ["l2"]]
    assert [r["config"] for r in reg["comparisons"]] == ["l2"]
    assert reg["baseline"] == "regularizer none"
    finding = context["findings"][0]
    assert "regularizer " in finding and "label.regularizer" not in finding
    assert re.search(r"\(\d\.\d{3} ± \d\.\d{3}( vs|;|\))", finding), finding  # no unit, no ' )'


def test_the_parallel_study_says_in_words_what_it_measured(small):
    views, _ = _views(small)
    note = {f.key: f for f in views["par"]["figures"]}["speedup"].note
    assert note.startswith("Measured on Test CPU, 2 CPU cores, 1 thread per worker: 2 workers "
                           "took 7.0× the 1-worker time (speed-up 0.14×, efficiency 7 %)"), note
    assert "no speed-up is possible on this machine" in note
    html = report.render_html(_views(small)[1])
    assert html.index("Measured on Test CPU") > html.index("Speed-up of training time")


def test_the_parallel_note_without_cpu_count_omits_the_cores(small):
    _, _, tables = small
    older = {**tables, "runs": tables["runs"].drop("cpu_count")}  # results before cpu_count
    views, context = _views(small, older)
    note = {f.key: f for f in views["par"]["figures"]}["speedup"].note
    assert note.startswith("Measured on Test CPU, 1 thread per worker: 2 workers took 7.0×")
    assert "CPU core" not in note and "CPU core" not in context["overview"]["hardware"]


# --- setup, sources, per-study sections ----------------------------------------------------


def test_setup_states_data_model_optimizer_budget_target_and_test_metric(rendered):
    html = rendered["html"]
    assert 'id="setup"' in html and "<h2>Setup</h2>" in html
    grid = html[html.index('id="study-grid"'):]
    grid = grid[:grid.index("</table>")]
    for text in ("mnist1d", "split 70% / 15% / 15%", "learning rate 0.1 / learning rate 0.01 "
                 "(varies)", "2 epochs, batch size 16 / 2 epochs, batch size 64 (varies)",
                 "80% validation accuracy", "final test accuracy"):
        assert text in grid, text


def test_recorded_sizes_and_parameters_win_over_the_spec(small):
    import polars as pl

    from nnopt.report import setup
    config, _, tables = small
    runs = tables["runs"].filter(pl.col("study") == "reg").with_columns(
        n_train=pl.lit(2800.0), n_val=pl.lit(600.0), n_test=pl.lit(600.0),
        n_params=pl.lit(7242.0), n_classes=pl.lit(10.0))
    facts = dict(setup.study_setup(config.study("reg"), runs))
    assert facts["Sizes"] == "2,800 train / 600 val / 600 test samples"
    assert facts["Parameters"] == "7,242" and facts["Dataset"].endswith(", 10 classes")
    fallback = dict(setup.study_setup(config.study("reg"), tables["runs"].head(0)))
    assert fallback["Sizes"].startswith("the dataset's default size, split 70%")
    assert "dropped" not in facts["Budget"]


def test_setup_says_when_batch_norm_drops_a_one_sample_last_batch():
    import polars as pl

    from nnopt.report import setup
    config = parse_config({"defaults": {"budget": {"epochs": 2, "batch_size": 100}},
                           "studies": [{"name": "bn", "grid": {"model.batch_norm": [False, True]},
                                        "metrics": ["test_accuracy"]}]})
    budget = {n: dict(setup.study_setup(config.study("bn"), pl.DataFrame({"n_train": [n]})))[
        "Budget"] for n in (3601.0, 3600.0)}
    assert budget[3601.0] == ("2 epochs, batch size 100; with batch norm an epoch's last batch "
                              "of one sample is dropped (batch norm cannot normalize one sample)")
    assert budget[3600.0] == "2 epochs, batch size 100"


def test_sources_are_identified_and_their_numbers_carry_units(rendered):
    html = rendered["html"]
    assert "“Neural Networks Optimization”, an article" in html
    assert "“Neural Network Optimization”, a 2019 forum post" in html
    assert "without a stated setup" in html


def test_json_data_cannot_close_its_script_element():
    from nnopt.report import interactive
    text = str(interactive.json_script({"t": "</script><b>&"}, "data-x"))
    assert "</script><b>" not in text and text.count("</script>") == 1
    inner = text[text.index(">") + 1:text.rindex("<")]
    assert json.loads(inner) == {"t": "</script><b>&"}


def test_sections_assembled_equal_the_report_rendered_in_one_process(tmp_path, small):
    config, root, _ = small
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    (tmp_path / "claims.yaml").write_text("claims: []\n")
    for study in ("reg", "par"):
        rc = cli.main(["report-section", "--config", str(tmp_path / "config.json"),
                       "--study", study, "--runs", str(root / "runs"), "--results", str(root),
                       "--html", str(tmp_path / "sections" / f"{study}.html")])
        assert rc == 0
    assembled = report.build_report(tmp_path / "config.json", root, tmp_path / "claims.yaml",
                                    tmp_path / "a.html", sections_dir=tmp_path / "sections")
    whole = report.build_report(tmp_path / "config.json", root, tmp_path / "claims.yaml",
                                tmp_path / "b.html")
    stamp = re.compile(r"rendered \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert stamp.sub("", assembled) == stamp.sub("", whole)
    assert json.loads((tmp_path / "sections" / "par.json").read_text())["anchor"] == "study-par"


def test_a_section_for_an_unknown_study_is_one_line(tmp_path, small, capsys):
    _, root, _ = small
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    rc = cli.main(["report-section", "--config", str(tmp_path / "config.json"), "--study",
                   "nope", "--runs", str(root / "runs"), "--html", str(tmp_path / "x.html")])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    assert "--study 'nope'" in err and "reg, par" in err and "\n" not in err


def test_the_html_has_every_row_and_the_pdf_says_how_many_more(tmp_path):
    raw = {"defaults": {"budget": {"epochs": 2}}, "seeds": 2, "studies": [
        {"name": "many", "title": "Many", "grid": {"optimizer.lr": [
            round(0.001 * (i + 1), 4) for i in range(45)]}, "metrics": ["test_accuracy"]}]}
    config = parse_config(raw)
    make_runs(config, tmp_path / "runs", n_points=3)
    ag.aggregate(config, tmp_path / "runs", tmp_path)
    view = report.build_context(config, report.load_tables(tmp_path), [], tmp_path)["studies"][0]
    assert len(view["table"]["rows"]) == 45 and view["table"]["more"] == 5
    assert [r["html_only"] for r in view["table"]["rows"]].count(True) == 5
    assert len(view["data"]["series"]) == 45  # every curve in the HTML's data
    assert sum(s["visible"] for s in view["data"]["series"]) == 8  # the static figure's
    html = report.render_section(view)
    assert html.count('class="html-only"') == 5 and "5 more configurations are in" in html


def test_the_pdf_is_laid_out_without_the_scripts_and_the_interactive_parts(rendered):
    html = rendered["html"]
    printed = report.printable(html)
    assert "<script" in html and "<script" not in printed.lower()
    assert printed.count("<section") == html.count("<section")  # nothing else removed
    text = "\n".join(rendered["text"])
    assert "filter rows" not in text and "show all" not in text and "Learning curves, inter" \
        not in text


def test_the_title_comes_from_the_config(tmp_path, small):
    config, root, tables = small
    titled = parse_config({**SMALL, "title": "My <own> study"})
    html = report.render_html(report.build_context(titled, tables, [], root))
    assert "<title>My &lt;own&gt; study</title>" in html
    default = report.render_html(report.build_context(config, tables, [], root))
    assert f"<title>{report.DEFAULT_TITLE}</title>" in default


HEADLINE = {
    "defaults": {"budget": {"epochs": 2}},
    "seeds": 5,
    "studies": [{"name": "act", "title": "Activations", "grid": {
        "model.activation": ["tanh", "relu", "gelu"]}, "baseline": {"model.activation": "tanh"},
        "metrics": ["test_accuracy"]}],
}


def _headline(tmp_path, accuracies: dict, sd: float, seeds: int = 5) -> tuple[str, str]:
    """(finding, verdict of the claim 'gelu > relu') on runs with these true accuracies."""
    from nnopt.analysis.claims import evaluate_claims, parse_claims

    config = parse_config({**HEADLINE, "seeds": seeds})
    labels = {r.config.split("=")[1]: r.config for r in config.study("act").runs}
    make_runs(config, tmp_path / "runs", sd=sd, means={
        ("act", labels[a]): {"test_accuracy": v} for a, v in accuracies.items()})
    ag.aggregate(config, tmp_path / "runs", tmp_path)
    tables = report.load_tables(tmp_path)
    finding = report.build_context(config, tables, [], tmp_path)["findings"][0]
    _, claims = parse_claims({"claims": [dict(id="g", text="t", study="act", kind="greater",
                                              metric="test_accuracy", left="gelu", right="relu")]})
    return finding, evaluate_claims(claims, config, tables["runs"])[0].verdict


def test_a_headline_names_a_best_only_when_the_claims_rule_separates_it(tmp_path):
    # gelu and relu 0.1 point apart under 1-point noise: a tie, as the claim "gelu > relu" finds
    finding, verdict = _headline(tmp_path / "tie", {"tanh": 0.50, "relu": 0.540, "gelu": 0.541},
                                 sd=0.01)
    assert verdict != "supported"
    assert re.match(r"Activations: activation (gelu|relu) and activation (gelu|relu) tie on test "
                    r"accuracy \(\d+\.\d ± \d+\.\d\u00a0% vs \d+\.\d ± \d+\.\d\u00a0%; p = [\d.]+, "
                    r"margin ±1\.0\u00a0%\); no best is named\.$", finding), finding
    assert "has the best" not in finding
    # 6 points ahead with little noise: named, with the runner-up, and the claim is supported
    finding, verdict = _headline(tmp_path / "sep", {"tanh": 0.50, "relu": 0.54, "gelu": 0.60},
                                 sd=0.005)
    assert verdict == "supported"
    assert finding.startswith("Activations: activation gelu has the best test accuracy (60.")
    assert "ahead of the runner-up activation relu (5" in finding
    assert "significantly better than the baseline activation tanh" in finding
    # ahead, significantly, but by less than the 1-point margin: still a tie
    finding, verdict = _headline(tmp_path / "small", {"tanh": 0.5, "relu": 0.54, "gelu": 0.545},
                                 sd=0.0005)
    assert verdict != "supported" and " tie on test accuracy " in finding, finding


def test_compute_counts_a_stacked_cohort_once(tmp_path):
    config = parse_config({"defaults": {"budget": {"epochs": 2}}, "seeds": 3, "studies": [
        {"name": "act", "grid": {"model.activation": ["tanh", "relu"]},
         "metrics": ["test_accuracy"]}]})
    make_runs(config, tmp_path / "runs")
    for i, path in enumerate(sorted((tmp_path / "runs" / "act").glob("*/metrics.json"))):
        doc = json.loads(path.read_text())
        if i < 4:  # four runs trained as one cohort in 600 s, which each member records
            doc["metrics"]["wall_time_s"] = 600.0 - i  # members finish one after the other
            doc["provenance"].update(cohort_id="b0-c0", cohort_size=4, cohort_wall_time_s=600.0)
        else:  # two runs trained alone, 30 s each
            doc["metrics"]["wall_time_s"] = 30.0
        path.write_text(json.dumps(doc))
    runs = ag.load_runs(config, tmp_path / "runs")
    assert runs["cohort_id"].drop_nulls().to_list() == ["b0-c0"] * 4
    assert runs["cohort_size"].drop_nulls().to_list() == [4] * 4
    assert report._compute_s(runs) == 660.0  # not 4 x 600 + 60
    assert report._overview(config, runs)["compute"] == "11 min 0 s"
    legacy = runs.drop("cohort_id", "cohort_size", "cohort_wall_time_s")  # older tables
    assert report._compute_s(legacy) == sum(600.0 - i for i in range(4)) + 60


def test_a_headline_with_one_run_per_configuration_names_no_best(tmp_path):
    finding, _ = _headline(tmp_path, {"tanh": 0.5, "relu": 0.6, "gelu": 0.8}, sd=0.0001,
                           seeds=1)
    assert finding.startswith("Activations: activation gelu leads activation relu on test "
                              "accuracy (80.0\u00a0% vs 60.0\u00a0%)"), finding
    assert finding.endswith("too few runs to test; no best is named."), finding
