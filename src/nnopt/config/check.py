"""Pre-flight checks: everything that can be validated before a job starts.

`check_config_file` / `check_spec_file` (the `nnopt check` verb) read the file with a strict safe YAML
loader (no tags that build Python objects, no duplicate keys), parse it with
`nnopt.config.studies.parse_config` / `nnopt.config.spec.parse_spec`, then check what parsing cannot see:
the data files themselves (readable, numeric, finite, valid labels), the devices a spec asks
for, and the study fields the report uses (metric names, baseline values). The first problem
is printed as one line, `error: <file>: <key path>: <what is wrong>; allowed: ...`, and the
exit code is 2; nothing is trained. No torch import unless a spec asks for CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnopt.config.check_fit import check_fit
from nnopt.config.check_io import check_data, check_device, check_table, check_writable
from nnopt.config.metrics import METRIC_NAMES
from nnopt.config.spec import RunSpec, SpecError, did_you_mean, merge, parse_spec
from nnopt.config.studies import Config, Study, parse_config
from nnopt.config.yaml_strict import read_yaml

__all__ = [
    "read_yaml",
    "check_spec",
    "check_config",
    "check_spec_file",
    "check_config_file",
    "check_config_files",
    "check_workflow_config",
    "merged_config",
    "StudySet",
    "study_set",
    "file_root",
    "SHIPPED_CONFIG",
    "check_data",
    "check_table",
    "check_device",
    "check_writable",
]

# YTE (Snakemake's config loader) evaluates `?expr` values when this key is true.
_CODE_KEYS = ("__use_yte__",)
def _from_root(data: Any, root: Path | None) -> Any:
    """`data` with a relative path taken against `root`, shown as seen from the working
    directory (the file the check opens is the one the jobs will read)."""
    if root is None or data.path is None or Path(data.path).is_absolute():
        return data
    return replace(data, path=os.path.relpath(Path(root, data.path)))


def _check_resources(
    specs: Sequence[RunSpec], devices: bool, file_root: Path | None = None
) -> None:
    counts = {
        data: check_data(_from_root(data, file_root))
        for data in dict.fromkeys(s.data for s in specs)
    }
    if devices:
        for device in dict.fromkeys(s.device for s in specs):
            check_device(device)
    for spec in specs:  # arithmetic only: split sizes, last batch, warm-up vs budget
        check_fit(spec, counts[spec.data])


def check_spec(raw: Any, *, devices: bool = True, code_root: Path | None = None) -> RunSpec:
    """Parse a run spec mapping and check its data and device; SpecError on the first problem.

    Plug-in modules (model.factory, data.loader, optimizer.factory) are looked up in
    `code_root` (the spec file's folder) before the environment."""
    if raw is None:
        raise SpecError("spec: empty file; allowed: a mapping of sections (data, model, ...)")
    spec = parse_spec(raw, code_root=code_root)
    _check_resources([spec], devices)
    return spec


def _check_search_budget(study: Study, cap: int) -> None:
    """A tuned study's search trains trials x tuning seeds + confirmation seeds per
    configuration; past max_runs_per_study it is refused like a grid of that size."""
    tune = study.tune
    labels = dict.fromkeys(r.config for r in study.runs)
    total = sum(tune.trials_for(label) * len(tune.seeds) + len(tune.confirm_seeds)
                for label in labels)  # fmt: skip
    if total > cap:
        raise SpecError(
            f"studies.{study.name}.tune: the search trains {total} runs ({len(labels)} "
            f"configurations x (trials x {len(tune.seeds)} tuning seeds + "
            f"{len(tune.confirm_seeds)} confirmation seeds)), more than max_runs_per_study "
            f"({cap}); allowed: fewer trials or seeds, or raise max_runs_per_study"
        )


def _check_study(study: Study) -> None:
    path = f"studies.{study.name}"
    twice = [m for i, m in enumerate(study.metrics) if m in study.metrics[:i]]
    if twice:
        raise SpecError(f"{path}.metrics: {twice[0]!r} is listed twice; allowed: each metric once")
    for metric in study.metrics:
        if metric not in METRIC_NAMES:
            raise SpecError(
                f"{path}.metrics: unknown metric {metric!r}; allowed: a metric of docs/contract.md "
                f"§2 ({', '.join(METRIC_NAMES[:8])}, ... {len(METRIC_NAMES)} in all)"
                + did_you_mean(metric, METRIC_NAMES)
            )
    for metric in study.columns:
        if metric not in study.metrics:
            raise SpecError(
                f"{path}.columns.{metric}: not one of this study's metrics; allowed: "
                + ", ".join(study.metrics) + did_you_mean(metric, study.metrics)
            )
    values = {**study.grid, **study.zip}
    for key, value in study.baseline.items():
        if key in values and value not in values[key]:
            allowed = ", ".join(map(str, values[key]))
            raise SpecError(
                f"{path}.baseline.{key}: {value!r} is not one of the study's values; "
                f"allowed: {allowed}" + did_you_mean(value, values[key])
            )


def _check_names(config: Config) -> None:
    """Study names become folder names: two that differ only by case collide on macOS."""
    seen: dict[str, str] = {}
    for study in config.studies:
        other = seen.setdefault(study.name.lower(), study.name)
        if other != study.name:
            raise SpecError(
                f"studies.{study.name}: differs from study '{other}' only by letter case; "
                "their result folders would collide on case-insensitive file systems"
            )


def check_config(raw: Any, *, devices: bool = True, file_root: Path | None = None) -> Config:
    """Parse a study config and check every study, dataset and device; SpecError on a problem.

    `file_root` (the config file's folder) resolves relative data paths and plug-in modules;
    None: the working directory."""
    if isinstance(raw, Mapping):
        for key in _CODE_KEYS:
            if key in raw:
                raise SpecError(
                    f"{key}: refused; it makes Snakemake's config loader run values as Python "
                    "code, and nnopt configs are plain data"
                )
    config = parse_config(raw, file_root=file_root)
    _check_names(config)
    for study in config.studies:
        _check_study(study)
        if study.tune is not None:
            _check_search_budget(study, config.max_runs_per_study)
    _check_resources([r.spec for r in config.runs], devices, file_root)
    return config


def _in_file(path: Path, check: Any, **kwargs: Any) -> Any:
    raw = read_yaml(path)
    try:
        return check(raw, **kwargs)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


def check_config_files(paths: Sequence[str | Path]) -> None:
    """Re-read config files strictly (the workflow's own loader is lenient).

    Snakemake reads `--configfile` with YAML's FullLoader and YTE: duplicate keys silently
    keep the last value and `__use_yte__: true` runs `?expr` values as Python. This finds
    both (and alias bombs) in each file, naming it, so the workflow stops before any job.
    """
    for path in paths:
        raw = read_yaml(path)
        for key in _CODE_KEYS:
            if isinstance(raw, Mapping) and key in raw:
                raise SpecError(
                    f"{path}: {key}: refused; it makes Snakemake's config loader run values "
                    "as Python code, and nnopt configs are plain data"
                )


def check_spec_file(path: str | Path, *, devices: bool = True) -> RunSpec:
    """`check_spec` of a YAML/JSON file; errors start with the file name."""
    path = Path(path)
    return _in_file(path, check_spec, devices=devices, code_root=path.parent.resolve())


def check_config_file(path: str | Path, *, devices: bool = True) -> Config:
    """`check_config` of a YAML/JSON file, its relative paths taken against its `file_root`;
    errors start with the file name."""
    return _in_file(Path(path), check_config, devices=devices, file_root=file_root(path))


SHIPPED_CONFIG = Path("config/config.yaml")  # the Snakefile's `configfile:`
# Top-level keys holding a path, resolved against the folder of the file that sets them.
_PATH_KEYS = ("claims", "output")


def file_root(path: str | Path, shipped: str | Path = SHIPPED_CONFIG) -> Path:
    """The folder a config file's relative paths resolve against: its own folder, except
    for the files in the workflow's config/ folder (the shipped ones, config/smoke.yaml),
    whose paths have always been relative to the repository root."""
    folder = Path(path).resolve().parent
    shipped_folder = Path(shipped).resolve().parent
    return shipped_folder.parent if folder == shipped_folder else folder


def _resolve_paths(path: Path, raw: dict[str, Any], shipped: Path) -> dict[str, Any]:
    """`claims:` and `output:` as absolute paths, relative ones taken against `path`'s root
    (so a merged config still means the file each layer meant). `claims: null` stays None."""
    for key in _PATH_KEYS:
        if key not in raw or (key == "claims" and raw[key] is None):
            continue
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            what = "a path to a claims file or null (no claims)" if key == "claims" else (
                "a folder path (results/, reports/ and logs/ go there)")
            raise SpecError(f"{path}: {key}: expected {what}, got {value!r}")
        if "\0" in value:
            raise SpecError(f"{path}: {key}: a path cannot hold a NUL byte, got {value!r}")
        raw[key] = str((file_root(path, shipped) / value).resolve())
    if "output" in raw:
        _check_output_folder(path, Path(raw["output"]))
    return raw


def _check_output_folder(path: Path, output: Path) -> None:
    """`output:` is a folder that exists or can be made, writable: else the workflow would
    stop in `workdir:` or at the folder lock with a traceback. Creates nothing (a check)."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "a file" if existing.is_file() else "not a folder (a device, socket or pipe)"
        raise SpecError(f"{path}: output: {existing} is {what}; allowed: a folder path "
                        "(results/, reports/ and logs/ go there)")  # fmt: skip
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"{path}: output: cannot write to {existing} (permission denied or "
                        "read-only); allowed: a folder you can write to")  # fmt: skip


def _read_mapping(path: str | Path, shipped: Path = SHIPPED_CONFIG) -> dict[str, Any]:
    raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        what = "empty file" if raw is None else "not a mapping"
        raise SpecError(f"{path}: config: expected a mapping with 'studies' ({what})")
    inherit = raw.get("inherit")
    if inherit not in (None, "shipped"):
        raise SpecError(
            f"{path}: inherit: {inherit!r} is not allowed; allowed: shipped (merge this file "
            f"over {SHIPPED_CONFIG}) or leave it out (this file is the whole config)"
        )
    return _resolve_paths(Path(path), dict(raw), shipped)


def _split(paths: Sequence[str | Path], shipped: Path) -> tuple[list, list]:
    """(the shipped config among `paths`, the user's own files), order kept."""
    mine = [p for p in paths if Path(p).resolve() == shipped.resolve()]
    return mine, [p for p in paths if p not in mine]


def merged_config(
    paths: Sequence[str | Path], *, shipped: str | Path = SHIPPED_CONFIG
) -> dict[str, Any]:
    """The config the workflow runs for `snakemake [--configfile F ...]`, from the files alone
    (each read strictly). The workflow and `nnopt check --config` both call this.

    The shipped config (`shipped`, default config/config.yaml) alone when no other file is
    given. Otherwise the other files, merged in order as Snakemake merges them (mappings key
    by key, anything else replaces), and over the shipped config only when one of them says
    `inherit: shipped`: a study set of your own never silently runs or inherits the shipped
    studies. `claims:` and `output:` come back absolute, resolved against the `file_root`
    of the file that set them.
    """
    shipped = Path(shipped)
    check_config_files(paths)
    found, own = _split(paths, shipped)
    if not own:
        return _read_mapping(found[0], shipped) if found else {}
    layers = [_read_mapping(p, shipped) for p in own]
    merged: dict[str, Any] = {}
    if any(layer.get("inherit") == "shipped" for layer in layers):
        merged = _read_mapping(shipped, shipped)
    for layer in layers:
        merged = merge(merged, layer)  # Snakemake's --configfile merge: mappings key by key
    merged.pop("inherit", None)
    return merged


@dataclass(frozen=True)
class StudySet:
    """What `snakemake --configfile ...` runs, and where.

    root: the `file_root` of the config file (the last own file's; the shipped file's when
      alone): relative data paths and plug-in modules resolve against it.
    output: the folder that receives results/, reports/ and logs/ (the workflow's working
      directory): `output:` when set, else `root` (so a study set of its own writes beside
      its config, never over the shipped report).
    claims: the claims file, or None (the report then has no claims section).
    """

    config: Config
    root: Path
    output: Path
    claims: Path | None


def _refuse_relative_data(config: Config, root: Path, output: Path) -> None:
    """Jobs run in `output`; a relative data path only means the same file there when
    `output` is the config's own folder."""
    if output == root:
        return
    for run in config.runs:
        path = run.spec.data.path
        if path is not None and not Path(path).is_absolute():
            raise SpecError(
                f"studies.{run.study}: data.path: {path!r} is relative, but output: {output} is "
                f"not the config's folder {root}; allowed: an absolute data.path, or no output: "
                "key (results beside the config)"
            )


def study_set(
    paths: Sequence[str | Path],
    *,
    shipped: str | Path = SHIPPED_CONFIG,
    devices: bool = True,
    name_file: bool = False,
) -> StudySet:
    """The merged config of `paths` checked (as `check_workflow_config`), with its folders.
    `name_file`: a config error starts with the (last own) file's name, as `nnopt check`
    prints it; errors of reading a file always do."""
    found, own = _split(paths, Path(shipped))
    last = own[-1] if own else (found[0] if found else shipped)
    root = file_root(last, shipped)
    raw = merged_config(paths, shipped=shipped)
    output = Path(raw.get("output") or root)
    try:
        config = check_config(raw, devices=devices, file_root=root)
        _refuse_relative_data(config, root, output)
    except SpecError as err:
        if not name_file:
            raise
        raise SpecError(f"{last}: {err}") from None
    claims = raw.get("claims")
    return StudySet(config, root, output, Path(claims) if claims else None)


def check_workflow_config(
    paths: Sequence[str | Path], *, devices: bool = True, shipped: str | Path = SHIPPED_CONFIG
) -> Config:
    """What the workflow runs, checked: every config file strictly re-read (duplicate keys,
    YTE code, alias bombs), merged as Snakemake merges them, then validated.

    This is the only validation: there is no separate JSON schema to keep in step.
    """
    return study_set(paths, shipped=shipped, devices=devices).config
