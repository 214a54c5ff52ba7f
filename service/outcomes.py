"""Bulk import of outcomes from CSV into the ledger.

    promise import-outcomes FILE.csv [--database-url URL]

(the command is `service.commands`). The file has a header with at least `quote_id` and
`fulfilled_at` (ISO 8601 with a time zone; empty = still open, skipped). The whole file is
checked first: any bad row stops the import with an error naming the file, line and column, and
nothing is recorded. Then each outcome is recorded once, exactly as
`POST /v1/quotes/{id}/outcome` would, and the report counts what was recorded now, what was
recorded before, ids the ledger does not know, and conflicts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import InputError
from service.ledger import Ledger
from service.ledger.outcomes import OUTCOME_CHUNK

UTC = dt.UTC
COLUMNS = ("quote_id", "fulfilled_at")
MAX_REPORTED_ERRORS = 20
Progress = Callable[[int, int], None]  # (outcomes recorded so far, outcomes to record)


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One outcome read from the file, with its line number."""

    line: int
    quote_id: str
    fulfilled_at: dt.datetime


@dataclass
class ImportReport:
    """What an import did; the lists hold (line, quote id) for rows needing attention."""

    rows: int = 0
    still_open: int = 0
    recorded: int = 0
    already_recorded: int = 0
    unknown: list[tuple[int, str]] = field(default_factory=list)
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    before_order: list[tuple[int, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as short lines of text for the terminal."""
        out = [
            f"rows read: {self.rows}",
            f"recorded: {self.recorded}",
            f"already recorded: {self.already_recorded}",
            f"unknown quote ids: {len(self.unknown)}",
            f"conflicting (a different outcome was recorded before): {len(self.conflicts)}",
            f"fulfilled before the order was placed: {len(self.before_order)}",
            f"still open (empty fulfilled_at, skipped): {self.still_open}",
        ]
        for title, rows in (
            ("unknown", self.unknown),
            ("conflict", self.conflicts),
            ("before order", self.before_order),
        ):
            out.extend(
                f"  line {line}: {title}: {quote_id!r}"
                for line, quote_id in rows[:MAX_REPORTED_ERRORS]
            )
        return out


def read_outcomes(
    path: Path, now_utc: dt.datetime, clock_skew_seconds: float = 300.0
) -> tuple[list[OutcomeRow], int]:
    """The outcomes in a CSV file and the count of still-open rows; raises `InputError`
    naming the file, line and column of every bad row (up to 20)."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: the file is empty; expected a header with {', '.join(COLUMNS)}")
    names = [name.strip() for name in header]
    for column in COLUMNS:
        if column not in names:
            raise InputError(
                f"{path}, line 1: no column {column!r} (columns: {', '.join(names)})", field=column
            )
    at = {column: names.index(column) for column in COLUMNS}
    latest = now_utc + dt.timedelta(seconds=clock_skew_seconds)
    rows: list[OutcomeRow] = []
    problems: list[tuple[str, str]] = []
    still_open = 0
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        quote_id = _cell(record, at["quote_id"])
        fulfilled = _cell(record, at["fulfilled_at"])
        if not quote_id:
            problems.append(("quote_id", f"{path}, line {line}, column quote_id: empty"))
            continue
        if not fulfilled:
            still_open += 1
            continue
        when = _parse_time(fulfilled)
        if isinstance(when, str):
            problems.append(("fulfilled_at", f"{path}, line {line}, column fulfilled_at: {when}"))
        elif when > latest:
            problems.append(
                (
                    "fulfilled_at",
                    f"{path}, line {line}, column fulfilled_at: {fulfilled!r} is in the future",
                )
            )
        else:
            rows.append(OutcomeRow(line, quote_id, when))
    if problems:
        shown = "; ".join(message for _, message in problems[:MAX_REPORTED_ERRORS])
        more = (
            f" (and {len(problems) - MAX_REPORTED_ERRORS} more)"
            if len(problems) > MAX_REPORTED_ERRORS
            else ""
        )
        raise InputError(
            f"{len(problems)} bad rows, nothing was imported: {shown}{more}", field=problems[0][0]
        )
    return rows, still_open


def import_outcomes(
    path: Path,
    ledger: Ledger,
    now_utc: dt.datetime,
    clock_skew_seconds: float = 300.0,
    progress: Progress | None = None,
) -> ImportReport:
    """Check the whole file, then record its outcomes, telling `progress` (done, total) after
    each transaction; returns the counts."""
    rows, still_open = read_outcomes(path, now_utc, clock_skew_seconds)
    items = [(row.quote_id, row.fulfilled_at) for row in rows]
    results = []
    for start in range(0, len(items), OUTCOME_CHUNK):  # one transaction each, as record_many's
        chunk = items[start : start + OUTCOME_CHUNK]
        results.extend(ledger.outcomes.record_many(chunk, now_utc, source="csv"))
        if progress is not None:
            progress(len(results), len(items))
    report = ImportReport(rows=len(rows) + still_open, still_open=still_open)
    for row, result in zip(rows, results, strict=True):
        if result.status == "recorded":
            report.recorded += 1
        elif result.status == "already_recorded":
            report.already_recorded += 1
        elif result.status == "unknown":
            report.unknown.append((row.line, row.quote_id))
        elif result.status == "conflict":
            report.conflicts.append((row.line, row.quote_id))
        else:
            report.before_order.append((row.line, row.quote_id))
    return report


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file") from err
    except OSError as err:
        raise InputError(f"{path}: cannot be read: {err.strerror}") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 text (byte "
            f"0x{raw[err.start]:02x} at character {column})"
        ) from err


def _cell(record: Sequence[str], index: int) -> str:
    return record[index].strip() if index < len(record) else ""


def _parse_time(text: str) -> dt.datetime | str:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return f"{text!r} is not an ISO 8601 time such as 2026-11-23T15:30:00+00:00"
    if value.tzinfo is None or value.utcoffset() is None:
        return f"{text!r} has no time zone; add one, e.g. {text}+00:00 or {text}Z"
    return value.astimezone(UTC)
