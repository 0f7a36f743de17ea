"""Reporting: result tables -> the HTML and PDF report (no torch).

Owns the figures (`figures`, `study_figures`; `plotting`: matplotlib to inline SVG) and the page itself (`build`: context,
jinja2 template; `pdf`: the PDF printed per study with WeasyPrint and merged with pypdf). Per-study sections from other layers (the loss landscape)
are passed in as `SectionFn`s; this package imports none of them. Imports
`nnopt.analysis`, `nnopt.store` and `nnopt.config`.
"""
