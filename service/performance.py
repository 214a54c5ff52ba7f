"""The live late rate against the target, from the ledger's counts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Literal

from service.ledger import SegmentCounts
from service.schemas import LateRate, PerformanceResponse

OVERALL = "all quotes"
Z_95 = 1.959964
Status = Literal["no outcomes", "on target", "above target"]


def performance_report(
    counts: Sequence[SegmentCounts],
    since: dt.datetime | None,
    until: dt.datetime | None,
    default_target: float | None,
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
    return PerformanceResponse(since=since, until=until, overall=overall, segments=segments)


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


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (n > 0), clipped to [0, 1]."""
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
