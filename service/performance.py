"""The live late rate against the target, the revisions made, and drift alarms per segment.

Two views of the same ledger:
- the late rate of quotes given in a window that have a recorded outcome (revisions count as
  quotes too: the customer was given both promises), with a Wilson interval;
- drift alarms (`models.monitoring`): per segment, the original promises whose deadline fell in
  the last `alarm_window_days`, all decided by now (an open order past its deadline is late),
  flagged when the interval lies wholly outside [target / factor, target * factor]. The
  adaptive policy's current level is shown beside its segment.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from typing import Literal

from models.monitoring import check_drift, wilson_interval
from service.ledger import Ledger, RevisionFacts, SegmentCounts
from service.schemas import (
    DriftAlarm,
    DriftReport,
    LateRate,
    PerformanceResponse,
    RevisionSummary,
)
from service.settings import Settings

OVERALL = "all quotes"
Status = Literal["no outcomes", "on target", "above target"]


def live_performance(
    ledger: Ledger,
    settings: Settings,
    since: dt.datetime | None,
    until: dt.datetime | None,
    default_target: float | None,
    now_utc: dt.datetime,
) -> PerformanceResponse:
    """The whole report from the ledger: quotes given in [since, until), drift as of now."""
    return performance_report(
        ledger.segment_counts(since, until),
        since,
        until,
        default_target,
        ledger.revision_facts(since, until),
        drift_report(ledger, settings, now_utc),
    )


def performance_report(
    counts: Sequence[SegmentCounts],
    since: dt.datetime | None,
    until: dt.datetime | None,
    default_target: float | None,
    revisions: Sequence[RevisionFacts],
    drift: DriftReport,
) -> PerformanceResponse:
    """Late rate overall and per segment for quotes given in [since, until)."""
    quotes = sum(row.quotes for row in counts)
    target = (
        round(sum(row.target_late_rate * row.quotes for row in counts) / quotes, 12)
        if quotes
        else default_target
    )
    overall = late_rate(
        OVERALL,
        quotes,
        sum(row.outcomes for row in counts),
        sum(row.late for row in counts),
        target,
    )
    segments = [
        late_rate(row.segment, row.quotes, row.outcomes, row.late, row.target_late_rate)
        for row in counts
    ]
    return PerformanceResponse(
        since=since,
        until=until,
        overall=overall,
        segments=segments,
        revisions=revision_summary(revisions),
        drift=drift,
    )


def late_rate(
    segment: str, quotes: int, outcomes: int, late: int, target: float | None
) -> LateRate:
    """One row of the report, with a 95% Wilson interval so small counts are read carefully."""
    if outcomes == 0:
        return LateRate(
            segment=segment,
            quotes=quotes,
            outcomes=0,
            late=0,
            late_rate=None,
            late_rate_interval=None,
            target_late_rate=target,
            status="no outcomes",
        )
    rate = late / outcomes
    above = target is not None and rate > target
    status: Status = "above target" if above else "on target"
    return LateRate(
        segment=segment,
        quotes=quotes,
        outcomes=outcomes,
        late=late,
        late_rate=rate,
        late_rate_interval=list(wilson_interval(late, outcomes)),
        target_late_rate=target,
        status=status,
    )


def revision_summary(facts: Sequence[RevisionFacts]) -> RevisionSummary:
    """How many revisions, how long before the original promise (median), how they ended."""
    decided = [f.was_late for f in facts if f.was_late is not None]
    return RevisionSummary(
        revisions=len(facts),
        median_hours_before_original_promise=(
            statistics.median(f.hours_before_original for f in facts) if facts else None
        ),
        with_outcome=len(decided),
        late=sum(decided),
    )


def drift_report(ledger: Ledger, settings: Settings, now_utc: dt.datetime) -> DriftReport:
    """The drift check of every segment (per model version) with promises due in the window."""
    window = dt.timedelta(days=settings.alarm_window_days)
    rows = ledger.decided_counts(now_utc - window, now_utc)
    states = {
        version: ledger.adaptive_state(version)
        for version in {row.model_version for row in rows if row.policy == "adaptive"}
    }
    alarms = []
    for row in rows:
        check = check_drift(
            row.late,
            row.decided,
            row.target_late_rate,
            band_factor=settings.alarm_band_factor,
            confidence=settings.alarm_confidence,
            min_decided=settings.alarm_min_decided,
        )
        state = states.get(row.model_version)
        alarms.append(
            DriftAlarm(
                segment=row.segment,
                model_version=row.model_version,
                policy=row.policy,
                decided=check.decided,
                late=check.late,
                late_rate=check.late_rate,
                late_rate_interval=None if check.interval is None else list(check.interval),
                target_late_rate=row.target_late_rate,
                band=list(check.band),
                status=check.status,
                alarm=check.alarm,
                advice=check.advice(),
                adaptive_level=(
                    None if state is None else 1.0 - state.alpha(row.segment, row.target_late_rate)
                ),
            )
        )
    return DriftReport(
        at=now_utc,
        window_days=settings.alarm_window_days,
        band_factor=settings.alarm_band_factor,
        confidence=settings.alarm_confidence,
        min_decided=settings.alarm_min_decided,
        alarms=sum(alarm.alarm for alarm in alarms),
        segments=alarms,
    )
