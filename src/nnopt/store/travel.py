"""Results that travel: merge run folders from several results trees; bundle a study.

`merge_results(sources, into)` copies `{src}/runs/{study}/{run_id}/` folders into
`{into}/runs/`, keyed by study and run id. A run already there with the same status and the
same measured values is an identical duplicate and is skipped; one with different values
is a conflict: reported, never overwritten. A finished run (ok, diverged) replaces a failed
record of the same id. Timing and memory metrics (`*_s`, `samples_per_s`, `*_mb`) differ
from host to host and are not compared. Folders are copied whole (metrics.json keeps its
provenance: the host that trained it), under a temporary name, then renamed.

`archive(out, ...)` writes one .tar.gz of the config files, the result tables
(`results/*.parquet`, `results/config.json`), the reports folder and, with `runs=True`, the
run folders, plus `MANIFEST.sha256` (`sha256sum -c` format) over every file in it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from nnopt.config.spec import SpecError

__all__ = ["MergeReport", "merge_results", "archive", "host_dependent"]

FINISHED = ("ok", "diverged")


def host_dependent(name: str) -> bool:
    """Metrics that measure the machine, not the run: never a conflict between hosts."""
    return name.endswith(("_s", "_mb")) or name == "samples_per_s"


@dataclass
class MergeReport:
    copied: list[str] = field(default_factory=list)  # "study/run_id"
    identical: list[str] = field(default_factory=list)
    replaced_failed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # "study/run_id: src vs dst: keys"

    def summary(self) -> str:
        return (f"{len(self.copied)} copied, {len(self.replaced_failed)} replaced a failed "
                f"record, {len(self.identical)} identical duplicates skipped, "
                f"{len(self.conflicts)} conflicts")  # fmt: skip


def _record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = ["status"] if a.get("status") != b.get("status") else []
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    keys += [
        k for k in sorted(set(ma) | set(mb)) if not host_dependent(k) and ma.get(k) != mb.get(k)
    ]
    return keys


def _copy_run(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.merge-"))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if dst.exists():  # only a failed record is ever replaced
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _merge_one(src_run: Path, dst_run: Path, key: str, report: MergeReport) -> None:
    new = _record(src_run)
    if new is None:
        return  # not a run record (an unfinished temporary folder)
    old = _record(dst_run) if dst_run.exists() else None
    if old is None:
        _copy_run(src_run, dst_run)
        report.copied.append(key)
    elif old.get("status") not in FINISHED and new.get("status") in FINISHED:
        _copy_run(src_run, dst_run)
        report.replaced_failed.append(key)
    elif new.get("status") not in FINISHED or not _differences(old, new):
        report.identical.append(key)  # same values, or a failed copy of a run we have
    else:
        keys = ", ".join(_differences(old, new))
        report.conflicts.append(f"{key}: {src_run} differs from {dst_run} in {keys}")


def merge_results(sources: Iterable[str | Path], into: str | Path) -> MergeReport:
    into_runs = Path(into) / "runs"
    report = MergeReport()
    for source in sources:
        runs = Path(source) / "runs"
        if not runs.is_dir():
            raise SpecError(f"merge: {source} has no runs/ folder (expected {runs})")
        if runs.resolve() == into_runs.resolve():
            continue
        folders = (p for p in runs.glob("*/*") if p.is_dir() and not p.name.startswith("."))
        for src_run in sorted(folders):
            key = f"{src_run.parent.name}/{src_run.name}"
            _merge_one(src_run, into_runs / src_run.parent.name / src_run.name, key, report)
    return report


# --- archive -------------------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _archive_members(configs: list[Path], results: Path, reports: Path, runs: bool):
    members: list[tuple[Path, str]] = [(c, f"config/{c.name}") for c in configs]
    for table in sorted(results.glob("*.parquet")) + [results / "config.json"]:
        if table.is_file():
            members.append((table, f"results/{table.name}"))
    if runs and (results / "runs").is_dir():
        members += [(f, f"results/{f.relative_to(results)}") for f in _files(results / "runs")]
    if reports.is_dir():
        members += [(f, f"reports/{f.relative_to(reports)}") for f in _files(reports)]
    return members


def archive(out: str | Path, *, configs: list[str | Path], results: str | Path = "results",
            reports: str | Path = "reports", runs: bool = False) -> int:  # fmt: skip
    """Write the bundle; return the number of files in it (besides the manifest)."""
    config_paths = [Path(c) for c in configs]
    for path in config_paths:
        if not path.is_file():
            raise SpecError(f"--config: file not found: {path}")
    members = _archive_members(config_paths, Path(results), Path(reports), runs)
    if not members:
        raise SpecError(f"archive: nothing to bundle (no config, tables in {results} or {reports})")
    manifest = "".join(
        f"{hashlib.sha256(src.read_bytes()).hexdigest()}  {name}\n" for src, name in members
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for src, name in members:
                tar.add(src, arcname=name)
            data = manifest.encode()
            info = tarfile.TarInfo("MANIFEST.sha256")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(members)
