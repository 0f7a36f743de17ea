"""The PDF report, printed in parts and merged: a change to one study re-prints its part only.

WeasyPrint lays a document out in one pass, most of the report's time (~0.4 s a page), so the
PDF is not printed from the whole HTML. Each study's section is printed alone, from its cached
fragment, into a part (`write_part`: results/report/{study}.pdf, a Snakemake output of its
own). `merge_report` prints the rest of reports/report.html (the title page, the summary,
setup and claims, the methods), which it cuts at the `<!-- pdf-part: NAME -->` comments of
report.html.j2, and concatenates title, front, study parts and back with pypdf.

Numbers that depend on other parts are put in after the parts exist, never guessed:
* the page footers ("Page 3 of 112") are stamped on the merged pages: the parts print without
  them, and one document of blank pages carrying only the footers, laid out with the same CSS
  (so the same font and place), is overlaid page by page;
* the contents' page numbers come from where each anchor landed in its part plus the pages
  before that part; the title page is printed last, with those numbers, and again in the rare
  case that its own page count is not the one assumed;
* links from one part to another (the contents, the claims' and setup's study links) are
  WeasyPrint's link boxes re-added as link annotations to the target's page and place.
Every part keeps WeasyPrint's bookmarks (h1-h6), so the merged outline names every study.
Nothing is fetched: every document goes through the refusing URL fetcher.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from markupsafe import Markup

from nnopt.config.spec import SpecError
from nnopt.report.glyphs import pdf_placeholders, visible_controls
from nnopt.store.atomic import write_bytes_atomic

__all__ = ["printable", "write_pdf", "write_pdf_from", "write_part",
           "write_part_from", "merge_report", "merge_report_from", "write_report", "report_pieces",
           "study_sections", "read_html", "PIECES"]

TEMPLATES = Path(__file__).parent / "templates"
# The pieces report.html.j2 marks, in document order ("studies" holds every study section).
PIECES = ("title", "front", "studies", "back", "end")
_MARKER = re.compile(r"<!-- pdf-part: (\w+) -->")
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_STUDY_ANCHOR = re.compile(r'<section id="(study-[A-Za-z0-9_-]+)" class="section study">')
_PX_TO_PT = 0.75  # WeasyPrint lays out in CSS px (1/96 in); PDF user space is in pt (1/72 in)

# Parts print without page numbers: the merged file gets them stamped (`_stamp_pages`).
_PART_CSS = "@page { @bottom-center { content: none; } }\n"
# A part after the title page: its first page carries the running headers like any other.
_CONTINUED_CSS = ('@page :first { @top-left { content: "nnopt report"; }'
                  " @top-right { content: string(section); } }\n")
# The footer alone, on blank pages; page 1 (the title page) keeps none, as report.css says.
_STAMP_BODY = '<div style="break-after: page"></div>'


class _Fetcher:  # WeasyPrint is imported when a PDF is printed, not when the report loads
    cls = None


def _refusing_fetcher_class():
    if _Fetcher.cls is None:
        from weasyprint.urls import URLFetcher

        class RefusingFetcher(URLFetcher):
            """A WeasyPrint URL fetcher that fetches nothing: the report is self-contained, so
            any request (http, https, file, ...) comes from data; it is refused and recorded.
            Only `data:` URLs (bytes already inside the document) are decoded."""

            def __init__(self):
                super().__init__(allowed_protocols=("data",), allow_redirects=False)
                self.refused: list[str] = []

            def fetch(self, url: str, headers=None):
                if url.startswith("data:"):
                    return super().fetch(url, headers)
                self.refused.append(url)
                raise ValueError(f"nnopt report: refused to fetch {url!r} (report is "
                                 "self-contained)")

        _Fetcher.cls = RefusingFetcher
    return _Fetcher.cls


def __getattr__(name: str):
    if name == "RefusingFetcher":  # the class, built on first use (it subclasses WeasyPrint's)
        return _refusing_fetcher_class()
    raise AttributeError(name)


# Our own script elements (the program and the studies' JSON, escaped so that neither holds
# '</script'): WeasyPrint runs no script, so the PDF is laid out without them (less to parse).
_SCRIPTS = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)


def printable(html: str) -> str:
    """The HTML as WeasyPrint gets it: without script elements (print CSS hides the rest)."""
    return _SCRIPTS.sub("", html)


def _layout(html: str, fetcher=None):
    """WeasyPrint's laid-out document of `html` (scripts dropped, missing glyphs labelled)."""
    from weasyprint import HTML

    # WeasyPrint logs every refused fetch and every link to another part as a warning.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    fetcher = fetcher or _refusing_fetcher_class()()
    return HTML(string=pdf_placeholders(printable(html)), base_url=None,
                url_fetcher=fetcher).render()


def write_pdf(html: str, path: str | Path):
    """The PDF of one whole HTML document, laid out in one pass (the reference the merged
    report is checked against; small documents). Returns the fetcher (what was refused)."""
    fetcher = _refusing_fetcher_class()()
    document = _layout(html, fetcher)
    write_bytes_atomic(path, document.write_pdf())
    return fetcher


def write_pdf_from(html_path: str | Path, pdf_path: str | Path):
    """The PDF of a written HTML document, in one pass (`nnopt report-pdf --html` alone)."""
    return write_pdf(read_html(html_path), pdf_path)


def read_html(path: str | Path) -> str:
    """A written HTML report (one clear line when it is missing)."""
    return _read(path, "run `nnopt report` first")


def _read(path: str | Path, hint: str) -> str:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: missing; {hint}")
    return path.read_text(encoding="utf-8")


# --- parts -------------------------------------------------------------------------------


def _part_document(body: str, css: str, title: str = "") -> str:
    """A standalone document of one part: the report's CSS, then `css` (the part's overrides),
    then `body` (already rendered, escaped HTML)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True))
    return visible_controls(env.get_template("part.html.j2").render(
        title=Markup(title), css=Markup((TEMPLATES / "report.css").read_text() + css),
        body=Markup(body)))


def write_part(section_html: str, path: str | Path) -> int:
    """Print one study's section (the fragment `nnopt report-section` wrote) as a PDF part of
    the report; returns its page count."""
    document = _layout(_part_document(section_html, _PART_CSS + _CONTINUED_CSS))
    write_bytes_atomic(path, document.write_pdf())
    return len(document.pages)


def write_part_from(section_path: str | Path, pdf_path: str | Path) -> int:
    return write_part(_read(section_path, "run `nnopt report-section` first"), pdf_path)


def report_pieces(html: str) -> dict[str, str]:
    """The report's HTML cut at its `<!-- pdf-part: NAME -->` comments: {name: text up to the
    next marker}, plus "head" (everything before the first)."""
    cuts = list(_MARKER.finditer(html))
    names = [m.group(1) for m in cuts]
    if names != list(PIECES):
        raise SpecError(f"report HTML: PDF part markers {names}, expected {list(PIECES)}; "
                        "render it again with `nnopt report`")
    pieces = {"head": html[:cuts[0].start()]}
    for m, nxt in zip(cuts, cuts[1:] + [None]):
        pieces[m.group(1)] = html[m.end():nxt.start() if nxt else len(html)]
    return pieces


# --- merging -----------------------------------------------------------------------------


@dataclass
class _Part:
    """One part of the merged PDF: its bytes, page count, where its anchors are (0-based page,
    x and y in pt from the page's top left), its links to anchors of other parts and, once
    parsed, its pypdf reader (parsing is most of merging: a part is parsed once)."""
    pdf: bytes
    pages: int
    anchors: dict[str, tuple[int, float, float]]
    links: list[tuple[int, str, tuple[float, float, float, float]]] = field(default_factory=list)
    reader: Any = None

    def read(self):
        if self.reader is None:
            from pypdf import PdfReader

            self.reader = PdfReader(io.BytesIO(self.pdf))
        return self.reader


def _printed(document) -> _Part:
    """A laid-out WeasyPrint document as a part (its anchors and outgoing links read off)."""
    anchors = {}
    for i, page in enumerate(document.pages):
        for name, (x, y, *_) in page.anchors.items():
            anchors.setdefault(name, (i, x * _PX_TO_PT, y * _PX_TO_PT))
    links = [(i, target, tuple(v * _PX_TO_PT for v in rect))
             for i, page in enumerate(document.pages)
             for kind, target, rect, _ in page.links
             if kind == "internal" and target not in anchors]
    return _Part(document.write_pdf(), len(document.pages), anchors, links)


def _read_part(path: str | Path) -> _Part:
    """A study part written by `write_part`, its anchors from the PDF's named destinations."""
    from pypdf import PdfReader

    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: missing; run `nnopt report-pdf --section` first")
    data = path.read_bytes()
    reader = PdfReader(io.BytesIO(data))
    anchors = {}
    for name, dest in reader.named_destinations.items():
        page = reader.get_destination_page_number(dest)
        height = float(reader.pages[page].mediabox.height)
        anchors[str(name)] = (page, float(dest.left or 0), height - float(dest.top or height))
    return _Part(data, len(reader.pages), anchors, reader=reader)


def _toc_css(pages: dict[str, int]) -> str:
    """The contents' page numbers as literal CSS content (anchors are [A-Za-z0-9_-] names)."""
    return "".join(f'.toc a[href="#{a}"]::after {{ content: leader(".") " {n}"; }}\n'
                   for a, n in pages.items())


def _anchor_pages(parts: Sequence[_Part], first_page: int = 1) -> dict[str, int]:
    """Each anchor's page number in the merged file (1-based, as the footers count) when
    `parts` follow `first_page - 1` pages; the first part holding an anchor wins."""
    pages, start = {}, first_page
    for part in parts:
        for anchor, (page, _, _) in part.anchors.items():
            pages.setdefault(anchor, start + page)
        start += part.pages
    return pages


def _title_part(title_html: str, title: str, rest: Sequence[_Part]) -> _Part:
    """The title page with the contents' page numbers; printed again when it turns out longer
    than assumed (a contents list longer than a page), which moves every later page."""
    linked = set(re.findall(r'href="#([A-Za-z0-9_-]+)"', title_html))
    assumed = 1
    for _ in range(4):
        pages = _anchor_pages(rest, first_page=assumed + 1)
        css = _PART_CSS + _toc_css({a: n for a, n in pages.items() if a in linked})
        part = _printed(_layout(_part_document(title_html, css, title)))
        if part.pages == assumed:
            return part
        assumed = part.pages
    raise RuntimeError("nnopt report: the title page's page count does not settle")


def _link_parts(writer, parts: Sequence[_Part]) -> int:
    """Re-add each link from one part to another as a link annotation to the target's page
    and place in the merged file; returns how many."""
    from pypdf.annotations import Link
    from pypdf.generic import Fit

    starts = [sum(p.pages for p in parts[:i]) for i in range(len(parts))]
    where = {}
    for part, start in zip(parts, starts):
        for anchor, (page, x, y) in part.anchors.items():
            where.setdefault(anchor, (start + page, x, y))
    added = 0
    for part, start in zip(parts, starts):
        for page, target, (x1, y1, x2, y2) in part.links:
            if target not in where:
                continue  # no such anchor anywhere: WeasyPrint drops such a link too
            to_page, x, y = where[target]
            height = float(writer.pages[start + page].mediabox.height)
            to_height = float(writer.pages[to_page].mediabox.height)
            writer.add_annotation(start + page, Link(
                rect=(x1, height - y2, x2, height - y1), border=[0, 0, 0],
                target_page_index=to_page, fit=Fit.xyz(left=x, top=to_height - y, zoom=0)))
            added += 1
    return added


def _stamp_pages(writer) -> None:
    """Overlay the footers ("Page N of M", report.css's @bottom-center) on pages 2..M: a
    document of M blank pages that carry only the footer, in the same CSS, page on page."""
    from pypdf import PdfReader

    total = len(writer.pages)
    css = "@page { @top-left { content: none; } @top-right { content: none; } }\n"
    stamp = _layout(_part_document(_STAMP_BODY * (total - 1) + "<div></div>", css))
    if len(stamp.pages) != total:
        raise RuntimeError(f"nnopt report: {len(stamp.pages)} footer pages for {total} pages")
    footers = PdfReader(io.BytesIO(stamp.write_pdf()))
    for page, footer in zip(writer.pages[1:], footers.pages[1:]):
        page.merge_page(footer)
        page.compress_content_streams()  # merging decodes the page's content: deflate it again


def merge_report(html: str, parts: Sequence[str | Path], pdf_path: str | Path) -> int:
    """reports/report.pdf from the report's HTML and its studies' parts (`write_part`), in
    the order the HTML has its studies; returns the page count."""
    from pypdf import PdfWriter

    pieces = report_pieces(html)
    anchors = _STUDY_ANCHOR.findall(pieces["studies"])
    if len(anchors) != len(parts):
        raise SpecError(f"report PDF: {len(parts)} study parts for the {len(anchors)} studies "
                        "of the HTML report")
    title = (_TITLE.findall(pieces["head"]) or [""])[0]
    studies = [_read_part(p) for p in parts]
    for anchor, path, part in zip(anchors, parts, studies):
        if anchor not in part.anchors:
            raise SpecError(f"{path}: not the part of #{anchor} (the report's study in this "
                            "place); run `nnopt report-pdf --section` on its section")
    css = _PART_CSS + _CONTINUED_CSS
    front, back = (_printed(_layout(_part_document(pieces[k], css, title)))
                   for k in ("front", "back"))
    rest = [front, *studies, back]
    ordered = [_title_part(pieces["title"], title, rest), *rest]
    writer = PdfWriter()
    for part in ordered:
        writer.append(part.read(), import_outline=True)
    _link_parts(writer, ordered)
    _stamp_pages(writer)
    writer.compress_identical_objects()  # the parts' shared objects once (fonts, images)
    writer.add_metadata({"/Title": Markup(title).unescape(), "/Creator": "nnopt"})
    out = io.BytesIO()
    writer.write(out)
    write_bytes_atomic(pdf_path, out.getvalue())
    return len(writer.pages)


def study_sections(html: str) -> list[str]:
    """The study sections of the report's HTML, in order (each up to the next one)."""
    studies = report_pieces(html)["studies"]
    starts = [m.start() for m in _STUDY_ANCHOR.finditer(studies)] + [len(studies)]
    return [studies[a:b] for a, b in zip(starts, starts[1:])]


def write_report(html: str, pdf_path: str | Path) -> int:
    """The merged PDF of a report rendered in this process: its study parts printed here (in
    a temporary folder), then merged as the workflow merges its cached parts."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nnopt-pdf-parts-") as tmp:
        parts = [Path(tmp) / f"{i}.pdf" for i, _ in enumerate(study_sections(html))]
        for section, path in zip(study_sections(html), parts):
            write_part(section, path)
        return merge_report(html, parts, pdf_path)


def merge_report_from(html_path: str | Path, parts: Sequence[str | Path],
                      pdf_path: str | Path) -> int:
    return merge_report(read_html(html_path), parts, pdf_path)
