"""Configuration: what a run and a study are, and every check of them (no torch, no IO
beyond reading the config and its data files' headers).

Owns the typed, frozen `RunSpec` and its one-line `SpecError`s (`spec`; the field checks in
`fields`, the rules spanning fields in `consistency`), study expansion into runs (`studies`;
the factor lists and configurations in `factors`), the strict YAML loader and the checks
that run before any job (`check`, `check_io`), the metric list and each metric's direction
and unit (`metrics`), and the loss-landscape settings (`landscape_settings`). Imports no
other nnopt layer.
"""
