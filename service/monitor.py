"""Drift alarms for a data scientist: the live late rate of each segment against its band.

    promise monitor [--database-url URL] [--registry DIR] [--window-days D]
                    [--band-factor F] [--confidence C] [--min-decided N] [--json]

(the command is `service.commands`). It prints, per segment and model version, the promises due
in the window (all decided by now), the late ones, the late rate with its interval, the target
band, the status and, for adaptive promises, where the served adaptive buffer stands now
(replayed from the ledger like a worker's, `service.control`): hours longer or shorter than
calibrated, and the level it covers on the calibration slice; then one line of advice per
flagged segment. `--json` prints the `DriftReport` instead, exactly as `/v1/performance` gives
it in `drift`. With adaptive promises in the window the adaptive columns need the served bundle
from the registry; without it they stay empty and a warning on stderr says why (the exit code
still tells the alarms).

Exit codes, so cron or CI can act: 0 no alarm, 2 a segment is flagged, 1 a user mistake (bad
option, bad or unreachable database: a `SettingsError`) with one line on stderr saying why.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.errors import PromiseError
from models.registry import Registry
from service.command_settings import migrated_ledger
from service.control import ADAPTIVE, AdaptiveView, adaptive_view, control_state
from service.ledger import Ledger
from service.performance import drift_checks
from service.schemas import DriftAlarm, DriftReport
from service.settings import Settings

UTC = dt.UTC
EXIT_OK = 0
EXIT_ALARM = 2
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


def read_report(settings: Settings, now_utc: dt.datetime) -> tuple[DriftReport, str | None]:
    """Migrate the ledger, then check drift as of `now_utc`, with the served adaptive buffers;
    returns the report and a warning when they could not be shown. Raises `SettingsError`
    when the database cannot be reached."""
    with migrated_ledger(settings) as ledger:
        rows = ledger.stats.decided_in_window(now_utc, settings.alarm_window_days)
        adaptive, warning = None, None
        if any(row.policy == ADAPTIVE for row in rows):
            adaptive, warning = served_adaptive(ledger, settings.registry, now_utc)
        return drift_checks(rows, settings, now_utc, adaptive), warning


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
