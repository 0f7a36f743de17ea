"""Problems: the same study replicated on other data or architectures (claims generalize).

A config may name problems at the top level,

    problems:
      mnist1d_mlp: {title: "MNIST-1D, MLP"}
      mnist1d_cnn: {title: "MNIST-1D, CNN", base: {model: {kind: cnn1d, ...}}}
      digits_mlp:  {title: "digits 8x8, MLP", base: {data: {name: digits}}}

and a study lists the ones it runs on (`problems: [mnist1d_mlp, mnist1d_cnn]`). Each problem
becomes its own study, named `{study}__{problem}`, whose base is the defaults, then the
problem's base, then the study's base (a study's own choices, such as its optimizer, win over
the problem's). Every downstream step (folders, batches, tables, report sections) then works
per problem unchanged; `Study.family` keeps the configured name and `Study.problem` the
problem's, so claims about a study are judged per problem and overall.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from nnopt.config.errors import refuse_unknown_keys
from nnopt.config.spec import SpecError, did_you_mean, short_repr

__all__ = ["Problem", "PROBLEM_SEPARATOR", "parse_problems", "study_problems"]

PROBLEM_SEPARATOR = "__"  # study name + separator + problem name = the expanded study's name
_NAME = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")  # no '__': it separates the parts
_PROBLEM_KEYS = ("title", "base")


@dataclass(frozen=True)
class Problem:
    name: str
    title: str
    base: Mapping[str, Any] = field(default_factory=dict)  # a partial run spec


def parse_problems(raw: Any) -> dict[str, Problem]:
    """The top-level `problems:` mapping (absent: none)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError("problems: expected a mapping of problem name to {title, base}")
    out = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SpecError(
                f"problems.{name if isinstance(name, str) else short_repr(name)}: expected letters, digits, '-' or single '_' "
                "('__' separates study and problem in folder names)"
            )
        entry = entry if entry is not None else {}
        if not isinstance(entry, Mapping):
            raise SpecError(f"problems.{name}: expected a mapping with title and base")
        refuse_unknown_keys(f"problems.{name}", entry, _PROBLEM_KEYS)
        base = entry.get("base") or {}
        if not isinstance(base, Mapping):
            raise SpecError(f"problems.{name}.base: expected a mapping (a partial run spec)")
        title = entry.get("title") or name
        if not isinstance(title, str):
            raise SpecError(f"problems.{name}.title: expected text, got {short_repr(title)}")
        out[name] = Problem(name=name, title=title, base=dict(base))
    return out


def study_problems(path: str, raw: Any, known: Mapping[str, Problem]) -> list[Problem]:
    """The problems a study lists (`studies.X.problems`), in its order; [] when absent."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
        raise SpecError(f"{path}.problems: expected a non-empty list of problem names")
    if len(set(raw)) != len(raw):
        raise SpecError(f"{path}.problems: a problem is listed twice")
    for name in raw:
        if name not in known:
            allowed = ", ".join(known) or "none (define them under the top-level problems:)"
            raise SpecError(
                f"{path}.problems: unknown problem {name!r}; allowed: {allowed}"
                + did_you_mean(name, known)
            )
    return [known[name] for name in raw]
