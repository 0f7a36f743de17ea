"""The shape of the code in src/nnopt (issue 17's acceptance): no module over 400 lines, no
class over 150, no function over 60, and no block of six code lines written twice.

Limits are read with `ast` (a class or function counts from its `def`/`class` line, decorators
excluded, to its last line). An exception needs an entry in `ALLOWED` saying why; an entry
that no longer needs to be there fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nnopt"

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
MAX_FUNCTION_LINES = 60
REPEAT_LINES = 6  # a run of this many code lines may stand in src/ only once
# Shorter runs are idiom, not logic ('else:', 'return out', closing brackets): a repeated run
# counts only when its lines hold at least this many characters together.
REPEAT_MIN_CHARS = 90

# "path[:qualified name]" -> why it may exceed its limit.
ALLOWED: dict[str, str] = {}


def _lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def _oversized(path: Path, root: Path = SRC) -> list[tuple[str, str, int, int]]:
    """(key, kind, lines, limit) of everything in one module over its limit."""
    rel = str(path.relative_to(root))
    text = path.read_text()
    found = []
    n = len(text.splitlines())
    if n > MAX_MODULE_LINES:
        found.append((rel, "module", n, MAX_MODULE_LINES))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                kind, limit = "class", MAX_CLASS_LINES
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind, limit = "function", MAX_FUNCTION_LINES
            else:
                visit(child, prefix)
                continue
            name = f"{prefix}{child.name}"
            if _lines(child) > limit:
                found.append((f"{rel}:{name}", kind, _lines(child), limit))
            visit(child, f"{name}.")

    visit(ast.parse(text, filename=str(path)), "")
    return found


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the lines that carry logic: no blank lines, comments,
    docstring quotes or import statements (module headers differ only in what they import)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or s == '"""' or re.match(r"(import |from \S+ import )", s):
            continue
        out.append((number, s))
    return out


def _repeats(files: dict[str, str]) -> list[list[tuple[str, int]]]:
    """Places (file, first line) of every run of REPEAT_LINES code lines found twice or more."""
    places: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, text in files.items():
        lines = _code_lines(text)
        for i in range(len(lines) - REPEAT_LINES + 1):
            run = tuple(s for _, s in lines[i : i + REPEAT_LINES])
            if sum(len(s) for s in run) >= REPEAT_MIN_CHARS:
                places[run].append((name, lines[i][0]))
    return [p for p in places.values() if len(p) > 1]


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_class_or_function_over_its_limit():
    over = [o for p in _sources() for o in _oversized(p) if o[0] not in ALLOWED]
    assert not over, "\n".join(
        f"{key}: {kind} of {n} lines (limit {limit}); split it along a seam, or add it to "
        "ALLOWED in tests/test_code_shape.py with the reason" for key, kind, n, limit in over
    )


def test_every_allowed_exception_is_still_needed():
    keys = {o[0] for p in _sources() for o in _oversized(p)}
    stale = sorted(set(ALLOWED) - keys)
    assert not stale, f"within the limits now, remove from ALLOWED: {', '.join(stale)}"


def test_no_block_of_six_code_lines_is_written_twice():
    files = {str(p.relative_to(SRC)): p.read_text() for p in _sources()}
    found = _repeats(files)
    assert not found, "\n".join(
        "the same lines at " + ", ".join(f"{f}:{n}" for f, n in places) for places in found
    )


def test_the_size_rule_counts_a_long_method_inside_a_class(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "probe.py"
    path.write_text(f"class A:\n    def long(self):\n{body}\n")
    assert _oversized(path, tmp_path) == [
        ("probe.py:A.long", "function", MAX_FUNCTION_LINES + 1, MAX_FUNCTION_LINES)
    ]


def test_the_repeat_rule_finds_a_copied_block_and_ignores_imports():
    block = "\n".join(f"    total_value_{i} = compute_something(argument_{i})" for i in range(6))
    imports = "\n".join(f"from package.module_{i} import name_{i}" for i in range(8))
    files = {"a.py": f"{imports}\ndef f():\n{block}\n", "b.py": f"{imports}\ndef g():\n{block}\n"}
    assert _repeats(files) == [[("a.py", 10), ("b.py", 10)]]
    assert _repeats({"a.py": imports, "b.py": imports}) == []
