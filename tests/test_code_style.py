"""Static checks over the project's Python code: pyflakes finds nothing, and no line is longer
than 120 characters."""
from __future__ import annotations

import io
from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("features", "trainables", "study", "analysis", "benchmarks", "tests")
MAX_LINE = 120


def _python_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (root / folder).rglob("*.py"))


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def pyflakes_messages(paths: list[Path]) -> str:
    """pyflakes' warnings and errors over ``paths``, one per line ("" when there are none)."""
    out = io.StringIO()
    reporter = Reporter(out, out)
    for path in paths:
        checkPath(str(path), reporter)
    return out.getvalue()


def long_lines(paths: list[Path], limit: int = MAX_LINE) -> list[str]:
    """``path:line: N chars`` for each line of ``paths`` longer than ``limit`` characters."""
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > limit:
                found.append(f"{_shown(path)}:{number}: {len(line)} chars")
    return found


def test_pyflakes_finds_nothing():
    """No unused imports or variables, undefined names or redefinitions: pyflakes is in the dev extra
    for this test, so a warning fails here rather than piling up."""
    assert pyflakes_messages(_python_files()) == ""


def test_no_line_longer_than_120_characters():
    """The project's limit is 120 characters a line; the lines over it are listed."""
    assert long_lines(_python_files()) == []
