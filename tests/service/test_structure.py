"""Imports point service -> models only, and log lines are JSON events."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

from service.logs import JsonFormatter

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_service_never_imports_training() -> None:
    files = sorted(SERVICE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        assert "training" not in _imported_roots(path), path


def test_log_lines_are_json_events_with_their_fields() -> None:
    record = logging.LogRecord(
        "service.quotes", logging.INFO, __file__, 1, "quote.issued", (), None
    )
    record.quote_id = "Q-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "quote.issued"
    assert line["quote_id"] == "Q-1"
    assert line["level"] == "info" and line["logger"] == "service.quotes"
