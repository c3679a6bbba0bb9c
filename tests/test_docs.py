"""The documentation: the site builds with `mkdocs build --strict` (the CLI and configuration
references generated from the code, the API pages by mkdocstrings), every fenced block in the
README and the docs is closed, and the README's relative links lead to files that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted(path for path in (ROOT / "docs").rglob("*.md")
               if "examples" not in path.relative_to(ROOT / "docs").parts)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def unclosed_fence(text: str) -> int | None:
    """The line number of a fence that is never closed, else None. A fence opens with three or
    more backticks (or tildes) and closes with at least as many of the same, nothing after."""
    opened: tuple[str, int] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match is None:
            continue
        marks, rest = match.groups()
        if opened is None:
            opened = (marks, number)
        elif marks[0] == opened[0][0] and len(marks) >= len(opened[0]) and not rest.strip():
            opened = None
    return None if opened is None else opened[1]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()
    cli = (tmp_path / "reference" / "cli" / "index.html").read_text()
    assert "tideline features build" in cli and "tideline lake log" in cli
    config = (tmp_path / "reference" / "configuration" / "index.html").read_text()
    assert "TIDELINE_LAKE_BACKEND" in config and "TIDELINE_REGISTRY_URL" in config
    api = (tmp_path / "reference" / "api" / "index.html").read_text()
    assert "get_training_set" in api and "set_champion" in api


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fenced_block_is_closed(path: Path) -> None:
    line = unclosed_fence(path.read_text(encoding="utf-8"))
    assert line is None, f"{path.relative_to(ROOT)}:{line}: a fenced block is never closed"


def test_unclosed_fences_are_found() -> None:
    assert unclosed_fence("```\nmake demo\n```\n") is None
    assert unclosed_fence("````\n```\nnested\n```\n````\n") is None
    assert unclosed_fence("text\n```python\nx = 1\n```\n```\nrest of the file\n") == 5


def test_readme_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    targets = [target for target in LINK.findall(outside_code)
               if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", target)]
    assert targets, "the README links into the docs"
    missing = [target for target in targets
               if not (ROOT / target.split("#", 1)[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", section, flags=re.M | re.S)
    assert blocks == ["make demo\nmake test\n"]
