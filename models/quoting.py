"""Quoting: features -> promise. The only place where buffer and calendar apply.

The service calls `quote`, the back-test `quote_batch`: the same steps on the same numbers (the
tests hold every order quoted alone to its promise in a batch), so a back-test measures exactly
what production would have promised.

For an order placed at `ordered_at`:
1. the clock starts at `ordered_at`, or on the next open day after a cut-off or closed day;
2. the model expects `expected_hours` from the clock start;
3. the policy adds `buffer_hours >= 0`;
4. the calendar rounds the raw completion up to the unit and moves it off closed days.
Each step only ever moves the promise later, so it is never before the expected completion.

Inside, the scikit-learn model runs compiled (`models.fast`: the same numbers, bit for bit, at a
fraction of the cost), and the calendar's steps run as compiled loops over its day tables
(`models.calendar_loops`). One order goes through `quote_batch` as a batch of one: there is no
second path to keep in step. Every promise's back half (rounding, closed days, length) is
`promise_batch`, which revisions and the back-test's flat rule use too.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.buffers import BufferRule
from models.calendar import BusinessCalendar
from models.calendar_words import clock_start_reason, closed_days_text
from models.control import ControlState
from models.errors import InputError
from models.fast import CompiledTrees
from models.features import FeatureSchema
from models.kernels import usable_cores
from models.risk import RiskModel
from models.segments import Columns
from models.segments import segment_labels as segment_labels  # where training reads it
from models.units import HOURS_PER_UNIT, Unit

FloatArray = NDArray[np.float64]
UTC = dt.UTC
# A batch of at least twice this many orders is encoded slice by slice, each slice's trees
# predicting on another core meanwhile (`_predict`); below, one slice and no threads.
PIPELINE_SLICE = 12_500


@dataclass(frozen=True, slots=True)
class QuoteEngine:
    """Everything needed to quote, as plain data: what a bundle's serving form holds."""

    schema: FeatureSchema
    expected_trees: CompiledTrees  # the duration model, compiled: expected hours
    quantile_trees: CompiledTrees | None  # the quantile policy's model, compiled
    buffer_rule: BufferRule  # what the policy learnt (`models.buffers`)
    policy_name: str
    calendar: BusinessCalendar
    unit: Unit
    target_late_rate: float
    segments: tuple[str, ...]
    max_promise_units: float | None = None
    # Residual distributions for the risk of open orders (None in bundles made before them).
    risk: RiskModel | None = None

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
    columns: Columns,
    ordered_at_s: FloatArray,
    state: ControlState | None = None,
) -> QuoteBatch:
    """Quote many orders given their feature columns and order times (epoch seconds, UTC).

    Every column holds one value per order (shape (n,)); the answer's arrays have shape (n,).
    """
    calendar = engine.calendar
    rule = engine.buffer_rule
    n = int(ordered_at_s.size)
    with ThreadPoolExecutor(usable_cores()) if n >= 2 * PIPELINE_SLICE else nullcontext() as pool:
        predicted = _predict(engine, columns, ordered_at_s, pool)
        # What needs no expectation runs while the trees predict.
        resolved = rule.resolve_columns(columns, engine.segments, n, state)
        clock_start = calendar.clock_starts(ordered_at_s)
        expected, quantile = predicted()
    return promise_batch(
        calendar,
        engine.unit,
        engine.max_promise_units,
        ordered_at_s=ordered_at_s,
        clock_start_s=clock_start,
        expected_hours=expected,
        buffer_hours=rule.buffer_hours(resolved, expected, quantile),
        segments=resolved.segments,
        levels=resolved.levels,
    )


def _predict(
    engine: QuoteEngine,
    columns: Columns,
    ordered_at_s: FloatArray,
    pool: ThreadPoolExecutor | None,
) -> Callable[[], tuple[FloatArray, FloatArray | None]]:
    """Encode the orders and start their trees: (expected hours, quantile hours or None) once
    the returned function is called. With a `pool`, slices of `PIPELINE_SLICE` orders are
    encoded here one after another, each slice's trees running on a pool thread (the loops
    release the GIL) while the next is encoded. A row's prediction does not depend on how the
    batch is cut, and the inverse link runs once over the whole batch: the same numbers."""
    forest = [engine.expected_trees]
    if engine.quantile_trees is not None:
        forest.append(engine.quantile_trees)
    if pool is None:
        matrix = engine.schema.encode_at(columns, ordered_at_s, engine.calendar)
        hours = [trees.predict_hours(matrix) for trees in forest]
        return lambda: (hours[0], hours[1] if len(hours) > 1 else None)
    n = int(ordered_at_s.size)
    raw = [np.empty(n) for _ in forest]
    parts: list[Future[None]] = []
    names = engine.schema.feature_names
    for start in range(0, n, PIPELINE_SLICE):
        part = slice(start, min(start + PIPELINE_SLICE, n))
        matrix = engine.schema.encode_at(
            {name: columns[name][part] for name in names}, ordered_at_s[part], engine.calendar
        )
        for trees, out in zip(forest, raw, strict=True):
            parts.append(pool.submit(_predict_into, trees, matrix, out[part]))

    def result() -> tuple[FloatArray, FloatArray | None]:
        for done in parts:
            done.result()  # re-raises what a thread raised
        hours = [trees.hours(values) for trees, values in zip(forest, raw, strict=True)]
        return hours[0], hours[1] if len(hours) > 1 else None

    return result


def _predict_into(trees: CompiledTrees, matrix: FloatArray, out: FloatArray) -> None:
    out[:] = trees.predict_raw(matrix)


def promise_batch(
    calendar: BusinessCalendar,
    unit: Unit,
    max_promise_units: float | None,
    *,
    ordered_at_s: FloatArray,
    clock_start_s: FloatArray,
    expected_hours: FloatArray,
    buffer_hours: FloatArray,
    segments: list[str],
    levels: FloatArray,
) -> QuoteBatch:
    """The back half of every quote: orders whose clocks start at `clock_start_s`, expected to
    take `expected_hours` and given `buffer_hours` more, as promises (arrays of shape (n,)).

    The raw completion `clock_start_s + (expected_hours + buffer_hours) * 3600` is rounded up
    to the unit and moved off closed days, its length from the order counted in units and
    checked against `max_promise_units`, all by the calendar's compiled loop. `quote_batch`,
    the revisions (`models.revision`) and the back-test's flat rule all promise through here.
    """
    deadline, skipped, units, exceeds = calendar.promises(
        ordered_at_s, clock_start_s, expected_hours, buffer_hours, unit, max_promise_units
    )
    return QuoteBatch(
        ordered_at_s=ordered_at_s,
        clock_start_s=clock_start_s,
        expected_hours=expected_hours,
        buffer_hours=buffer_hours,
        deadline_s=deadline,
        closed_days_skipped=skipped,
        segments=segments,
        levels=levels,
        promise_units=units,
        exceeds_max_promise=exceeds,
    )


def quote(
    engine: QuoteEngine, orders: Sequence[Order], state: ControlState | None = None
) -> list[Promise]:
    """Quote orders one by one or in a batch; each answer carries its explanation.

    Raises `InputError` (field `ordered_at`) for an order time without a zone or outside the
    calendar's years; the promises are those `quote_batch` and `promise_at` give."""
    if not orders:
        return []
    for order in orders:
        at = order.ordered_at
        if at.tzinfo is None or at.utcoffset() is None:
            raise InputError(f"ordered_at {at.isoformat()} has no time zone", field="ordered_at")
    names = engine.schema.feature_names
    columns = {name: [order.features[name] for order in orders] for name in names}
    ordered_at_s = np.array([order.ordered_at.timestamp() for order in orders])
    batch = quote_batch(engine, columns, ordered_at_s, state)
    return [promise_at(engine, batch, i) for i in range(batch.size)]


def promise_at(engine: QuoteEngine, batch: QuoteBatch, i: int) -> Promise:
    """The i-th quote of a batch as a `Promise` with its explanation."""
    return _promise(
        engine,
        ordered_s=float(batch.ordered_at_s[i]),
        start_s=float(batch.clock_start_s[i]),
        expected_hours=float(batch.expected_hours[i]),
        buffer_hours=float(batch.buffer_hours[i]),
        deadline_s=float(batch.deadline_s[i]),
        promise_units=float(batch.promise_units[i]),
        level=float(batch.levels[i]),
        segment=batch.segments[i],
        closed_days_skipped=int(batch.closed_days_skipped[i]),
        exceeds_max_promise=bool(batch.exceeds_max_promise[i]),
    )


def _promise(
    engine: QuoteEngine,
    *,
    ordered_s: float,
    start_s: float,
    expected_hours: float,
    buffer_hours: float,
    deadline_s: float,
    promise_units: float,
    level: float,
    segment: str,
    closed_days_skipped: int,
    exceeds_max_promise: bool,
) -> Promise:
    """A `Promise` from one quote's numbers (epoch seconds, hours), explanation included."""
    ordered_at = _utc(ordered_s)
    clock_start = ordered_at if start_s == ordered_s else _utc(start_s)
    # As `QuoteBatch.expected_completion_s`: the same float operations, the same instant.
    expected_completion = _utc(start_s + expected_hours * 3600.0)
    deadline_at = _utc(deadline_s)
    promise_local = _promise_local(deadline_at.astimezone(engine.calendar.zone), engine.unit)
    return Promise(
        ordered_at=ordered_at,
        clock_start=clock_start,
        expected_completion=expected_completion,
        deadline_at=deadline_at,
        promise_local=promise_local,
        unit=engine.unit,
        expected_hours=expected_hours,
        buffer_hours=buffer_hours,
        promise_units=promise_units,
        policy=engine.policy_name,
        target_late_rate=engine.target_late_rate,
        level=level,
        segment=segment,
        closed_days_skipped=closed_days_skipped,
        exceeds_max_promise=exceeds_max_promise,
        explanation=_explanation(
            engine,
            ordered_at=ordered_at,
            clock_start=clock_start,
            expected_completion=expected_completion,
            promise_local=promise_local,
            promise_units=promise_units,
            level=level,
            closed_days_skipped=closed_days_skipped,
            exceeds_max_promise=exceeds_max_promise,
        ),
    )


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(seconds), tz=UTC)


def _promise_local(deadline_local: dt.datetime, unit: Unit) -> dt.datetime:
    if unit != "day":
        return deadline_local
    # The deadline is the midnight that ends the promised day: the day before it is promised.
    day = (deadline_local - dt.timedelta(seconds=1)).date()
    zone = deadline_local.tzinfo
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def _explanation(
    engine: QuoteEngine,
    *,
    ordered_at: dt.datetime,
    clock_start: dt.datetime,
    expected_completion: dt.datetime,
    promise_local: dt.datetime,
    promise_units: float,
    level: float,
    closed_days_skipped: int,
    exceeds_max_promise: bool,
) -> str:
    calendar = engine.calendar
    dates = calendar.dates
    expected_from_order_hours = (expected_completion - ordered_at).total_seconds() / 3600.0
    on_time = round(100 * level)
    if engine.unit == "day":
        expected = _count(max(1, math.ceil(expected_from_order_hours / 24.0 - 1e-9)), "day")
        promised = _count(int(promise_units), "day")
        when = dates.day(promise_local)
    else:
        minutes = engine.unit == "minute"
        scale = 60.0 if minutes else 1.0
        word = "minute" if minutes else "hour"
        expected = _count(max(1, math.ceil(expected_from_order_hours * scale - 1e-9)), word)
        promised = _count(math.ceil(promise_units - 1e-9), word)
        when = dates.day_and_clock(promise_local)
    sentence = (
        f"We expect {expected}; we promise {promised} ({when}) so that about {on_time} in 100 "
        f"such orders are ready on time."
    )
    notes = []
    if clock_start > ordered_at + _ONE_MINUTE:
        # The words of the rule are worked out only here, from the calendar's tables.
        reason = clock_start_reason(calendar, ordered_at)
        start = dates.day(clock_start.astimezone(calendar.zone))
        notes.append(f"The order came in {reason}, so the clock starts {start}.")
    if closed_days_skipped:
        skipped = _count(closed_days_skipped, "closed day")
        named = closed_days_text(calendar, promise_local.date(), closed_days_skipped)
        notes.append(
            f"The promise skips {skipped} ({named})." if named else f"The promise skips {skipped}."
        )
    if exceeds_max_promise:
        notes.append(
            f"This is longer than the {engine.max_promise_units:g} {engine.unit}s "
            f"customers accept: offer an alternative."
        )
    return " ".join([sentence, *notes])


_ONE_MINUTE = dt.timedelta(minutes=1)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
