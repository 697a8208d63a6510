"""Data flows one way: features -> trainables -> study -> analysis. No module imports a
package downstream of it (also inside functions), and models and trainers know nothing of
Ray, Optuna or MLflow."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> what it must never import
FORBIDDEN = {
    "features": ("trainables", "study", "analysis", "ray", "optuna", "mlflow"),
    "trainables": ("study", "analysis", "ray", "optuna", "mlflow"),
    "study": ("analysis",),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(p for pkg in FORBIDDEN for p in (ROOT / pkg).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_downstream(path):
    package = path.relative_to(ROOT).parts[0]
    bad = [n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN[package])]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"
