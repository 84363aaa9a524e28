"""Arrows go one way: cli / api → sweep → training → agents → models / planning → envs / replay →
config → errors. A module imports only from layers below its own; in particular the planner
(planning/) knows no model and models know no planner."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "planet_torch"

LAYERS = {
    "errors": 0,
    "machine": 0,
    "published": 0,
    "fileio": 1,
    "config": 1,
    "envs": 2,
    "replay": 2,
    "models": 3,
    "planning": 3,
    "agents": 4,
    "training": 5,
    "doctor": 5,
    "sweep": 6,
    "cli": 7,
    "api": 7,
    "__init__": 8,
}


def imports_between_parts() -> list[tuple[str, str, str]]:
    """(file, its part, the part it imports) for every planet_torch import across parts."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        part = rel.parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("planet_torch"):
                names = node.module.split(".")
                target = names[1] if len(names) > 1 else "__init__"
                if target != part:
                    found.append((str(rel), part, target))
    return found


def test_every_part_has_a_layer() -> None:
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert parts == set(LAYERS), parts ^ set(LAYERS)


def test_imports_only_go_down() -> None:
    upward = [
        f"{file} imports planet_torch.{target}"
        for file, part, target in imports_between_parts()
        if LAYERS[target] >= LAYERS[part]
    ]
    assert not upward, upward
    assert imports_between_parts()  # the scan itself sees imports


def module_imports() -> dict[str, set[str]]:
    """planet_torch module -> the planet_torch modules it imports (anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(["planet_torch", *rel.parts]).removesuffix(".__init__")
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("planet_torch"):
                graph[name].add(node.module or "")
    return graph


def test_no_import_cycles_between_modules() -> None:
    """No two modules import each other, even lazily (the RSSM and the SSM share latent.py)."""
    graph = module_imports()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt in graph and nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    # A package's __init__ re-exporting its modules (and a factory there) is no cycle of code.
    packages = {".".join(["planet_torch", *p.parent.relative_to(PACKAGE).parts]).rstrip(".")
                for p in PACKAGE.rglob("__init__.py")}  # fmt: skip
    real = [c for c in cycles if not packages & set(c)]
    assert not real, real
