"""The workflow's logic at parse time: the plan, what is finished, what is still to train.

`workflow/rules/common.smk` calls `WorkflowState.build` once and asks it for the input
functions; nothing here imports Snakemake or torch, so every rule of the retry policy is
unit-tested (tests/workflow/test_workflow.py) and the Snakefiles stay wiring only.

The policy, chosen so that a dry run changes nothing and a real run retrains exactly what is
not finished:
  * The plan (`results/plan.json`, nnopt.store.plan_file) lists every run of the config; it is
    rewritten only when its content changes, so its mtime is a faithful rerun trigger.
  * A run is finished when its own folder `runs/{study}/{run_id}` is complete and valid
    (nnopt.store.runs.is_finished): studies that share a run id never vouch for each other.
  * Only runs that are not finished are packed into batches. A batch's id hashes its runs and
    the manifests of earlier batches that already tried them, so a failed or deleted run gets
    a batch (and a manifest path) Snakemake has never built and schedules it; once every run
    is finished there are no batches at all.
  * The aggregate waits for the manifests of the batches to train *and* of the earlier ones
    that trained runs of this plan; that set only grows while runs are trained, so a second
    `snakemake` finds every input as it was and does nothing.
  * Which runs a batch trains is written by the main process to `batches/{id}.todo.json`
    just before the first job (`write_todo`, from `onstart`: real runs only), so a job on
    another machine reads it there instead of planning again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from nnopt.config.check_io import read_record, regular_file
from nnopt.config.spec import DataSpec, SpecError
from nnopt.config.studies import Config
from nnopt.plan.packing import Batch, plan_batches, plan_table, resource_class
from nnopt.store.atomic import json_text, write_json_atomic, write_text_atomic
from nnopt.store.plan_file import PLAN_FORMAT, PLAN_VERSION, run_record, study_record
from nnopt.store.runs import is_finished

__all__ = [
    "plan_document",
    "plan_digest",
    "write_plan",
    "finished_runs",
    "tried_by",
    "pending_batches",
    "study_plan_path",
    "todo_path",
    "write_todo",
    "read_todo",
    "WorkflowState",
]

DatasetName = Callable[[DataSpec], str]  # the prepared file's name stem (train.data.cache_path)


def plan_document(config: Config, dataset_name: DatasetName) -> dict[str, Any]:
    """The plan file's content for `config` (see nnopt.store.plan_file for the format)."""
    runs, datasets, seen = [], {}, set()
    for run in config.runs:
        if (run.study, run.run_id) in seen:  # a repeated value in a factor list runs once
            continue
        seen.add((run.study, run.run_id))
        runs.append(run_record(run))
        datasets.setdefault(dataset_name(run.spec.data), run.spec.to_dict()["data"])
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "config": json.loads(json.dumps(dict(config.raw), default=str)),
        "studies": [study_record(s) for s in config.studies],
        "runs": runs,
        "datasets": datasets,
    }


def plan_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the plan file's text: two instances run the same plan iff these agree
    (nnopt.plan.recovery refuses a second instance of another plan in the same folder)."""
    return hashlib.sha256(json_text(document).encode("utf-8")).hexdigest()


def write_plan(path: str | Path, document: Mapping[str, Any]) -> bool:
    """Write the plan atomically when its content differs from the file's; True if written."""
    path = Path(path)
    text = json_text(document)
    try:  # a pipe in its place is replaced, never read (the read would block)
        if regular_file(path) and path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)
    return True


def finished_runs(config: Config, runs_dir: str | Path) -> set[tuple[str, str]]:
    """(study, run id) of every run whose own folder holds a complete, valid result."""
    return {
        (r.study, r.run_id)
        for r in config.runs
        if is_finished(Path(runs_dir, r.study, r.run_id), r.run_id)
    }


def _manifest_runs(path: Path) -> set[tuple[str, str]] | None:
    """(study, run id) pairs a manifest lists; None when it is not a readable manifest."""
    record = read_record(path)  # None for a pipe in its place (a read would block)
    try:
        rows = record["runs"] if isinstance(record, dict) else record
        return {(str(r["study"]), str(r["run_id"])) for r in rows}
    except (KeyError, TypeError):
        return None


def tried_by(batch_dir: str | Path, planned: set[tuple[str, str]]) -> dict[str, set]:
    """Manifest id -> the planned (study, run id) pairs it lists, for the existing manifests
    that list at least one run of the plan (manifests of other configs are ignored)."""
    found = {}
    for path in sorted(Path(batch_dir).glob("*.json")):
        if path.name.endswith(".todo.json"):
            continue
        pairs = _manifest_runs(path)
        if pairs and pairs & planned:
            found[path.stem] = pairs & planned
    return found


def pending_batches(
    config: Config,
    finished: set[tuple[str, str]],
    tried: Mapping[str, set],
    *,
    cores: int,
    cuda_present: bool,
) -> dict[str, Batch]:
    """The runs still to train, packed into batches whose ids are new for every attempt."""
    studies = []
    for study in config.studies:
        todo = tuple(r for r in study.runs if (r.study, r.run_id) not in finished)
        if todo:
            studies.append(replace(study, runs=todo))
    if not studies:
        return {}
    packed = plan_batches(replace(config, studies=tuple(studies)), cores=cores,
                          cuda_present=cuda_present)  # fmt: skip
    batches = {}
    for batch in packed:
        pairs = {(batch.study, i) for i in batch.run_ids}
        earlier = sorted(m for m, runs in tried.items() if runs & pairs)
        text = "\n".join([*sorted(batch.run_ids), "tried by:", *earlier])
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        batches[f"{batch.study}-{digest}"] = replace(batch, batch_id=f"{batch.study}-{digest}")
    return batches


def study_slice(config: Config, study) -> Config:
    """`config` cut down to one study, its raw config too (the study's own entry, no report
    title): another study's change must leave this slice's file as it was."""
    family = study.family or study.name
    raw = {k: v for k, v in dict(config.raw).items() if k not in ("title", "studies")}
    raw["studies"] = [e for e in config.raw.get("studies", ()) if e.get("name") == family]
    return replace(config, studies=(study,), raw=raw)


def study_plan_path(results: str | Path, study: str) -> Path:
    """results/plan/{study}.json: the plan of one study (rewritten only when it changes), so a
    report section reruns when its own study changes and no other."""
    return Path(results) / "plan" / f"{study}.json"


def todo_path(batch_dir: str | Path, batch_id: str) -> Path:
    return Path(batch_dir) / f"{batch_id}.todo.json"


def write_todo(
    batch_dir: str | Path, batches: Mapping[str, Batch], dataset_name: DatasetName
) -> None:
    """Record which runs each batch trains (read by `nnopt train-batch` and remote jobs) and
    the prepared files it reads (so the batch's inputs stay the same once it has run)."""
    for batch_id, batch in batches.items():
        record = {
            "batch": batch_id,
            "study": batch.study,
            "threads": batch.threads,
            "gpus": batch.gpus,
            "cost_s": batch.cost_s,
            "exclusive": batch.exclusive,
            "cohorts": [list(c) for c in batch.cohorts],
            "run_ids": list(batch.run_ids),
            "data": sorted({dataset_name(r.spec.data) for r in batch.runs}),
        }
        write_json_atomic(todo_path(batch_dir, batch_id), record)


def _read_record(path: Path) -> dict[str, Any] | None:
    record = read_record(path)
    return record if isinstance(record, dict) else None


def read_todo(batch_dir: str | Path, config: Config) -> dict[str, Batch]:
    """The batches the main process recorded (a job on another machine does not re-plan)."""
    runs = {(r.study, r.run_id): r for r in config.runs}
    batches = {}
    for path in sorted(Path(batch_dir).glob("*.todo.json")):
        record = _read_record(path)
        try:
            members = tuple(runs[(record["study"], i)] for i in record["run_ids"])
        except (KeyError, TypeError):
            continue  # a todo of another plan: not one of ours
        batches[record["batch"]] = Batch(
            record["batch"], record["study"], members, float(record["cost_s"]),
            int(record["threads"]), int(record["gpus"]),
            tuple(tuple(c) for c in record.get("cohorts", ())), bool(record.get("exclusive")),
        )  # fmt: skip
    return batches


@dataclass
class WorkflowState:
    """What the Snakefile needs at parse time: the config, its plan, the batches to train."""

    config: Config
    results: Path
    dataset_name: DatasetName
    batches: dict[str, Batch]
    finished: set[tuple[str, str]]
    tried: dict[str, set]
    cuda_present: bool = False

    @classmethod
    def build(
        cls,
        config: Config,
        results: str | Path,
        *,
        dataset_name: DatasetName,
        cores: int,
        cuda_present: bool,
        main_process: bool = True,
        document: Mapping[str, Any] | None = None,
    ) -> "WorkflowState":
        """`document`: the plan_document of `config` when the caller already built it (the
        workflow does, for the folder lock's plan digest, before anything is written)."""
        results = Path(results)
        if not main_process:  # a job elsewhere: the batches the main process recorded
            batches = read_todo(results / "batches", config)
            return cls(config, results, dataset_name, batches, set(), {}, cuda_present)
        try:
            write_plan(results / "plan.json", document or plan_document(config, dataset_name))
        except OSError as err:  # read-only or full: one line naming the folder, no traceback
            where = err.filename or results / "plan.json"
            raise SpecError(f"{results}: cannot write to {where} ({err.strerror})") from None
        finished = finished_runs(config, results / "runs")
        planned = {(r.study, r.run_id) for r in config.runs}
        tried = tried_by(results / "batches", planned)
        batches = pending_batches(config, finished, tried, cores=cores,
                                  cuda_present=cuda_present)  # fmt: skip
        for study in config.studies:  # per-study slices: a report section's own input
            write_plan(study_plan_path(results, study.name),
                       plan_document(study_slice(config, study), dataset_name))
        return cls(config, results, dataset_name, batches, finished, tried, cuda_present)

    # --- the input functions' answers ----------------------------------------------------

    def manifests(self) -> list[str]:
        """What the aggregate waits for: earlier manifests of this plan and the new ones."""
        ids = sorted(set(self.tried) | set(self.batches))
        return [str(self.results / "batches" / f"{i}.json") for i in ids]

    def _earlier(self, batch_id: str) -> dict[str, Any]:
        """An earlier batch's record (its todo file): Snakemake still asks for its inputs
        when it checks that batch's manifest, and they must be what they were."""
        return _read_record(todo_path(self.results / "batches", batch_id)) or {}

    def batch_data(self, batch_id: str) -> list[str]:
        """The prepared files a batch reads (results/data/NAME.npz)."""
        if batch_id in self.batches:
            names = {self.dataset_name(r.spec.data) for r in self.batches[batch_id].runs}
        else:
            names = set(self._earlier(batch_id).get("data") or ())
        return [str(self.results / "data" / f"{n}.npz") for n in sorted(names)]

    def batch_resources(self, batch_id: str) -> dict[str, Any]:
        """threads, gpus, estimated cost_s and exclusive (a timing study's batch) of a batch
        (an earlier one: from its record)."""
        batch = self.batches.get(batch_id)
        if batch is not None:
            return {"threads": batch.threads, "gpus": batch.gpus, "cost_s": batch.cost_s,
                    "exclusive": batch.exclusive}  # fmt: skip
        record = self._earlier(batch_id)
        return {"threads": int(record.get("threads", 1)), "gpus": int(record.get("gpus", 0)),
                "cost_s": float(record.get("cost_s", 0.0)),
                "exclusive": bool(record.get("exclusive"))}  # fmt: skip

    def retry_lines(self) -> list[str]:
        """One line per batch that retrains runs an earlier batch already tried."""
        lines = []
        for batch_id, batch in self.batches.items():
            pairs = {(batch.study, i) for i in batch.run_ids}
            again = set().union(*[runs & pairs for runs in self.tried.values()])
            if again:
                lines.append(f"retrying {len(again)} failed or damaged runs of study "
                             f"{batch.study} in batch {batch_id}")  # fmt: skip
        return lines

    def study_manifests(self, study: str) -> list[str]:
        """The manifests (earlier and new) of the batches that train `study`'s runs."""
        ids = {i for i, pairs in self.tried.items() if any(s == study for s, _ in pairs)}
        ids |= {i for i, b in self.batches.items() if b.study == study}
        return [str(self.results / "batches" / f"{i}.json") for i in sorted(ids)]

    def study_plan(self, study: str) -> str:
        return str(study_plan_path(self.results, study))

    def report_sections(self) -> list[str]:
        return [str(self.results / "report" / f"{s.name}.html") for s in self.config.studies]

    def landscape_outputs(self) -> list[str]:
        marked = [s.name for s in self.config.studies if s.landscape]
        return [str(self.results / "landscape" / s / "sharpness.parquet") for s in marked]

    # --- tuned studies (nnopt.search; the rules are in workflow/rules/search.smk) ---------

    def tuned(self) -> list[str]:
        """Names of the studies with a tune: block."""
        return [s.name for s in self.config.studies if s.tune is not None]

    def search_outputs(self, study: str | None = None) -> list[str]:
        """The finished searches' summaries (trials.parquet, chosen.json): what the
        aggregate (every tuned study) and a tuned study's report section wait for."""
        names = self.tuned() if study is None else [n for n in self.tuned() if n == study]
        folder = self.results / "search"
        return [str(folder / n / f) for n in names for f in ("trials.parquet", "chosen.json")]

    def search_manifests(self, study: str, r: int) -> list[str]:
        """The shard manifests of round r of a study's search (all there: round trained);
        [] for r < 0 (round 0 waits for no round)."""
        shards = self.config.study(study).tune.shards if r >= 0 else 0
        folder = self.results / "search" / study
        return [str(folder / f"round-{r:02d}.shard-{s}.manifest.json") for s in range(shards)]

    def search_gpus(self, study: str) -> int:
        """GPUs a search job claims: its study's first run's (trials differ in tuned values
        only, never in the device)."""
        spec = self.config.study(study).runs[0].spec
        return resource_class(spec, cuda_present=self.cuda_present)[1]

    def study_data(self, study: str) -> list[str]:
        """The prepared files a study's runs read (a search's trials read the same: tuned
        keys never change the data)."""
        names = {self.dataset_name(r.spec.data) for r in self.config.study(study).runs}
        return [str(self.results / "data" / f"{n}.npz") for n in sorted(names)]

    def table(self) -> str:
        return plan_table(self.config, list(self.batches.values()), self.finished)

    def write_todo(self) -> None:
        write_todo(self.results / "batches", self.batches, self.dataset_name)

