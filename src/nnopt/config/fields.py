"""Field checks of the run spec: each returns the parsed value or raises SpecError(path: ...).

A spec section is a frozen dataclass whose fields carry their check in the field metadata
(`checked(check, default)`); `nnopt.config.spec` parses each key with it. The checks are
small factories (`number(0, 1, hi_open=True)`, `one_of(*NAMES)`) so a section reads as a
table of its bounds.
"""

from __future__ import annotations

import json
import math
from dataclasses import field, fields
from typing import Any, Callable, Mapping

from nnopt.config.errors import SpecError, did_you_mean, short_repr
from nnopt.config.limits import check_size

__all__ = [
    "Kwargs",
    "boolean",
    "checked",
    "epoch_list",
    "hashed_dict",
    "int_tuple",
    "kwargs_mapping",
    "number",
    "one_of",
    "plugin_fields",
    "plugin_field_names",
    "plugin_target",
    "text",
]


def _type_name(value: Any) -> str:
    return type(value).__name__


def one_of(*allowed: str) -> Callable[[str, Any], str]:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise SpecError(
                f"{path}: unknown value {short_repr(value)}; allowed: {', '.join(allowed)}"
                + did_you_mean(value, allowed)
            )
        return value

    return check


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Callable[[str, Any], Any]:
    def describe() -> str:
        kind = "an integer" if integer else "a number"
        parts = []
        shown = (lambda v: str(v)) if integer else (lambda v: f"{v:g}")  # 2**63-1 exactly
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {shown(lo)}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {shown(hi)}")
        text = kind + (" " + " and ".join(parts) if parts else "")
        return text + (" or null" if optional else "")

    def check(path: str, value: Any) -> Any:
        if value is None and optional:
            return None
        # bool is an int subclass in Python; `epochs: true` must still be an error.
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            raise SpecError(
                f"{path}: expected {describe()}, got {short_repr(value)} ({_type_name(value)})"
                + _yaml_number_hint(value)
            )
        if not math.isfinite(value):
            raise SpecError(f"{path}: expected {describe()}, got {short_repr(value)}")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise SpecError(f"{path}: {short_repr(value)} is out of range; expected {describe()}")
        if integer:
            check_size(path, value)
        return value if integer else float(value)

    return check


def _yaml_number_hint(value: Any) -> str:
    """YAML 1.1 (PyYAML) reads `1e-3` as text; say so when a string looks like a number."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return "; YAML reads this as text: write a number such as 1.0e-3 (with a dot) or 0.001"


def boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected true or false, got {short_repr(value)} ({_type_name(value)})")
    return value


def text(optional: bool = True) -> Callable[[str, Any], Any]:
    def check(path: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise SpecError(f"{path}: expected a non-empty string, got {short_repr(value)}")
        return value

    return check


def epoch_list(path: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value
    ):
        raise SpecError(f"{path}: expected a list of positive integers, got {short_repr(value)}")
    if list(value) != sorted(set(value)):
        raise SpecError(f"{path}: expected strictly increasing epochs, got {short_repr(list(value))}")
    return tuple(value)


def int_tuple(lo: int) -> Callable[[str, Any], tuple[int, ...]]:
    """A list of integers >= lo, in any order (per-layer settings)."""

    def check(path: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < lo for v in value
        ):
            raise SpecError(
                f"{path}: expected a list of integers >= {lo} (one per layer), "
                f"got {short_repr(value)}"
            )
        return tuple(value)

    return check


class Kwargs(dict):
    """A plug-in's keyword arguments: a read-only, hashable dict (specs are frozen keys)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True, default=str))

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("spec kwargs are read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only


def kwargs_mapping(path: str, value: Any) -> Kwargs:
    if value is None:
        return Kwargs()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"{path}: expected a mapping of keyword arguments, got {short_repr(value)}")
    try:  # plain YAML data only: the values must survive the canonical JSON of run_id
        return Kwargs(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError):
        raise SpecError(
            f"{path}: values must be plain numbers, strings, lists or mappings"
        ) from None


def plugin_target(path: str, value: Any) -> str | None:
    if value is None:
        return None
    from nnopt.config.plugins import split_target

    split_target(path, value)
    return value


def checked(check: Callable[[str, Any], Any], default: Any, *, hashed: bool = True) -> Any:
    """A dataclass field whose parse-time check lives in its metadata; `hashed=False` keeps
    it out of run_id (where a run executes, not what it computes)."""
    return field(default=default, metadata={"check": check, "hashed": hashed})


def hashed_dict(section: Any) -> dict[str, Any]:
    return {
        f.name: getattr(section, f.name) for f in fields(section) if f.metadata.get("hashed", True)
    }


# --- the plug-in fields -------------------------------------------------------------------


def _plugin_field_table(code_key: str) -> dict[str, tuple[str, Any]]:
    """name -> (annotation, dataclass field) of a plug-in section's fields, in canonical
    order: the code ("module:callable", named `code_key`), its keyword arguments, the hash
    of its source file (part of run_id) and the absolute folder it is imported from (filled
    at parse time; where a run executes, not what it computes: not hashed)."""
    return {
        code_key: ("str | None", checked(plugin_target, None)),
        "kwargs": ("Kwargs", checked(kwargs_mapping, Kwargs())),
        "source_sha256": ("str | None", checked(text(), None)),
        "code_root": ("str | None", checked(text(), None, hashed=False)),
    }


def plugin_field_names(code_key: str) -> tuple[str, ...]:
    """The plug-in fields of a section whose code key is `code_key`, in canonical order."""
    return tuple(_plugin_field_table(code_key))


def plugin_fields(code_key: str, *, before: str | None = None) -> Callable[[type], type]:
    """Class decorator, applied under `@dataclass`: add the plug-in fields (the one
    definition the data, model and optimizer sections share) to a spec section, before its
    field `before` (default: after the last). The position is part of the canonical dict:
    plan files and run records are JSON in field order and compare as text."""

    def add(cls: type) -> type:
        own = list(cls.__dict__.get("__annotations__", {}).items())
        table = _plugin_field_table(code_key)
        names = [name for name, _ in own]
        if set(table) & set(names) or (before is not None and before not in names):
            raise TypeError(f"{cls.__name__}: plug-in fields clash, or no field {before!r}")
        at = names.index(before) if before is not None else len(own)
        added = [(name, annotation) for name, (annotation, _) in table.items()]
        cls.__annotations__ = dict(own[:at] + added + own[at:])
        for name, (_, default) in table.items():
            setattr(cls, name, default)
        return cls

    return add

