"""Quoting: features -> promise. The only place where buffer and calendar apply.

The service and the back-test both call `quote_batch` (the service through `quote`, which wraps
single orders), so a back-test measures exactly what production would have promised.

For an order placed at `ordered_at`:
1. the clock starts at `ordered_at`, or on the next open day after a cut-off or closed day;
2. the model expects `expected_hours` from the clock start;
3. the policy adds `buffer_hours >= 0`;
4. the calendar rounds the raw completion up to the unit and moves it off closed days.
Each step only ever moves the promise later, so it is never before the expected completion.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.features import FeatureSchema
from models.policies import AdaptiveState, BufferPolicy
from models.regressor import DurationRegressor, QuantileRegressor
from models.units import HOURS_PER_UNIT, Unit

FloatArray = NDArray[np.float64]
UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class QuoteEngine:
    """Everything needed to quote: what a bundle's model file holds."""

    schema: FeatureSchema
    regressor: DurationRegressor
    quantile_regressor: QuantileRegressor | None
    policy: BufferPolicy
    policy_name: str
    calendar: BusinessCalendar
    unit: Unit
    target_late_rate: float
    segments: tuple[str, ...]
    max_promise_units: float | None = None

    @property
    def hours_per_unit(self) -> float:
        return HOURS_PER_UNIT[self.unit]


@dataclass(frozen=True, slots=True)
class Order:
    """One order to quote: validated features (canonical labels) and when it was placed."""

    features: Mapping[str, object]
    ordered_at: dt.datetime  # timezone aware


@dataclass(frozen=True, slots=True)
class QuoteBatch:
    """Quotes for many orders at once, as arrays (seconds since the epoch, UTC)."""

    ordered_at_s: FloatArray
    clock_start_s: FloatArray
    expected_hours: FloatArray
    buffer_hours: FloatArray
    deadline_s: FloatArray
    closed_days_skipped: NDArray[np.int64]
    segments: list[str]
    levels: FloatArray
    promise_units: FloatArray  # promise length from the order, in units (days for `day`)
    exceeds_max_promise: NDArray[np.bool_]

    @property
    def size(self) -> int:
        return int(self.ordered_at_s.size)

    @property
    def expected_completion_s(self) -> FloatArray:
        return self.clock_start_s + self.expected_hours * 3600.0


@dataclass(frozen=True, slots=True)
class Promise:
    """A customer-facing promise with the numbers behind it."""

    ordered_at: dt.datetime
    clock_start: dt.datetime
    expected_completion: dt.datetime
    deadline_at: dt.datetime  # UTC; kept iff fulfilled_at <= deadline_at
    promise_local: dt.datetime  # the promised local day (start of it) or local time
    unit: Unit
    expected_hours: float
    buffer_hours: float
    promise_units: float
    policy: str
    target_late_rate: float
    level: float
    segment: str
    closed_days_skipped: int
    exceeds_max_promise: bool
    explanation: str

    @property
    def promise_date(self) -> dt.date:
        return self.promise_local.date()


def quote_batch(
    engine: QuoteEngine,
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]],
    ordered_at_s: FloatArray,
    state: AdaptiveState | None = None,
) -> QuoteBatch:
    """Quote many orders given their feature columns and order times (epoch seconds, UTC)."""
    calendar = engine.calendar
    parts = calendar.local_parts(ordered_at_s)
    matrix = engine.schema.encode(columns, parts)
    expected = engine.regressor.predict_hours(matrix)
    quantile = (
        None
        if engine.quantile_regressor is None
        else engine.quantile_regressor.predict_hours(matrix)
    )
    labels = segment_labels(columns, engine.segments, ordered_at_s.size)
    answer = engine.policy.buffers(expected, labels, quantile, state)
    clock_start = calendar.clock_starts(ordered_at_s)
    raw = clock_start + (expected + answer.buffer_hours) * 3600.0
    deadline, skipped = calendar.deadlines(raw, engine.unit)
    units = promise_units(calendar, engine.unit, ordered_at_s, deadline)
    limit = engine.max_promise_units
    exceeds = np.zeros(units.size, dtype=bool) if limit is None else units > limit + 1e-9
    return QuoteBatch(
        ordered_at_s=ordered_at_s,
        clock_start_s=clock_start,
        expected_hours=expected,
        buffer_hours=answer.buffer_hours,
        deadline_s=deadline,
        closed_days_skipped=skipped,
        segments=answer.segments,
        levels=answer.levels,
        promise_units=units,
        exceeds_max_promise=exceeds,
    )


def quote(
    engine: QuoteEngine, orders: Sequence[Order], state: AdaptiveState | None = None
) -> list[Promise]:
    """Quote orders one by one or in a batch; each answer carries its explanation."""
    if not orders:
        return []
    names = engine.schema.feature_names
    columns = {name: [order.features[name] for order in orders] for name in names}
    ordered_at_s = np.array([order.ordered_at.timestamp() for order in orders])
    batch = quote_batch(engine, columns, ordered_at_s, state)
    return [promise_at(engine, batch, i) for i in range(batch.size)]


def promise_at(engine: QuoteEngine, batch: QuoteBatch, i: int) -> Promise:
    """The i-th quote of a batch as a `Promise` with its explanation."""
    zone = engine.calendar.zone
    ordered_at = _utc(batch.ordered_at_s[i])
    deadline_at = _utc(batch.deadline_s[i])
    promise_local = _promise_local(deadline_at.astimezone(zone), engine.unit)
    promise = Promise(
        ordered_at=ordered_at,
        clock_start=_utc(batch.clock_start_s[i]),
        expected_completion=_utc(batch.expected_completion_s[i]),
        deadline_at=deadline_at,
        promise_local=promise_local,
        unit=engine.unit,
        expected_hours=float(batch.expected_hours[i]),
        buffer_hours=float(batch.buffer_hours[i]),
        promise_units=float(batch.promise_units[i]),
        policy=engine.policy_name,
        target_late_rate=engine.target_late_rate,
        level=float(batch.levels[i]),
        segment=batch.segments[i],
        closed_days_skipped=int(batch.closed_days_skipped[i]),
        exceeds_max_promise=bool(batch.exceeds_max_promise[i]),
        explanation="",
    )
    return _with_explanation(engine, promise)


def segment_labels(
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]], segments: Sequence[str], n: int
) -> list[tuple[str | None, ...]]:
    """Each order's tuple of segment values (empty tuples when there are no segments)."""
    if not segments:
        return [()] * n
    return list(zip(*(columns[name] for name in segments), strict=True))


def promise_units(
    calendar: BusinessCalendar, unit: Unit, ordered_at_s: FloatArray, deadline_s: FloatArray
) -> FloatArray:
    """Promise length from the order in units: local days between order and promised day
    for `day`, else hours or minutes from the order to the deadline."""
    if unit == "day":
        ordered_day = calendar.local_day_numbers(ordered_at_s)
        # The deadline is the midnight that ends the promised day.
        promised_day = calendar.local_day_numbers(deadline_s - 1.0)
        return (promised_day - ordered_day).astype(np.float64)
    return (deadline_s - ordered_at_s) / (HOURS_PER_UNIT[unit] * 3600.0)


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(seconds), tz=UTC)


def _promise_local(deadline_local: dt.datetime, unit: Unit) -> dt.datetime:
    if unit != "day":
        return deadline_local
    # The deadline is the midnight that ends the promised day: the day before it is promised.
    day = (deadline_local - dt.timedelta(seconds=1)).date()
    zone = deadline_local.tzinfo
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def _with_explanation(engine: QuoteEngine, promise: Promise) -> Promise:
    return replace(promise, explanation=explain(engine, promise))


def explain(engine: QuoteEngine, promise: Promise) -> str:
    """A short sentence a customer or staff member understands, with the numbers behind it."""
    zone = engine.calendar.zone
    expected_from_order_hours = (
        promise.expected_completion - promise.ordered_at
    ).total_seconds() / 3600.0
    on_time = round(100 * promise.level)
    if engine.unit == "day":
        expected = _count(max(1, math.ceil(expected_from_order_hours / 24.0 - 1e-9)), "day")
        promised = _count(int(promise.promise_units), "day")
        when = promise.promise_local.strftime("%a %d %b %Y")
    else:
        minutes = engine.unit == "minute"
        scale = 60.0 if minutes else 1.0
        word = "minute" if minutes else "hour"
        expected = _count(max(1, math.ceil(expected_from_order_hours * scale - 1e-9)), word)
        promised = _count(math.ceil(promise.promise_units - 1e-9), word)
        when = promise.promise_local.strftime("%a %d %b %H:%M")
    sentence = (
        f"We expect {expected}; we promise {promised} ({when}) so that about {on_time} in 100 "
        f"such orders are ready on time."
    )
    notes = []
    if promise.clock_start > promise.ordered_at + dt.timedelta(minutes=1):
        start = promise.clock_start.astimezone(zone).strftime("%a %d %b")
        notes.append(
            f"The order arrived after the cut-off or on a closed day, so the clock starts {start}."
        )
    if promise.closed_days_skipped:
        notes.append(f"The promise skips {_count(promise.closed_days_skipped, 'closed day')}.")
    if promise.exceeds_max_promise:
        notes.append(
            f"This is longer than the {engine.max_promise_units:g} {engine.unit}s "
            f"customers accept: offer an alternative."
        )
    return " ".join([sentence, *notes])


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
