"""The package layers (docs/architecture.md): imports point down the table, never up.

Every `import nnopt.X` / `from nnopt.X import` in src/nnopt, at module level or inside a
function, is read with `ast`; an import from a package that the importing package may not
use fails here with the file, the line and the allowed packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nnopt"

# package -> the nnopt packages it may import (besides itself)
ALLOWED = {
    "config": set(),
    "store": {"config"},
    "train": {"config", "store"},
    "plan": {"config", "store"},
    "search": {"config", "store", "plan"},
    "analysis": {"config", "store"},
    "report": {"config", "store", "analysis"},
    "landscape": {"config", "store", "train", "analysis", "report"},
    "cli": {"config", "store", "train", "plan", "search", "analysis", "report", "landscape"},
}


def _package(path: Path) -> str | None:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else None  # None: nnopt/__init__.py, __main__.py


def _imported_packages(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "nnopt" else [f"nnopt.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "nnopt" and len(parts) > 1:
                yield node.lineno, parts[1]


def _modules():
    return sorted(p for p in SRC.rglob("*.py") if _package(p) is not None)


def test_every_subpackage_is_in_the_table():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED)


def test_top_level_holds_only_the_public_api():
    assert sorted(p.name for p in SRC.glob("*.py")) == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    own = _package(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    wrong = [
        f"{path.relative_to(SRC)}:{line} imports nnopt.{pkg}; {own} may import "
        f"{', '.join(sorted(ALLOWED[own])) or 'no other nnopt package'}"
        for line, pkg in _imported_packages(tree)
        if pkg != own and pkg in ALLOWED and pkg not in ALLOWED[own]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from nnopt.report.figures import Figure\n")
    assert [pkg for _, pkg in _imported_packages(tree)] == ["report"]
    assert "report" not in ALLOWED["analysis"]


def _module_name(path: Path) -> str:
    parts = ("nnopt",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """nnopt modules `path` imports, at module level or inside functions: `from a.b import c`
    names module a.b.c when that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name in known}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules():
    paths = sorted(SRC.rglob("*.py"))
    known = {_module_name(p) for p in paths}
    # A package's __init__ re-exporting its modules is not a cycle of the modules themselves.
    graph = {_module_name(p): _module_imports(p, known) for p in paths if p.name != "__init__.py"}
    for deps in graph.values():
        deps -= {name for name in deps if (SRC.parent / name.replace(".", "/") / "__init__.py").exists()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
