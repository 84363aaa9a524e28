"""What the docs name must exist: code as `src/...py:function` or `src/...py:Class.method`, and
every flag of a `planet <command>` in the README and the docs (code blocks and inline), and
every config flag their prose names."""

from __future__ import annotations

import ast
import contextlib
import io
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


COMMANDS = [
    "train",
    "eval",
    "plot",
    "inspect",
    "collect",
    "doctor",
    "sweep",
    "results",
    "random-policy",
]
FLAG = r"--[a-z0-9][a-z0-9.-]*[a-z0-9]"
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?(?:\.venv/bin/)?planet ([a-z-]+)(.*)$", re.M)


def _documented_commands(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, its --flags) of each ``planet <command> ...`` line in a fenced code block
    (continuation lines joined, comments dropped) and of each inline `planet <command> ...`."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        lines += COMMAND_LINE.findall(block.replace("\\\n", " "))
        text = text.replace(block, "")
    lines += re.findall(r"`(?:\.venv/bin/)?planet ([a-z-]+)([^`]*)`", text)
    return [
        (command, re.findall(rf"(?<![\w-]){FLAG}", rest.split(" #")[0]))
        for command, rest in lines
        if command in COMMANDS
    ]


def _help_flags(command: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The flags ``planet <command> --help`` lists as options (not those its texts mention)."""
    from planet_torch.cli import parse

    monkeypatch.setenv("COLUMNS", "100")  # one column, no flag split over two lines
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        parse([command, "--help"])
    assert exit_.value.code in (0, None)
    # in one column (no terminal, 100 wide) each option's line starts "  -", its text "        "
    options = re.findall(r"^  (-.*)$", out.getvalue(), re.M)
    flags = {flag for line in options for flag in re.findall(FLAG, line)}
    return flags


def test_every_flag_of_a_documented_command_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    documented = [(page, c, f) for page in pages for c, f in _documented_commands(page.read_text())]
    assert len(documented) >= 30, "the README and the docs show how to run planet"
    valid = {command: _help_flags(command, monkeypatch) for command in COMMANDS}
    assert {"--model.kind", "--resume", "--dry-run"} <= valid["train"]
    assert "--output" in valid["inspect"] and "--config" not in valid["train"]
    unknown = {
        f"{page.relative_to(ROOT)}: planet {command} {flag}"
        for page, command, flags in documented
        for flag in flags
        if flag not in valid[command]
    }
    # a config flag in the prose ("`--model.mean-only --loss.kl-scale 0`"): train takes it
    for page in pages:
        for flag in re.findall(rf"(?<![\w-])(--[a-z]+\.{FLAG[2:]})(?![\w*-])", page.read_text()):
            if flag not in valid["train"]:
                unknown.add(f"{page.relative_to(ROOT)}: {flag}")
    assert not unknown, f"documented flags planet does not take: {sorted(unknown)}"


def test_documented_command_reader_finds_flags() -> None:
    text = (
        "```bash\nplanet train --task a \\\n  --model.kind ssm  # not --this\n```\n"
        "`planet eval --run-dir R\n--episodes 3`, not planet plot --x"
    )
    assert _documented_commands(text) == [
        ("train", ["--task", "--model.kind"]),
        ("eval", ["--run-dir", "--episodes"]),
    ]
