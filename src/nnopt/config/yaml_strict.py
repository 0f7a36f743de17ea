"""The one strict YAML loader: safe, no duplicate keys, bounded size and depth, one-line errors.

Every YAML nnopt reads (configs, specs, claims files) goes through `read_yaml`: tags that build
Python objects are refused, a duplicate key is an error (PyYAML keeps the last one silently),
alias "bombs" and absurd nesting are refused before anything walks the document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from nnopt.config.errors import SpecError

__all__ = ["read_yaml"]

# A config of 20 studies x a few dozen keys is ~1e3 values; aliases may not blow it past this.
_MAX_VALUES = 100_000
# A config nests ~5 levels (studies > study > grid > key > values); later steps recurse.
_MAX_DEPTH = 32
_TOO_DEEP = (
    f"not valid YAML: nested too deeply; allowed: at most {_MAX_DEPTH} levels of lists and "
    "mappings"
)



def _strict_loader() -> type:
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        loader.flatten_mapping(node)
        seen: set = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: construct_mapping reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def _yaml_message(err: Exception) -> str:
    """One line from a (multi-line) PyYAML error: 'line L: problem'."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if "constructor for the tag" in problem:
        tag = problem.split("tag", 1)[1].strip(" '").replace("tag:yaml.org,2002:", "!!")
        problem = f"tag {tag} is refused: configs are plain data and are never run as code"
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"not valid YAML: {where}{problem}; allowed: plain YAML mappings, lists and scalars"


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of `path`, or SpecError('<path>: <what is wrong>')."""
    import yaml

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else (
            "is not a regular file (a device, socket or pipe)" if path.exists()
            else "file not found")  # fmt: skip
        raise SpecError(f"{path}: {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; allowed: a YAML or JSON file") from None
    try:
        raw = yaml.load(text, Loader=_strict_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: {_yaml_message(err)}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise SpecError(f"{path}: {_TOO_DEEP}") from None
    # Size first: it stops after _MAX_VALUES values, so the depth walk after it is bounded
    # too (walking a bomb's 10**7 aliased values for its depth took half a minute).
    if _expanded_size(raw, _MAX_VALUES) > _MAX_VALUES:
        raise SpecError(
            f"{path}: YAML aliases expand to more than {_MAX_VALUES} values; allowed: "
            "configs of ordinary size (is this an alias bomb?)"
        )
    if _depth(raw, _MAX_DEPTH) > _MAX_DEPTH:
        raise SpecError(f"{path}: {_TOO_DEEP}")
    return raw


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of lists/mappings, stopping once past `limit` (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, level = stack.pop()
        if isinstance(item, (Mapping, list)):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _expanded_size(value: Any, limit: int) -> int:
    """Values in `value` counting every alias use, stopping once past `limit` (bounded work)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


# --- specs and configs ---------------------------------------------------------------------
