"""``docs/bad-inputs.md`` names, for every bad-input case, the test that covers it: every test it
names must exist, so the table cannot promise what no test checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "bad-inputs.md"


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_the_bad_input_table_names_exists():
    named = re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`", DOC.read_text())
    assert len(named) > 30
    for module, function in named:
        path = TESTS / module
        assert path.exists(), f"docs/bad-inputs.md names {module}, which does not exist"
        if function:
            assert function in _test_functions(path), (
                f"docs/bad-inputs.md names {module}::{function}, which does not exist"
            )
