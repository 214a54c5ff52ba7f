"""Imports point one way: service -> models, training -> models; models imports neither.

The core also stays free of pandas, pydantic, web and SQL libraries, so it is quick to load
in a serving worker and pure enough to test on arrays. Every module of the three packages says
what its one job is in a docstring and stays small enough to read in one sitting. The one
command line, `promise_cli`, is the only module that imports both service and training, and
none of the three packages imports it; none has a command line of its own (argparse) or starts
a program (subprocess, os.exec*): no command hops through a child process.
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
        "promise_cli",
    },
    "service": {"training", "promise_cli"},
    "training": {"service", "promise_cli"},
}
ONE_COMMAND_LINE = "promise_cli.py"
SECOND_COMMAND_LINE = {"argparse", "optparse", "getopt"}
# A package module starts no program: every command runs in the one command line's process.
OS_PROGRAM_STARTERS = {"system", "popen", "posix_spawn", "posix_spawnp"} | {
    f"{verb}{tail}"
    for verb in ("exec", "spawn")
    for tail in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")
}
MAX_MODULE_LINES = 600


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def programs_started(path: Path) -> list[str]:
    """How the module can start another program: importing `subprocess`, or calling one of
    `os`'s exec, spawn, system or popen functions (`line: os.execv`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = ["import subprocess"] if "subprocess" in imported_packages(path) else []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
            and node.func.attr in OS_PROGRAM_STARTERS
        ):
            found.append(f"{node.lineno}: os.{node.func.attr}")
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_problems(path: Path) -> list[str]:
    """What keeps a module from naming its one job in a file that reads in one sitting."""
    text = path.read_text(encoding="utf-8")
    problems = []
    if ast.get_docstring(ast.parse(text)) is None:
        problems.append("no docstring")
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{lines} lines")
    return problems


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    paths = modules_of(package)
    assert len(paths) > 10, "the check reads the package's modules"
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in paths
    }
    assert {file: names for file, names in wrong.items() if names} == {}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_every_module_has_a_docstring_and_at_most_600_lines(package: str) -> None:
    found = {str(path.relative_to(ROOT)): module_problems(path) for path in modules_of(package)}
    assert {file: problems for file, problems in found.items() if problems} == {}


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from service.app import create_app\nimport pandas as pd\n")
    assert imported_packages(module) == {"service", "pandas"}


def test_the_check_sees_a_module_without_a_docstring_or_too_long(tmp_path: Path) -> None:
    module = tmp_path / "long.py"
    module.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert module_problems(module) == ["no docstring", f"{MAX_MODULE_LINES + 1} lines"]
    module.write_text('"""One job."""\n')
    assert module_problems(module) == []


def test_only_the_one_command_line_imports_both_sides() -> None:
    both = imported_packages(ROOT / ONE_COMMAND_LINE) & {"service", "training"}
    assert both == {"service", "training"}
    others = [
        path
        for path in ROOT.glob("*.py")
        if path.name != ONE_COMMAND_LINE and {"service", "training"} <= imported_packages(path)
    ]
    assert others == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_has_a_command_line_of_its_own(package: str) -> None:
    found = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & SECOND_COMMAND_LINE)
        + programs_started(path)
        for path in modules_of(package)
    }
    assert {file: problems for file, problems in found.items() if problems} == {}


def test_the_check_sees_a_second_command_line_and_a_command_hop(tmp_path: Path) -> None:
    module = tmp_path / "hop.py"
    module.write_text(
        "import argparse, os, subprocess, sys\n"
        "command = [sys.executable, '-m', 'service.outcomes', 'import']\n"
        "subprocess.call(command)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'promise_cli'])\n"
    )
    assert imported_packages(module) & SECOND_COMMAND_LINE == {"argparse"}
    assert programs_started(module) == ["import subprocess", "4: os.execv"]
