"""Log lines are JSON events with their fields (`service.logs`)."""

from __future__ import annotations

import json
import logging

from service.logs import JsonFormatter


def test_log_lines_are_json_events_with_their_fields() -> None:
    record = logging.LogRecord(
        "service.quotes", logging.INFO, __file__, 1, "quote.issued", (), None
    )
    record.quote_id = "Q-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "quote.issued"
    assert line["quote_id"] == "Q-1"
    assert line["level"] == "info" and line["logger"] == "service.quotes"
