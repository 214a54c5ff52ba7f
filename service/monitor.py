"""Drift alarms for a data scientist: the live late rate of each segment against its band.

    python -m service.monitor [--database-url URL] [--registry DIR] [--window-days D]
                              [--band-factor F] [--confidence C] [--min-decided N] [--json]

Prints, per segment and model version, the promises due in the window (all decided by now),
the late ones, the late rate with its interval, the target band, the status and, for adaptive
promises, where the served adaptive buffer stands now (replayed from the ledger like a
worker's, `service.control`): hours longer or shorter than calibrated, and the level it covers
on the calibration slice; then one line of advice per flagged segment. `--json` prints the
`DriftReport` instead, exactly as `/v1/performance` gives it in `drift`. With adaptive
promises in the window the adaptive columns need the served bundle from the registry; without
it they stay empty and a warning on stderr says why (the exit code still tells the alarms).

Exit codes, so cron or CI can act: 0 no alarm, 2 a segment is flagged, 1 a user mistake (bad
option, bad or unreachable database) with one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import ArgumentError, OperationalError

from models.errors import PromiseError
from models.registry import Registry
from service.control import ADAPTIVE, AdaptiveView, adaptive_view, control_state
from service.ledger import Ledger
from service.performance import drift_checks
from service.schemas import DriftAlarm, DriftReport
from service.settings import Settings

UTC = dt.UTC
EXIT_OK = 0
EXIT_USER_MISTAKE = 1
EXIT_ALARM = 2
# Option -> the Settings field it overrides.
OPTIONS = {
    "database_url": "--database-url",
    "registry": "--registry",
    "alarm_window_days": "--window-days",
    "alarm_band_factor": "--band-factor",
    "alarm_confidence": "--confidence",
    "alarm_min_decided": "--min-decided",
}
COLUMNS = (
    "segment",
    "model",
    "policy",
    "decided",
    "late",
    "late rate",
    "interval",
    "band",
    "status",
    "adaptive offset",
    "adaptive level",
)
NUMERIC = ("decided", "late", "late rate", "adaptive offset", "adaptive level")
PIPE_WIDTH = 240  # wide enough that a table written to a file or pipe is never wrapped
_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


class UserMistake(Exception):
    """A bad option or an unreachable database: one line for stderr, exit code 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is a user mistake (exit 1): exit 2 means an alarm."""

    def error(self, message: str) -> NoReturn:
        raise UserMistake(message)


def safe_url(url: str) -> str:
    """The database URL with any password replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", url)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields the options set (those left out come from PROMISE_*)."""
    given = {field: getattr(args, field) for field in OPTIONS}  # each option's dest
    return {field: value for field, value in given.items() if value is not None}


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment and the options; raises `UserMistake` naming the option
    (or PROMISE_ variable) of the first bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = OPTIONS[field] if field in overrides else f"PROMISE_{field.upper()}"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserMistake(f"{where}: {message}" if field else message) from err


def read_report(settings: Settings, now_utc: dt.datetime) -> tuple[DriftReport, str | None]:
    """Migrate the ledger, then check drift as of `now_utc`, with the served adaptive buffers;
    returns the report and a warning when they could not be shown. Raises `UserMistake` when
    the database cannot be reached."""
    where = safe_url(settings.database_url)
    try:
        ledger = Ledger.from_settings(settings)
    except (ArgumentError, ValueError) as err:
        raise UserMistake(f"--database-url: {where} is not a database URL ({err})") from err
    try:
        ledger.migrate()
        rows = ledger.stats.decided_in_window(now_utc, settings.alarm_window_days)
        adaptive, warning = None, None
        if any(row.policy == ADAPTIVE for row in rows):
            adaptive, warning = served_adaptive(ledger, settings.registry, now_utc)
        return drift_checks(rows, settings, now_utc, adaptive), warning
    except OperationalError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig else type(err).__name__
        raise UserMistake(f"the database {where} cannot be reached: {reason}") from err
    finally:
        ledger.close()


def served_adaptive(
    ledger: Ledger, registry: Path, now_utc: dt.datetime
) -> tuple[AdaptiveView | None, str | None]:
    """The buffers of the adaptive model the workers serve, replayed at `now_utc` (None when
    they serve another policy), or None and why they cannot be shown."""
    served = ledger.served_model.get()
    if served is None:
        return None, None
    try:
        bundles = Registry(registry)
        if bundles.manifest(served.version).policy != ADAPTIVE:
            return None, None
        engine = bundles.load(served.version).engine
    except PromiseError as err:
        return None, f"adaptive buffers not shown: {err}; pass --registry or set PROMISE_REGISTRY"
    return adaptive_view(engine, control_state(engine, ledger, now_utc)), None


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def span(values: list[float] | None) -> str:
    return "-" if values is None else f"{values[0]:.1%}-{values[1]:.1%}"


def offset(alarm: DriftAlarm) -> str:
    """How far the adaptive buffer moved: `+12.5 h`, or `+10% of expected` on the relative
    scale; `-` for other policies."""
    if alarm.adaptive_offset_hours is not None:
        return f"{alarm.adaptive_offset_hours:+.1f} h"
    if alarm.adaptive_offset_ratio is not None:
        return f"{alarm.adaptive_offset_ratio:+.0%} of expected"
    return "-"


def row_cells(alarm: DriftAlarm) -> list[str]:
    """One segment's row of the table, as text."""
    return [
        alarm.segment,
        alarm.model_version,
        alarm.policy,
        str(alarm.decided),
        str(alarm.late),
        percent(alarm.late_rate),
        span(alarm.late_rate_interval),
        span(alarm.band),
        f"{alarm.status} !" if alarm.alarm else alarm.status,
        offset(alarm),
        percent(alarm.adaptive_level),
    ]


def heading(report: DriftReport) -> str:
    """What was checked, in a sentence."""
    return (
        f"drift as of {report.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: promises due in the last "
        f"{report.window_days:g} days, band target / {report.band_factor:g} to target x "
        f"{report.band_factor:g}, {report.confidence:.0%} interval, alarms from "
        f"{report.min_decided} decided"
    )


def advice_lines(report: DriftReport) -> list[str]:
    """One line per flagged segment: which, and what to make of it."""
    return [
        f"{alarm.segment} ({alarm.model_version}): {alarm.advice}"
        for alarm in report.segments
        if alarm.alarm
    ]


def summary(report: DriftReport) -> str:
    if not report.segments:
        return f"no promises due in the last {report.window_days:g} days: nothing to check yet"
    if not report.alarms:
        checked = len(report.segments)
        return f"no alarms: {checked} {'segment' if checked == 1 else 'segments'} checked"
    flagged = "segment flagged" if report.alarms == 1 else "segments flagged"
    return f"{report.alarms} {flagged}:"


def exit_code(report: DriftReport) -> int:
    return EXIT_ALARM if report.alarms else EXIT_OK


def render(report: DriftReport, console: Console) -> None:
    """The report as a table and advice lines (plain text when not on a terminal)."""
    console.print(escape(heading(report)), highlight=False, soft_wrap=True)
    if report.segments:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in COLUMNS:
            numeric = column in NUMERIC
            table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
        for alarm in report.segments:
            table.add_row(
                *(escape(cell) for cell in row_cells(alarm)),
                style="bold red" if alarm.alarm else None,
            )
        console.print(table, highlight=False)
    console.print(escape(summary(report)), highlight=False, soft_wrap=True)
    for line in advice_lines(report):
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(
        allow_abbrev=False,
        prog="python -m service.monitor",
        description="Drift alarms: each segment's live late rate against its target band. "
        "Exit code 0: no alarm, 2: a segment is flagged, 1: a user mistake.",
    )
    parser.add_argument("--database-url", help="the ledger (default: PROMISE_DATABASE_URL)")
    parser.add_argument(
        "--registry",
        metavar="DIR",
        type=Path,
        help="the bundles, for the served adaptive buffers (default: PROMISE_REGISTRY)",
    )
    parser.add_argument(
        "--window-days",
        dest="alarm_window_days",
        metavar="DAYS",
        type=float,
        help="promises due in this many days (default 28)",
    )
    parser.add_argument(
        "--band-factor",
        dest="alarm_band_factor",
        metavar="F",
        type=float,
        help="the band runs from target / F to target x F (default 2)",
    )
    parser.add_argument(
        "--confidence",
        dest="alarm_confidence",
        metavar="C",
        type=float,
        help="confidence of the interval (default 0.95)",
    )
    parser.add_argument(
        "--min-decided",
        dest="alarm_min_decided",
        metavar="N",
        type=int,
        help="decided promises needed before any alarm (default 20)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the drift report as JSON instead"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (0 no alarm, 2 alarm, 1 user mistake)."""
    try:
        args = parse_args(argv)
        settings = load_settings(overrides_from(args))
        report, warning = read_report(settings, dt.datetime.now(UTC))
    except UserMistake as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_USER_MISTAKE
    if warning is not None:
        sys.stderr.write(f"warning: {warning}\n")
    if args.json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        terminal = sys.stdout.isatty()
        render(report, Console(file=sys.stdout, width=None if terminal else PIPE_WIDTH))
    return exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
