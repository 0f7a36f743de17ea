"""Plug-ins: user code named by explicit spec keys, located and hashed at parse time.

Three keys may name user code, each as "module.path:callable":
    model.factory      (model.kind: python)       factory(input_shape, n_classes, **kwargs)
    data.loader        (data.name: python)        loader(**kwargs) -> (x, y)
    optimizer.factory  (optimizer.name: python)   factory(params, lr=lr, **kwargs)
Nothing else runs code: YAML tags are refused by the loader (nnopt.config.check).

The module is looked up in `code.root` (set at parse time: the spec or config file's folder,
else the working directory), then in the environment (sys.path). The SHA-256 of its source
file is written into the section's `source_sha256`, which is part of the canonical spec
and so of `run_id`: editing the file reruns exactly the runs that use it. Only the named
module's own file is hashed, not the modules it imports. No import happens here (config
knows no torch); nnopt.train.plugins imports, builds and checks the objects.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from nnopt.config.errors import SpecError

__all__ = ["TARGET_PATTERN", "PLUGIN_KEYS", "split_target", "locate_source", "file_sha256",
           "plugin_sections"]  # fmt: skip

TARGET_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
# section -> (the `name`/`kind` key and value that switch it on, the key naming the code)
PLUGIN_KEYS = {
    "model": ("kind", "factory"),
    "data": ("name", "loader"),
    "optimizer": ("name", "factory"),
}


def split_target(key: str, target: str) -> tuple[str, str]:
    """("module.path", "callable") of "module.path:callable", or SpecError naming `key`."""
    if not isinstance(target, str) or not TARGET_PATTERN.match(target):
        raise SpecError(
            f"{key}: expected 'module.path:callable' (e.g. models:resnet), got {target!r}"
        )
    module, name = target.split(":")
    return module, name


def _in_root(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def locate_source(key: str, target: str, root: Path) -> Path:
    """The source file of the target's module: under `root` first, else on sys.path."""
    module, _ = split_target(key, target)
    found = _in_root(module, root)
    if found is not None:
        return found
    try:
        spec = importlib.util.find_spec(module)  # imports parent packages of a dotted name
    except (ImportError, ValueError) as err:
        raise SpecError(f"{key}: cannot find module {module!r} ({err})") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise SpecError(
            f"{key}: module {module!r} not found in {root} nor in the environment (sys.path); "
            f"allowed: a {module.replace('.', '/')}.py beside the config, or an installed module"
        )
    return Path(spec.origin)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plugin_sections(spec: Any) -> list[tuple[str, Any, str]]:
    """(section name, section spec, target) of each plug-in a RunSpec uses."""
    out = []
    for section, (switch, code_key) in PLUGIN_KEYS.items():
        part = getattr(spec, section)
        if getattr(part, switch) == "python":
            out.append((section, part, getattr(part, code_key)))
    return out
