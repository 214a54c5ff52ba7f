"""Fold planning: where a walk-forward back-test cuts the history, apart from back-testing it.

`plan_folds` places the cut-offs (the last horizon ending a settle time before the extraction);
`refit_schedule` cuts one fold into the periods a production service would have refitted or
recalibrated at. Both work in the calendar's zone so that cut-offs stay on local midnights (or
whole hours) across daylight-saving changes. Times are epoch seconds (UTC).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from models.calendar import BusinessCalendar
from models.errors import SpecError
from models.units import iso_utc
from training.data import OrderTable
from training.spec import Spec
from training.train import settle_quantile_hours

# Share of the history (up to the last horizon's end) that the folds quote, by default; the
# first cut-off keeps the rest as training history.
DEFAULT_TEST_SHARE = 0.5
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """Where the folds fall: fold k quotes orders placed in [cutoffs_s[k], ends_s[k])."""

    cutoffs_s: tuple[float, ...]
    ends_s: tuple[float, ...]
    settle_hours: float  # the last fold ends this long before `as_of_s`
    as_of_s: float  # the extraction moment: outcomes after it are unknown

    @property
    def folds(self) -> int:
        return len(self.cutoffs_s)

    @property
    def horizon_hours(self) -> float:
        return (self.ends_s[-1] - self.cutoffs_s[-1]) / 3600.0


def plan_folds(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, folds: int | None = None
) -> FoldPlan:
    """Rolling cut-offs in time order, the last horizon ending a settle time before `as_of`.

    The settle time is the spec's `settle_quantile` of the orders' durations by Kaplan-Meier,
    those still open at `as_of` censored at their age (`training.train.settle_quantile_hours`). Each
    horizon is the spec's `horizon_days`, or else half the history up to the last end shared
    among the folds (whole days for daily promises, whole hours otherwise); cut-offs fall on
    local midnights for daily promises and on whole hours otherwise. Raises `SpecError` when the
    folds would reach back before the first order.
    """
    n_folds = spec.backtest.folds if folds is None else folds
    if n_folds < 1:
        raise SpecError(f"{spec.source}: a back-test needs at least one fold (got {n_folds})")
    done = ~table.is_open
    if int(done.sum()) == 0:
        raise SpecError(f"{table.source}: no order was ever fulfilled; nothing to back-test")
    reached_s = np.where(done, table.fulfilled_at_s, table.as_of_s)
    durations_h = (reached_s - table.ordered_at_s) / 3600.0  # an open order's: its age
    settle_hours = settle_quantile_hours(durations_h, ~done, spec.model.settle_quantile)
    as_of = table.as_of_s
    first = float(table.ordered_at_s.min())
    daily = spec.quote.unit == "day"
    end_local = _floor_local(as_of - settle_hours * 3600.0, calendar, daily)
    span_days = (end_local.timestamp() - first) / SECONDS_PER_DAY
    horizon_days = _horizon_days(spec, span_days, n_folds, daily)
    edges = [
        end_local - dt.timedelta(days=horizon_days * (n_folds - k)) for k in range(n_folds + 1)
    ]
    # Wall-clock arithmetic keeps cut-offs on local midnights across daylight-saving changes.
    edges_s = [_wall_instant(edge) for edge in edges]
    if edges_s[0] <= first:
        raise SpecError(
            f"{spec.source}: {n_folds} folds of {horizon_days:g} days reach back to "
            f"{iso_utc(edges_s[0])}, before the first order ({iso_utc(first)}); the history up "
            f"to the last fold's end spans {span_days:.1f} days: use fewer folds or a shorter "
            f"[backtest] horizon_days"
        )
    return FoldPlan(
        cutoffs_s=tuple(edges_s[:-1]),
        ends_s=tuple(edges_s[1:]),
        settle_hours=settle_hours,
        as_of_s=as_of,
    )


def _horizon_days(spec: Spec, span_days: float, n_folds: int, daily: bool) -> float:
    """The spec's horizon, else the default test share of the span over the folds, floored to
    whole days (daily promises) or whole hours."""
    if spec.backtest.horizon_days is not None:
        return float(spec.backtest.horizon_days)
    horizon_days = span_days * DEFAULT_TEST_SHARE / n_folds
    if daily:
        return max(1.0, math.floor(horizon_days))
    return max(1.0, math.floor(horizon_days * 24.0)) / 24.0


def refit_schedule(
    spec: Spec, calendar: BusinessCalendar, cutoff_s: float, end_s: float
) -> list[tuple[float, float, bool]]:
    """The periods of one fold as (start, end, refit) in time order, epoch seconds.

    A production service refits its model every `refit` days and recalibrates its buffer every
    `recalibrate` days (`Spec.refit_days`); the fold is cut into periods that each quote with
    the engine fitted (refit True) or recalibrated at their start from what was known then. The
    steps are wall-clock days in the calendar's zone, so weekly refits stay on local midnights
    across daylight-saving changes."""
    refit_days, recalibrate_days = spec.refit_days
    first = dt.datetime.fromtimestamp(cutoff_s, calendar.zone)
    starts: list[tuple[float, bool]] = []
    last_refit = 0.0
    j = 0
    while True:
        offset_days = j * recalibrate_days
        start = _wall_instant(first + dt.timedelta(days=offset_days))
        if j > 0 and start >= end_s:
            break
        refit = j == 0 or offset_days - last_refit >= refit_days - 1e-9
        if refit:
            last_refit = offset_days
        starts.append((start, refit))
        j += 1
    ends = [s for s, _ in starts[1:]] + [end_s]
    return [(s, e, r) for (s, r), e in zip(starts, ends, strict=True)]


def _floor_local(t: float, calendar: BusinessCalendar, daily: bool) -> dt.datetime:
    local = dt.datetime.fromtimestamp(t, calendar.zone)
    if daily:
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(minute=0, second=0, microsecond=0)


def _wall_instant(local: dt.datetime) -> float:
    # Aware arithmetic within one zone is wall-clock arithmetic; re-attaching the zone resolves
    # the new wall time to its instant.
    return local.replace(tzinfo=None).replace(tzinfo=local.tzinfo).timestamp()
