"""The landscape figures' look: a small rc style, a constrained-layout figure, inline SVG
through the report's one SVG writer (nnopt.report.plotting.to_svg, left uncompacted here).
matplotlib is imported on first use: the landscape job imports this package too."""

from __future__ import annotations

__all__ = ["STYLE", "figure", "svg"]

# Text stays text (small files); same look as the report's other figures.
STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "nnopt",
    "font.size": 8,
    "font.family": "DejaVu Sans",
}


def figure(width_in: float, height_in: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width_in, height_in), layout="constrained")


def svg(fig) -> str:
    """Inline <svg> markup whose ids are unique to this figure (prefix 'l')."""
    from nnopt.report.plotting import to_svg

    return to_svg(fig, style=STYLE, id_letter="l", compact=False)
