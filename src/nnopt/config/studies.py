"""Studies: a declared comparison expanded into concrete runs (no torch, no Snakemake).

A config holds `defaults` (a partial run spec), default `seeds`, and a list of `studies`.
Each study varies factors (dotted spec paths) by `grid` (cartesian product), `zip` (paired
lists) and `random` (n samples drawn with a fixed sampler seed); the three parts combine as a
product, and every configuration is run once per seed. See docs/contract.md §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.errors import refuse_unknown_keys
from nnopt.config.factors import config_label, configurations, factor_lists, seed_list, set_path
from nnopt.config.landscape_settings import parse_settings
from nnopt.config.problems import PROBLEM_SEPARATOR, Problem, parse_problems, study_problems
from nnopt.config.spec import RunSpec, SpecError, did_you_mean, merge, parse_spec, short_repr
from nnopt.config.study_rules import (
    refuse_bad_baseline,
    refuse_label_collision,
    refuse_too_many,
    refuse_too_many_in_all,
)
from nnopt.config.tune import TuneSpec, check_tuned_keys, parse_tune

__all__ = [
    "Run",
    "Study",
    "Config",
    "load_config",
    "parse_config",
    "expand",
    "config_label",
    "LABEL_PREFIX",
    "MAX_NAME_CHARS",
]

# Factor keys under `label.` (e.g. label.regularizer: [none, l1, l2]) name configurations
# for tables and claims without being spec fields; pair them with spec factors in a zip.
LABEL_PREFIX = "label."
# fullmatch ("$" would accept a trailing newline); no leading '-': `--study -x` reads as an
# option on every command line the workflow builds.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
# Derived names are longer than the study's: `results/batches/<name>-<10 hex>.json`, and
# Snakemake keeps per-output metadata in one file named by the base64 of the whole output
# path (4/3 of its length). 64 keeps every such name well under NAME_MAX (255 bytes).
MAX_NAME_CHARS = 64
_STUDY_KEYS = (
    "name",
    "title",
    "description",
    "base",
    "grid",
    "zip",
    "random",
    "seeds",
    "rows",
    "baseline",
    "metrics",
    "columns",
    "landscape",
    "cohorts",
    "tune",
    "problems",
)
_CONFIG_KEYS = (
    "defaults", "seeds", "max_runs_per_study", "studies", "runs_per_job", "landscape", "problems",
    "title",  # the report's (nnopt.report)
    "claims", "output",  # the study set's claims file and output folder (config.check)
)


@dataclass(frozen=True)
class Run:
    """One training run of a study: its spec and the factor values that produced it."""

    study: str
    spec: RunSpec
    factors: tuple[tuple[str, Any], ...]  # (dotted key, value) in the study's factor order

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def config(self) -> str:
        return config_label(dict(self.factors))

    @property
    def seed(self) -> int:
        return self.spec.seed


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    description: str
    base: Mapping[str, Any]  # the merged partial spec (defaults + study base)
    grid: Mapping[str, tuple[Any, ...]]
    zip: Mapping[str, tuple[Any, ...]]
    random: Mapping[str, Any] | None
    seeds: tuple[int, ...]
    rows: str | None
    baseline: Mapping[str, Any]
    metrics: tuple[str, ...]
    columns: Mapping[str, str]
    landscape: bool = False
    tune: TuneSpec | None = None  # a `tune:` block: searched per configuration (nnopt.search)
    # False: every run trains alone (never stacked into a cohort, see nnopt.plan.cohorts).
    cohorts: bool = True
    runs: tuple[Run, ...] = field(default=(), compare=False, repr=False)
    # The configured study name and, for a study replicated over problems (nnopt.config.
    # problems), the problem this copy runs on; `name` is then '{family}__{problem}'.
    family: str = ""
    problem: str | None = None
    problem_title: str | None = None

    @property
    def factor_keys(self) -> tuple[str, ...]:
        keys = list(self.grid) + list(self.zip)
        if self.random:
            keys += list(self.random["params"])
        return tuple(keys)


@dataclass(frozen=True)
class Config:
    studies: tuple[Study, ...]
    max_runs_per_study: int
    runs_per_job: int | None  # None = chosen from the cores and the study size
    raw: Mapping[str, Any] = field(compare=False, repr=False, default_factory=dict)

    def study(self, name: str) -> Study:
        for s in self.studies:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(r for s in self.studies for r in s.runs)


def _flag(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected true or false, got {short_repr(value)}")
    return value


def expand(study: Study, *, file_root: Path | None = None) -> tuple[Run, ...]:
    """All runs of a study: configurations × seeds, each a validated RunSpec."""
    path = f"studies.{study.name}"
    runs: list[Run] = []
    seen: dict[str, str] = {}  # run_id -> configuration label
    by_label: dict[str, dict[str, Any]] = {}  # label -> the factors that print as it
    for factors in configurations(path, study.grid, study.zip, study.random):
        tree = study.base
        if study.landscape:  # the landscape job reads the training's weight snapshots
            tree = set_path(tree, "checkpoint.snapshots", True)
        for key, value in factors.items():
            if not key.startswith(LABEL_PREFIX):  # label.* names a configuration only
                tree = set_path(tree, key, value)
        label = config_label(factors)
        refuse_label_collision(path, label, by_label.setdefault(label, factors), factors)
        for seed in study.seeds:
            try:
                spec = parse_spec(set_path(tree, "seed", seed), file_root=file_root)
            except SpecError as err:
                raise SpecError(f"{path}: {err}") from None
            if spec.run_id in seen and study.random:
                break  # the sampler drew this configuration already
            if spec.run_id in seen:
                raise SpecError(
                    f"{path}: configurations '{seen[spec.run_id]}' and '{label}' give "
                    "identical runs; a factor list repeats a value, or a label.* factor "
                    "is not paired (zip) with the spec values it names"
                )
            seen[spec.run_id] = label
            runs.append(Run(study.name, spec, tuple(factors.items())))
    return tuple(runs)


def _study_name(index: int, raw: Any) -> str:
    if not isinstance(raw, Mapping):
        raise SpecError(f"studies[{index}]: expected a mapping with at least a name")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(
            f"studies[{index}].name: expected letters, digits, '_' or '-' (not first), got "
            f"{short_repr(name)}"
        )
    if len(name) > MAX_NAME_CHARS:
        raise SpecError(
            f"studies[{index}].name: {len(name)} characters; allowed: at most {MAX_NAME_CHARS} "
            "(result, batch and log file names are built from it)"
        )
    return name


def _parse_study(index: int, raw: Any, defaults: Mapping, seeds: Any, cap: int) -> Study:
    name = _study_name(index, raw)
    path = f"studies.{name}"
    refuse_unknown_keys(path, raw, _STUDY_KEYS)
    base = raw.get("base") or {}
    if not isinstance(base, Mapping):
        raise SpecError(f"{path}.base: expected a mapping (a partial run spec)")
    grid = factor_lists(f"{path}.grid", raw.get("grid"))
    zipped = factor_lists(f"{path}.zip", raw.get("zip"))
    both = set(grid) & set(zipped)
    if both:
        raise SpecError(f"{path}: factor {sorted(both)[0]} is in both grid and zip")
    sampled = raw.get("random") or {}
    params = sampled.get("params") if isinstance(sampled, Mapping) else None
    for key in sorted(set(params or {}) & (set(grid) | set(zipped))):
        raise SpecError(f"{path}.random.params.{key}: already a grid/zip factor of this study")
    metrics, columns, baseline = _study_tables(path, raw)
    study = Study(
        name=name,
        title=str(raw.get("title") or name),
        description=str(raw.get("description") or ""),
        base=merge(defaults, base),
        grid=grid,
        zip=zipped,
        random=raw.get("random"),
        # The top-level seeds are checked where a study uses them, under their own key.
        seeds=seed_list(f"{path}.seeds", raw["seeds"], cap) if "seeds" in raw else seed_list("seeds", seeds, cap),
        rows=raw.get("rows"),
        baseline=dict(baseline),
        metrics=tuple(metrics),
        columns={str(k): str(v) for k, v in columns.items()},
        landscape=_flag(f"{path}.landscape", False if raw.get("landscape") is None
                        else raw["landscape"]),  # fmt: skip
        tune=_tune(path, raw, grid, zipped),
        family=name,
        cohorts=_flag(f"{path}.cohorts", raw.get("cohorts", True)),
    )
    _refuse_unknown_factors(path, study)
    return study


def _study_tables(path: str, raw: Mapping) -> tuple[list[str], Mapping, Mapping]:
    """The report settings of a study: metrics, column headers, baseline (title checked too)."""
    metrics = raw.get("metrics", ["test_accuracy"])
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise SpecError(f"{path}.metrics: expected a non-empty list of metric names")
    columns = raw.get("columns") or {}
    if not isinstance(columns, Mapping) or not all(isinstance(v, str) for v in columns.values()):
        raise SpecError(f"{path}.columns: expected a mapping of metric name to column header "
                        f"(text), got {short_repr(columns)}")  # fmt: skip
    for key in ("title", "description"):
        if not isinstance(raw.get(key) or "", str):
            raise SpecError(f"{path}.{key}: expected text, got {short_repr(raw[key])}")
    baseline = raw.get("baseline") or {}
    if not isinstance(baseline, Mapping):
        raise SpecError(f"{path}.baseline: expected a mapping of factor key to value")
    return metrics, columns, baseline


def _refuse_unknown_factors(path: str, study: Study) -> None:
    factor_keys = study.factor_keys
    for key in [*([study.rows] if study.rows else []), *study.baseline]:
        if key not in factor_keys:
            raise SpecError(
                f"{path}: '{key}' (rows/baseline) is not a factor of this study; factors: "
                f"{', '.join(factor_keys) or 'none'}" + did_you_mean(key, factor_keys)
            )


def _tune(path: str, raw: Mapping, grid: Mapping, zipped: Mapping) -> TuneSpec | None:
    if raw.get("tune") is None:
        return None
    sampled = raw.get("random") or {}
    varied = (*grid, *zipped, *(sampled.get("params") or {} if isinstance(sampled, Mapping) else {}))
    labels = tuple(config_label(f) for f in configurations(path, grid, zipped, None))
    return parse_tune(f"{path}.tune", raw["tune"], varied=tuple(varied), config_labels=labels)


def parse_config(raw: Any, *, file_root: Path | None = None) -> Config:
    """Validate a whole config and expand every study; raise SpecError naming the key."""
    if not isinstance(raw, Mapping):
        raise SpecError("config: expected a mapping with 'studies'")
    refuse_unknown_keys("", raw, _CONFIG_KEYS, what="unknown top-level key")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise SpecError("defaults: expected a mapping (a partial run spec)")
    if "title" in raw and (not isinstance(raw["title"], str) or not raw["title"].strip()):
        raise SpecError(f"title: expected a non-empty string (the report's title), "
                        f"got {short_repr(raw['title'])}")
    if raw.get("landscape") is not None:  # grid settings of the landscape rule (contract §5)
        parse_settings(raw["landscape"])
    cap = raw.get("max_runs_per_study", 2000)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise SpecError(f"max_runs_per_study: expected an integer >= 1, got {short_repr(cap)}")
    per_job = raw.get("runs_per_job", "auto")
    if per_job != "auto" and (isinstance(per_job, bool) or not isinstance(per_job, int) or per_job < 1):
        raise SpecError(f"runs_per_job: expected 'auto' or an integer >= 1, got {short_repr(per_job)}")
    raw_studies = raw.get("studies")
    if not isinstance(raw_studies, list) or not raw_studies:
        raise SpecError("studies: expected a non-empty list of studies")
    seeds = raw.get("seeds", 1)
    studies, seen = [], set()
    problems = parse_problems(raw.get("problems"))
    parsed = []
    for index, entry in enumerate(raw_studies):
        one = _parse_study(index, entry, defaults, seeds, cap)
        parsed += _per_problem(one, entry, problems, defaults)
    for study in parsed:
        if study.name in seen:
            raise SpecError(f"studies.{study.name}: duplicate study name")
        seen.add(study.name)
        refuse_too_many(study, cap)  # before building a spec: 10**6 runs refused at once
    refuse_too_many_in_all(parsed)  # so are 300 problems x 2000 runs
    for study in parsed:
        runs = expand(study, file_root=file_root)
        if study.tune is not None and runs:
            check_tuned_keys(f"studies.{study.name}.tune", study.tune, runs[0].spec.to_dict())
        if not runs:
            raise SpecError(f"studies.{study.name}: expands to zero runs")
        if len(runs) > cap:
            raise SpecError(
                f"studies.{study.name}: expands to {len(runs)} runs, more than "
                f"max_runs_per_study ({cap}); raise the cap or shrink the factors"
            )
        refuse_bad_baseline(study, runs)
        studies.append(_with_runs(study, runs))
    return Config(
        studies=tuple(studies),
        max_runs_per_study=cap,
        runs_per_job=None if per_job == "auto" else per_job,
        raw=raw,
    )


def _per_problem(
    study: Study, raw: Mapping[str, Any], problems: Mapping[str, Problem], defaults: Mapping
) -> list[Study]:
    """The study itself, or one copy per listed problem: defaults < problem base < study base."""
    from dataclasses import replace

    listed = study_problems(f"studies.{study.name}", raw.get("problems"), problems)
    for p in listed:  # the expanded name names folders and files like a study's own name
        name = f"{study.name}{PROBLEM_SEPARATOR}{p.name}"
        if len(name) > MAX_NAME_CHARS:
            raise SpecError(
                f"studies.{study.name}.problems: {p.name[:40]}: the study's name on it, "
                f"{name[:40]}..., has {len(name)} characters; allowed: at most {MAX_NAME_CHARS} "
                "(shorten the study or the problem name)"
            )
    return [
        replace(
            study,
            name=f"{study.name}{PROBLEM_SEPARATOR}{p.name}",
            title=f"{study.title} ({p.title})",
            base=merge(merge(defaults, p.base), raw.get("base") or {}),
            problem=p.name,
            problem_title=p.title,
        )
        for p in listed
    ] or [study]


def _with_runs(study: Study, runs: tuple[Run, ...]) -> Study:
    from dataclasses import replace

    return replace(study, runs=runs)


def load_config(path: str | Path) -> Config:
    """Read a YAML config (safe loader) and parse it; errors name the file and the key."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SpecError(f"{path}: cannot read config ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid YAML: nested too deeply") from None
    return parse_config(raw)


# nnopt.search.rounds imports the old private name.
_set_path = set_path
