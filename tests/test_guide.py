"""docs/*.md name code as `src/...py:function` or `src/...py:Class.method`: each must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
REFERENCE = re.compile(r"(src/[\w/]+\.py):([A-Za-z_][\w.]*)")


def _defined_names(path: Path) -> set[str]:
    """Top-level functions/classes and Class.member names (methods, class-level attributes)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(f"{node.name}.{member.name}")
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    names.add(f"{node.name}.{member.target.id}")
    return names


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_code_reference_in_the_docs_exists(page: str) -> None:
    references = REFERENCE.findall((ROOT / "docs" / page).read_text())
    if page == "guide.md":
        assert len(references) >= 30, "the guide should map every step onto the code"
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file() or name not in _defined_names(path):
            missing.append(f"{file}:{name}")
    assert not missing, f"docs/{page} names code that does not exist: {sorted(set(missing))}"


def test_reference_checker_catches_a_missing_name(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class A:\n    x: int = 1\n    def f(self): pass\ndef g(): pass\n")
    assert _defined_names(module) == {"A", "A.x", "A.f", "g"}
