"""The plan file (`results/plan.json`): what the workflow decided to run, read back typed.

The workflow expands the config once, at parse time (`nnopt.plan.workflow`), and writes this
file; every later step (aggregate, landscape, report) reads it instead of expanding the
config again, so they see exactly the runs Snakemake trained (same random samples, same
ids) and never open a training input (a CSV moved after training does not matter).

Format (JSON, key order as written):
    {"format": "nnopt-plan", "version": 1,
     "config":   the merged config as given (key order kept),
     "studies":  [{name, title, description, base, grid, zip, random, seeds, rows, baseline,
                   metrics, columns, landscape}, ...],
     "runs":     [{study, run_id, config, factors: [[key, value], ...], spec: {...}}, ...],
     "datasets": {cache name: data spec}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from nnopt.config.spec import Kwargs, RunSpec, SpecError
from nnopt.config.studies import Config, Run, Study
from nnopt.config.tune import tune_from_record

__all__ = [
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "Plan",
    "study_record",
    "run_record",
    "spec_from_canonical",
]

PLAN_FORMAT = "nnopt-plan"
PLAN_VERSION = 1
_STUDY_FIELDS = tuple(f.name for f in fields(Study) if f.name != "runs")


def study_record(study: Study) -> dict[str, Any]:
    """A study's declaration (everything but its runs) as plain JSON data."""
    record = asdict(study)
    record.pop("runs", None)
    return json.loads(json.dumps(record))


def run_record(run: Run) -> dict[str, Any]:
    return {
        "study": run.study,
        "run_id": run.run_id,
        "config": run.config,
        "factors": [[key, value] for key, value in run.factors],
        "spec": run.spec.to_dict(),
    }


def _study(record: Mapping[str, Any], runs: tuple[Run, ...]) -> Study:
    values = {k: record[k] for k in _STUDY_FIELDS if k in record}
    values["grid"] = {k: tuple(v) for k, v in (record.get("grid") or {}).items()}
    values["zip"] = {k: tuple(v) for k, v in (record.get("zip") or {}).items()}
    values["seeds"] = tuple(record.get("seeds") or ())
    values["metrics"] = tuple(record.get("metrics") or ())
    values["tune"] = tune_from_record(record.get("tune"))
    return Study(**values, runs=runs)


def _tuples(value: Any) -> Any:
    """A canonical field value as the spec holds it: lists as tuples, a plug-in's kwargs
    mapping as the spec's hashable Kwargs (a plain dict would make the spec unhashable)."""
    if isinstance(value, Mapping):
        return Kwargs(value)
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def spec_from_canonical(canonical: Mapping[str, Any]) -> RunSpec:
    """A RunSpec from its canonical dict (RunSpec.to_dict), without parse_spec's checks of
    the data files: the plan's specs were checked when it was made, and reading it back must
    not depend on training inputs still being where they were. Each field still validates
    its value (the spec's descriptors); the run id check in `_run` catches any drift."""
    default = RunSpec()
    sections: dict[str, Any] = {}
    for f in fields(RunSpec):
        value = canonical.get(f.name)
        if isinstance(value, Mapping):
            cls = type(getattr(default, f.name))
            sections[f.name] = cls(**{k: _tuples(v) for k, v in value.items()})
        elif value is not None:
            sections[f.name] = value
    return RunSpec(**sections)


def _run(record: Mapping[str, Any]) -> Run:
    spec = spec_from_canonical(record["spec"])
    if spec.run_id != record["run_id"]:
        raise SpecError(
            f"run {record['run_id']}: its spec now hashes to {spec.run_id} (the plan was "
            "written by another nnopt version); run snakemake again to rewrite the plan"
        )
    return Run(record["study"], spec, tuple((k, v) for k, v in record["factors"]))


@dataclass(frozen=True)
class Plan:
    """A loaded plan file: the config as given, the studies, their runs, the datasets."""

    raw_config: Mapping[str, Any]
    studies: tuple[Mapping[str, Any], ...]
    runs: tuple[Mapping[str, Any], ...]
    datasets: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan file; SpecError('<path>: ...') when it is missing or not a plan."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise SpecError(f"{path}: cannot read plan file ({err.strerror})") from None
        except ValueError as err:
            raise SpecError(f"{path}: not a JSON plan file ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
            raise SpecError(f"{path}: not an nnopt plan file (written by the workflow)")
        if doc.get("version") != PLAN_VERSION:
            raise SpecError(
                f"{path}: plan version {doc.get('version')!r}; this nnopt reads version "
                f"{PLAN_VERSION}: run snakemake again to rewrite it"
            )
        return cls(doc["config"], tuple(doc["studies"]), tuple(doc["runs"]), doc["datasets"])

    def to_document(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "config": self.raw_config,
            "studies": list(self.studies),
            "runs": list(self.runs),
            "datasets": dict(self.datasets),
        }

    def config(self) -> Config:
        """The typed Config the plan describes, rebuilt from its records (no expansion)."""
        by_study: dict[str, list[Run]] = {s["name"]: [] for s in self.studies}
        for record in self.runs:
            by_study[record["study"]].append(_run(record))
        studies = tuple(_study(s, tuple(by_study[s["name"]])) for s in self.studies)
        per_job = self.raw_config.get("runs_per_job", "auto")
        return Config(
            studies=studies,
            max_runs_per_study=int(self.raw_config.get("max_runs_per_study", 2000)),
            runs_per_job=None if per_job == "auto" else int(per_job),
            raw=self.raw_config,
        )

    def landscape_settings(self) -> Mapping[str, Any]:
        return dict(self.raw_config.get("landscape") or {})
