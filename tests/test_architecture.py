"""Imports point one way: service -> models, training -> models; models imports neither.

The core also stays free of pandas, pydantic, web and SQL libraries, so it is quick to load
in a serving worker and pure enough to test on arrays.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "models": {
        "service",
        "training",
        "pandas",
        "pydantic",
        "pydantic_settings",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "typer",
        "rich",
    },
    "service": {"training"},
    "training": {"service"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {file: names for file, names in wrong.items() if names} == {}


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from service.app import create_app\nimport pandas as pd\n")
    assert imported_packages(module) == {"service", "pandas"}
