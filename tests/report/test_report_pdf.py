"""nnopt.report.pdf: the PDF printed in parts (one per study, cached) and merged.

One small report of three studies is built the way the workflow builds it, verb by verb
(`report-section` per study, `report-pdf --section` per study, `report --sections`,
`report-pdf --parts`), and checked against the same HTML laid out in one pass (the slow
reference): same pages, same text, page numbers and contents counted on the merged file.
The slow test at the end runs the workflow and changes one study: only its part is printed
again (mtimes).
"""

import io
import json
import re

import pytest
import yaml
from pypdf import PdfReader

from fixtures.make_runs import make_runs
from nnopt import cli
from nnopt.analysis import aggregate as ag
from nnopt.config.studies import parse_config
from nnopt.report import pdf

STUDIES = ("adam", "sgd", "dropout")
RAW = {"defaults": {"budget": {"epochs": 2}, "evaluation": {"target_val_accuracy": 0.8}},
       "seeds": 3, "studies": [
           {"name": name, "title": f"Study of {name}", "metrics": ["test_accuracy",
                                                                     "train_time_s"],
            "grid": {"optimizer.lr": [0.1, 0.01, 0.001][:2 + (i % 2)]}}
           for i, name in enumerate(STUDIES)]}
CLAIMS = {"claims": [{"id": "c1", "text": "lr 0.1 beats 0.01", "study": "sgd",
                      "metric": "test_accuracy", "kind": "greater",
                      "left": {"optimizer.lr": 0.1}, "right": {"optimizer.lr": 0.01}}]}


def _text(page) -> str:
    return " ".join(page.extract_text().split())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    config = parse_config(RAW)
    make_runs(config, root / "runs", n_points=6)
    ag.aggregate(config, root / "runs", root)
    cfg, claims = root / "config.json", root / "claims.yaml"
    cfg.write_text(json.dumps(RAW))
    claims.write_text(yaml.safe_dump(CLAIMS))
    sections = [root / "report" / f"{name}.html" for name in STUDIES]
    for path in sections:
        assert cli.main(["report-section", "--config", str(cfg), "--study", path.stem,
                         "--runs", str(root / "runs"), "--html", str(path)]) == 0
        assert cli.main(["report-pdf", "--section", str(path), "--pdf",
                         str(path.with_suffix(".pdf"))]) == 0
    html = root / "report.html"
    assert cli.main(["report", "--config", str(cfg), "--results", str(root), "--claims",
                     str(claims), "--html", str(html), "--sections", str(root / "report")]) == 0
    parts = [str(p.with_suffix(".pdf")) for p in sections]
    assert cli.main(["report-pdf", "--html", str(html), "--parts", *parts, "--pdf",
                     str(root / "report.pdf")]) == 0
    pdf.write_pdf(html.read_text(), root / "one_pass.pdf")  # the reference: one layout pass
    return {"root": root, "html": html.read_text(), "sections": sections,
            "merged": PdfReader(root / "report.pdf"), "one_pass": PdfReader(root / "one_pass.pdf"),
            "parts": [PdfReader(p) for p in parts]}


def _starts(built) -> list[int]:
    """0-based merged page of each study part's first page: after the title page, the front
    (summary, setup, claims) and the parts before it."""
    merged, parts = built["merged"], built["parts"]
    back = 1  # the methods
    front = len(merged.pages) - 1 - back - sum(len(p.pages) for p in parts)
    starts, page = [], 1 + front
    for part in parts:
        starts.append(page)
        page += len(part.pages)
    return starts


def test_the_merged_pdf_reads_as_the_one_pass_pdf_page_for_page(built):
    merged, reference = built["merged"], built["one_pass"]
    assert len(merged.pages) == len(reference.pages)
    for i, (ours, theirs) in enumerate(zip(merged.pages, reference.pages)):
        assert _text(ours) == _text(theirs), i  # footers and contents numbers included


def test_the_merged_pdf_stays_near_the_one_pass_size(built):
    root = built["root"]
    # Each part embeds its own font subsets; stamping must not leave pages uncompressed
    # (pypdf decodes a page's content to merge a footer in: 4x the size before deflating).
    assert (root / "report.pdf").stat().st_size < 2 * (root / "one_pass.pdf").stat().st_size


def test_the_merged_pdf_holds_each_studys_part_in_order(built):
    merged = built["merged"]
    for start, part, name in zip(_starts(built), built["parts"], STUDIES):
        assert _text(merged.pages[start]).startswith(f"Study of {name}")
        for j, page in enumerate(part.pages):
            assert _text(page) in _text(merged.pages[start + j]), (name, j)


def test_the_outline_names_every_study_at_its_first_page(built):
    merged = built["merged"]
    top = [item for item in merged.outline if not isinstance(item, list)]
    titles = [item.title for item in top]
    assert titles[1:4] == ["Summary", "Setup", "Claims"] and titles[-1] == "Methods"
    assert titles[4:-1] == [f"Study of {name}" for name in STUDIES]
    for item, start in zip(top[4:-1], _starts(built)):
        assert merged.get_destination_page_number(item) == start
    children = merged.outline[merged.outline.index(top[4]) + 1]
    assert "Setup" in [c.title for c in children]  # a study's h2 headings nest under it


def test_footers_and_contents_count_the_merged_pages(built):
    merged = built["merged"]
    n = len(merged.pages)
    assert "Page" not in _text(merged.pages[0])  # the title page has no footer
    for i in range(1, n):
        assert _text(merged.pages[i]).endswith(f"Page {i + 1} of {n}"), i
        assert len(re.findall(r"Page \d+ of \d+", _text(merged.pages[i]))) == 1  # stamped once
    contents = _text(merged.pages[0])
    for start, name in zip(_starts(built), STUDIES):
        assert re.search(rf"Study of {name} [. ]+ {start + 1}\b", contents), name
    assert re.search(rf"Methods [. ]+ {n}\b", contents)


def test_the_contents_and_claims_links_jump_to_their_part(built):
    merged = built["merged"]
    targets = set()
    for page in (0, 1, 2, 3):  # the title page and the front
        for annot in merged.pages[page].get("/Annots") or []:
            dest = annot.get_object().get("/Dest")
            assert dest is not None and "/A" not in annot.get_object()  # internal jumps
            targets.add(merged.get_page_number(dest[0].get_object()))
    assert set(_starts(built)) <= targets and len(merged.pages) - 1 in targets


def test_the_html_is_cut_without_loss_and_its_sections_are_the_cached_fragments(built):
    html = built["html"]
    pieces = pdf.report_pieces(html)
    joined = pieces["head"] + "".join(f"<!-- pdf-part: {k} -->{pieces[k]}" for k in pdf.PIECES)
    assert joined == html
    cached = [p.read_text(encoding="utf-8") for p in built["sections"]]
    assert [s.strip() for s in pdf.study_sections(html)] == [c.strip() for c in cached]


def test_parts_in_the_wrong_order_are_refused_in_one_line(built, tmp_path, capsys):
    root = built["root"]
    parts = [str(p.with_suffix(".pdf")) for p in reversed(built["sections"])]
    rc = cli.main(["report-pdf", "--html", str(root / "report.html"), "--parts", *parts,
                   "--pdf", str(tmp_path / "x.pdf")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "dropout.pdf: not the part of #study-adam" in err and "\n" not in err
    assert not (tmp_path / "x.pdf").exists()


# --- the workflow: one study changed, one part printed again ------------------------------


@pytest.mark.slow
def test_a_one_study_change_prints_only_its_part_again(tmp_path):
    from test_workflow import copy_workflow, snakemake, write_config

    cwd = copy_workflow(tmp_path)
    done = snakemake(cwd, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    parts = {p.stem: p.stat().st_mtime_ns for p in (cwd / "results" / "report").glob("*.pdf")}
    raw = yaml.safe_load((cwd / "config" / "smoke.yaml").read_text())
    assert set(parts) == {s["name"] for s in raw["studies"]}
    merged_before = (cwd / "reports" / "report.pdf").stat().st_mtime_ns
    next(s for s in raw["studies"] if s["name"] == "learning_rate")["grid"]["optimizer.lr"] = [
        0.01, 100.0]
    done = snakemake(cwd, "--cores", "2", "--configfile", write_config(cwd, "changed.yaml", raw))
    assert done.returncode == 0, done.stderr[-3000:]
    after = {p.stem: p.stat().st_mtime_ns for p in (cwd / "results" / "report").glob("*.pdf")}
    changed = {name for name in parts if after[name] != parts[name]}
    assert "learning_rate" in changed
    # Studies without landscapes whose runs did not change keep their cached parts.
    assert not changed & {"regularization", "random_search", "precision"}, changed
    assert (cwd / "reports" / "report.pdf").stat().st_mtime_ns != merged_before
    merged = PdfReader(cwd / "reports" / "report.pdf")
    titles = [i.title for i in merged.outline if not isinstance(i, list)]
    assert all(s["title"] in titles for s in raw["studies"])


def test_fontconfigs_charsets_agree_with_scanning_every_font():
    from nnopt.report import glyphs

    fast = glyphs._fontconfig_codepoints()
    if fast is None:
        pytest.skip("no fc-list here: the report scans the fonts itself")
    assert fast == glyphs._scanned_codepoints()  # the font scan is the slow reference


def test_a_contents_longer_than_a_page_moves_every_number_by_its_own_length():
    n = 90  # entries: the contents take two pages
    items = "".join(f'<li><a href="#study-s{i}">Study s{i}</a></li>' for i in range(n))
    title = f'<section class="title-page"><nav class="toc"><ol>{items}</ol></nav></section>'
    rest = [pdf._Part(b"", 2, {f"study-s{i}": (0, 0.0, 0.0)}) for i in range(n)]
    part = pdf._title_part(title, "t", rest)
    assert part.pages == 2
    text = " ".join(_text(p) for p in PdfReader(io.BytesIO(part.pdf)).pages)
    for i in (0, 1, n - 1):  # after the 2 title pages, 2 pages a study
        assert re.search(rf"Study s{i} [. ]+ {3 + 2 * i}\b", text), i
