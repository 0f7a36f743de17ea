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
