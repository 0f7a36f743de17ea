"""Drawing helpers of the report's figures: one style, one palette, compact inline SVG.

Text stays text in the SVG (svg.fonttype none) to keep files small; `to_svg` makes a
figure's ids unique so several SVGs can share one HTML document; `styled` builds a figure
inside the style (titles and legends read rcParams when created, not when saved).
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import re

import numpy as np

__all__ = [
    "STYLE", "colours", "log_if_decades", "new_figure", "palette", "pyplot", "styled",
    "tex_safe", "to_svg",
]  # and COLOURS (colours(), read on first use)

STYLE = {
    "svg.fonttype": "none", "svg.hashsalt": "nnopt", "font.size": 8, "axes.titlesize": 9,
    "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 72,
    "font.family": "DejaVu Sans",
}


@functools.lru_cache(maxsize=1)
def pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported when a figure is first
    drawn: the report's assembly draws none unless a claim has a forest plot, and the import
    is a large part of a short job's start-up."""
    import matplotlib

    matplotlib.use("Agg")  # must precede pyplot
    import matplotlib.pyplot as plt

    return plt


@functools.lru_cache(maxsize=1)
def colours() -> tuple:
    plt = pyplot()
    return plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors


def __getattr__(name: str):
    if name == "COLOURS":  # the old constant, now read on first use
        return colours()
    raise AttributeError(name)


def palette(labels) -> dict[str, tuple]:
    return {label: c for label, c in zip(labels, itertools.cycle(colours()))}


def tex_safe(text: str) -> str:
    """Matplotlib parses $...$ as math; config values are data, so escape the dollars."""
    return str(text).replace("$", r"\$")


_DECIMALS = re.compile(r"(\.\d{2})\d+")


def _short_numbers(match: re.Match) -> str:
    return _DECIMALS.sub(r"\1", match.group(0))


def to_svg(fig, *, style: dict | None = None, id_letter: str = "f", compact: bool = True) -> str:
    """The figure as inline SVG markup with ids made unique to this figure. `style` is the
    rc style at save time (default STYLE); `compact` drops metadata and group ids and rounds
    coordinates to 0.01 pt; `id_letter` starts the id prefix (the landscape uses its own)."""
    buf = io.StringIO()
    plt = pyplot()
    with plt.rc_context(STYLE if style is None else style):  # svg.fonttype, hashsalt: save time
        # No date: stable output. Tight box: outside legends are never clipped.
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    if compact:
        text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
        text = re.sub(r'<g id="[^"]*"', "<g", text)  # group ids are never referenced
        # Coordinates to 0.01 pt (path data and x/y only: labels such as 0.0001 stay intact).
        text = re.sub(r' (?:d|x|y|width|height)="[^"]*"', _short_numbers, text)
        text = re.sub(r"\s*\n\s*", " ", text)
    prefix = id_letter + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    # Several SVGs share one HTML document: matplotlib's ids (clip paths) must not collide.
    text = re.sub(r'id="([^"]+)"', rf'id="{prefix}\1"', text)
    return text.replace("url(#", f"url(#{prefix}").replace('href="#', f'href="#{prefix}')


def new_figure(width: float = 6.3, height: float = 2.6, ncols: int = 1):
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def styled(fn):
    """Build the figure inside the report's style: titles, axis labels, legends and colour bars
    read rcParams when they are created, so a style applied only at save time (to_svg) would
    reach the tick labels alone and leave titles and legends at matplotlib's larger defaults."""
    @functools.wraps(fn)
    def styled(*args, **kwargs):
        with pyplot().rc_context(STYLE):
            return fn(*args, **kwargs)
    return styled


def log_if_decades(ax, values, axis: str = "y") -> None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0])
    if len(v) and v.max() / v.min() > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
