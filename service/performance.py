"""The live late rate against the target, the revisions made, and drift alarms per segment.

Two views of the same ledger, counted by the database (`service.ledger.stats`):
- the late rate of quotes given in a window that have a recorded outcome (revisions count as
  quotes too: the customer was given both promises), with a Wilson interval;
- drift alarms (`models.monitoring`): per segment, the original promises whose deadline fell in
  the last `alarm_window_days`, all decided by now (an open order past its deadline is late),
  flagged when the interval lies wholly outside [target / factor, target * factor]. Beside an
  adaptive segment, where the served adaptive policy holds its buffer now (`service.control`):
  how much longer or shorter than the calibrated one, the level it covers on the calibration
  slice, and how many decided promises its controller has learnt;
- one verdict per segment (`verdicts`): the drift alarm's decided promises (an open order past
  its deadline is late, no outcome recorded) judged against the target itself, with the same
  interval; "too few outcomes yet" below `alarm_min_decided` decided promises (20 by default),
  "above target" only when the whole interval lies above the target. The staff page leads
  with this one, so the page never calls a store "on target" that its alarms call breaking,
  and shows beside each late count how many of them have no outcome recorded
  (`late_no_outcome`), so the page explains itself.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from models.monitoring import check_drift, wilson_interval
from service.control import ADAPTIVE, AdaptiveView
from service.ledger import Ledger
from service.ledger.stats import DecidedCounts, RevisionFacts, SegmentCounts
from service.schemas import (
    DriftAlarm,
    DriftReport,
    LateRate,
    RevisionSummary,
    StoreVerdict,
    Verdict,
    VerdictReport,
)
from service.settings import Settings, Stores

OVERALL = "all quotes"
Status = Literal["no outcomes", "on target", "above target"]


def late_rates(
    counts: Sequence[SegmentCounts], default_target: float | None
) -> tuple[LateRate, list[LateRate]]:
    """The late rate overall and per segment for these counts; the overall target is the mean
    over all quotes (`default_target` without quotes)."""
    overall = late_rate(SegmentCounts.total(counts, OVERALL, default_target))
    return overall, [late_rate(row) for row in counts]


def late_rate(counts: SegmentCounts) -> LateRate:
    """One row of the report, with a 95% Wilson interval so small counts are read carefully."""
    target = counts.target_late_rate
    if counts.outcomes == 0:
        return LateRate(
            segment=counts.segment,
            quotes=counts.quotes,
            outcomes=0,
            late=0,
            late_rate=None,
            late_rate_interval=None,
            target_late_rate=target,
            status="no outcomes",
        )
    rate = counts.late / counts.outcomes
    above = target is not None and rate > target
    status: Status = "above target" if above else "on target"
    return LateRate(
        segment=counts.segment,
        quotes=counts.quotes,
        outcomes=counts.outcomes,
        late=counts.late,
        late_rate=rate,
        late_rate_interval=list(wilson_interval(counts.late, counts.outcomes)),
        target_late_rate=target,
        status=status,
    )


def verdict_report(
    ledger: Ledger,
    settings: Settings,
    now_utc: dt.datetime,
    window_days: float,
    default_target: float | None,
    stores: Stores = None,
) -> VerdictReport:
    """One verdict per segment of `stores` (None: every store) over the original promises due
    in the last `window_days` (`LedgerStats.decided_in_window`, the drift alarm's rule), and
    one over all of them; `default_target` is the overall target when nothing is due."""
    rows = ledger.stats.decided_in_window(now_utc, window_days, stores)
    return verdicts(rows, settings, now_utc, window_days, default_target)


def verdicts(
    rows: Sequence[DecidedCounts],
    settings: Settings,
    now_utc: dt.datetime,
    window_days: float,
    default_target: float | None,
) -> VerdictReport:
    """`verdict_report` over rows already read: a segment's model versions are added up, its
    target is their mean weighted by decided promises."""
    by_segment: dict[str, list[DecidedCounts]] = {}
    for row in rows:
        by_segment.setdefault(row.segment, []).append(row)
    segments = [
        _verdict(segment, group, settings, None) for segment, group in sorted(by_segment.items())
    ]
    return VerdictReport(
        at=now_utc,
        window_days=window_days,
        confidence=settings.alarm_confidence,
        min_decided=settings.alarm_min_decided,
        overall=_verdict(OVERALL, rows, settings, default_target),
        segments=segments,
    )


def _verdict(
    segment: str,
    rows: Sequence[DecidedCounts],
    settings: Settings,
    default_target: float | None,
) -> StoreVerdict:
    decided = sum(row.decided for row in rows)
    late = sum(row.late for row in rows)
    target = (
        round(sum(row.target_late_rate * row.decided for row in rows) / decided, 12)
        if decided
        else default_target
    )
    interval = None
    verdict: Verdict = "too few outcomes yet"
    if decided >= max(1, settings.alarm_min_decided):
        interval = wilson_interval(late, decided, settings.alarm_confidence)
        above = target is not None and interval[0] > target
        verdict = "above target" if above else "on target"
    return StoreVerdict(
        segment=segment,
        decided=decided,
        late=late,
        late_no_outcome=sum(row.no_outcome for row in rows),
        late_rate=late / decided if decided else None,
        late_rate_interval=None if interval is None else list(interval),
        target_late_rate=target,
        verdict=verdict,
    )


def _adaptive_fields(adaptive: AdaptiveView | None, row: DecidedCounts) -> dict[str, Any]:
    """`DriftAlarm`'s adaptive fields for a row: the served buffer of its segment when its
    promises are adaptive ones, else nulls."""
    held = None
    if adaptive is not None and row.policy == ADAPTIVE:
        held = adaptive.segments.get(row.segment)
    if adaptive is None or held is None:
        return {"adaptive_level": None}
    in_hours = adaptive.scale == "hours"
    return {
        "adaptive_level": held.level,
        "adaptive_offset_hours": held.offset if in_hours else None,
        "adaptive_offset_ratio": None if in_hours else held.offset,
        "adaptive_learnt": held.learnt,
    }


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


def drift_report(
    ledger: Ledger,
    settings: Settings,
    now_utc: dt.datetime,
    adaptive: AdaptiveView | None = None,
    stores: Stores = None,
) -> DriftReport:
    """The drift check of every segment (per model version) with promises of `stores` (None:
    every store) due in the window; the rows of adaptive promises show `adaptive`'s buffer
    for their segment."""
    rows = ledger.stats.decided_in_window(now_utc, settings.alarm_window_days, stores)
    return drift_checks(rows, settings, now_utc, adaptive)


def drift_checks(
    rows: Sequence[DecidedCounts],
    settings: Settings,
    now_utc: dt.datetime,
    adaptive: AdaptiveView | None = None,
) -> DriftReport:
    """`drift_report` over rows already read from the ledger."""
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
                **_adaptive_fields(adaptive, row),
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
