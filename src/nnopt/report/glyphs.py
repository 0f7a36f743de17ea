"""What reaches the reader is visible: control characters as text, missing glyphs as a label.

Titles, descriptions and factor values come from the user's config. `visible_controls`
replaces the characters that would act instead of show (NUL, ESC, other C0/C1 controls, and
the bidi controls such as U+202E RIGHT-TO-LEFT OVERRIDE that reorder the text around them)
by their escape as text (`\\x1b`, `\\u202e`), in the whole rendered HTML (inline SVG included).
`pdf_placeholders` replaces, for the PDF only, each character that no installed font can draw
(CJK without a CJK font, say) by `[U+4E2D]`: WeasyPrint would draw an empty box. The HTML
keeps the characters: a browser brings its own fonts. Installing fonts-noto-cjk and
fonts-noto-color-emoji (README, Report) makes them render in the PDF too.
"""

from __future__ import annotations

import functools
import re

__all__ = ["visible_controls", "pdf_placeholders", "covered_codepoints"]

# C0 controls but tab/newline/carriage return, DEL, C1 controls; bidi embeddings, overrides
# and isolates, the marks LRM/RLM/ALM, zero-width joiners/spaces and the BOM.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible_controls(text: str) -> str:
    """`text` with every control/bidi character written as its escape (visible text)."""
    return _CONTROLS.sub(_escape, text)


@functools.lru_cache(maxsize=1)
def covered_codepoints() -> frozenset[int]:
    """Code points some installed font has a glyph for: fontconfig's list when there is one
    (what Pango, WeasyPrint's text engine, falls back through), else every system font's
    cmap (matplotlib's font list)."""
    return _fontconfig_codepoints() or _scanned_codepoints()


def _fontconfig_codepoints() -> frozenset[int] | None:
    """The union of the fonts' charsets from fontconfig's cache (`fc-list`, hex ranges such
    as '20-7e a0-17f 192'): milliseconds, where opening every font file takes ~1 s of each
    PDF job. None without fc-list or on output it cannot read."""
    import shutil
    import subprocess

    exe = shutil.which("fc-list")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--format", "%{charset}\n"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        covered: set[int] = set()
        for token in out.split():
            low, _, high = token.partition("-")
            covered.update(range(int(low, 16), int(high or low, 16) + 1))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return frozenset(covered) or None


def _scanned_codepoints() -> frozenset[int]:
    from fontTools.ttLib import TTFont  # a WeasyPrint dependency
    from matplotlib import font_manager

    covered: set[int] = set()
    for path in font_manager.findSystemFonts():
        try:
            with TTFont(path, lazy=True, fontNumber=0) as font:
                covered.update(font.getBestCmap() or {})
        except Exception:  # a broken or unsupported font file covers nothing
            continue
    return frozenset(covered)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def pdf_placeholders(html: str, covered: frozenset[int] | None = None) -> str:
    """`html` with each non-ASCII character no installed font draws replaced by `[U+XXXX]`."""
    have = covered_codepoints() if covered is None else covered
    if not have:  # no font list at all (no fontconfig): leave the text to the renderer
        return html

    def placeholder(match: re.Match) -> str:
        code = ord(match.group())
        return match.group() if code in have or 0xFE00 <= code <= 0xFE0F else f"[U+{code:04X}]"

    return _NON_ASCII.sub(placeholder, html)
