"""The suite's own rules: every test says in its docstring what it proves, and tests and
benchmarks take the testing kit from ``shared/testing.py``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_has_a_docstring() -> None:
    """A test without one is named here with its file and line."""
    missing = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
        and not ast.get_docstring(node)
    ]
    assert not missing, "\n".join(missing)


def test_benchmarks_do_not_import_the_tests() -> None:
    """bench/ runs from the testing kit, not from tests.helpers."""
    importers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bench").glob("*.py"))
        if "from tests" in path.read_text() or "import tests" in path.read_text()
    ]
    assert not importers, importers
