"""Quoting in the back-test: what each rule promised the orders of a fold, and nothing scored.

Every engine quote goes through `models.quoting.quote_batch`, the function the service uses:
`quote_static` in one call, `quote_adaptive` bucket by bucket with the control state a running
service would have had. `rule_record` holds promises given by a rule without a model (the
business's own, one flat duration). A `QuoteRecord` carries what quoting knew (clock starts,
deadlines, promise lengths in units), so scoring reads them instead of asking the calendar again.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.buffers import AdaptiveBuffers
from models.calendar import BusinessCalendar
from models.control import ControlState, learn, with_nowcast
from models.quoting import QuoteBatch, QuoteEngine, quote_batch
from models.segments import distinct_labels
from models.units import Unit
from training.data import OrderTable
from training.spec import Spec

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

SECONDS_PER_DAY = 86_400.0
# A promise waiting to be learnt: (deadline, sequence number, segment path, was late).
Pending = tuple[float, int, tuple[str, ...], bool]


@dataclass(frozen=True, slots=True)
class QuoteRecord:
    """One rule's quotes for some orders: rows of the table and what was promised (aligned)."""

    rows: IntArray
    clock_start_s: FloatArray  # when each order's clock started (the calendar's cut-off rule)
    deadline_s: FloatArray  # promise kept iff fulfilled at or before it; NaN: no promise given
    promise_units: FloatArray  # order to deadline in units (days for `day`); NaN: no promise
    expected_hours: FloatArray  # the model's expectation from the clock start (NaN: no model)
    promised_hours: FloatArray  # expectation plus buffer, from the clock start (NaN: no model)
    fold: int


def concat(parts: Sequence[NDArray[Any]], dtype: type) -> NDArray[Any]:
    """The parts end to end as one array of `dtype` (empty when there are none)."""
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


def _record(rows: IntArray, batch: QuoteBatch, fold: int) -> QuoteRecord:
    return QuoteRecord(
        rows=rows,
        clock_start_s=batch.clock_start_s,
        deadline_s=batch.deadline_s,
        promise_units=batch.promise_units,
        expected_hours=batch.expected_hours,
        promised_hours=batch.expected_hours + batch.buffer_hours,
        fold=fold,
    )


def joined(parts: Sequence[QuoteRecord], fold: int) -> QuoteRecord:
    """One fold's record from the records of its refit periods (in time order)."""
    return QuoteRecord(
        rows=concat([p.rows for p in parts], np.intp),
        clock_start_s=concat([p.clock_start_s for p in parts], np.float64),
        deadline_s=concat([p.deadline_s for p in parts], np.float64),
        promise_units=concat([p.promise_units for p in parts], np.float64),
        expected_hours=concat([p.expected_hours for p in parts], np.float64),
        promised_hours=concat([p.promised_hours for p in parts], np.float64),
        fold=fold,
    )


def rule_record(
    calendar: BusinessCalendar,
    unit: Unit,
    *,
    rows: IntArray,
    ordered_at_s: FloatArray,
    clock_start_s: FloatArray,
    deadline_s: FloatArray,
    fold: int,
    promised_hours: float = math.nan,
) -> QuoteRecord:
    """Promises a rule without a model gave `rows` (placed at `ordered_at_s`, clocks started at
    `clock_start_s`): deadlines (NaN: no promise), each `promised_hours` long from the clock
    start (NaN: unknown), no expectation."""
    has_promise = ~np.isnan(deadline_s)
    safe_deadline = np.where(has_promise, deadline_s, ordered_at_s + 3600.0)
    units = np.where(
        has_promise, calendar.promise_lengths(ordered_at_s, safe_deadline, unit), np.nan
    )
    return QuoteRecord(
        rows=rows,
        clock_start_s=clock_start_s,
        deadline_s=deadline_s,
        promise_units=units,
        expected_hours=np.full(rows.size, np.nan),
        promised_hours=np.full(rows.size, promised_hours),
        fold=fold,
    )


def _columns(table: OrderTable, rows: IntArray) -> dict[str, NDArray[Any]]:
    return {name: values[rows] for name, values in table.columns.items()}


def quote_static(engine: QuoteEngine, table: OrderTable, rows: IntArray, fold: int) -> QuoteRecord:
    """Quote `rows` of the table in one call of the service's quoting function."""
    batch = quote_batch(engine, _columns(table, rows), table.ordered_at_s[rows])
    return _record(rows, batch, fold)


@dataclass(frozen=True, slots=True)
class Watch:
    """What a running service would know of every order of the table, for the nowcast: clock
    starts, the model's expectation as quoted (NaN before any model quoted it), and segment
    labels. Outcomes are read from the table only up to the moment of each look."""

    clock_start_s: FloatArray
    expected_hours: FloatArray  # filled in as the walk quotes (and for the history it starts on)
    # Each order's tuple of segment values, as an index into the few distinct ones.
    label_index: NDArray[np.int64]
    distinct_labels: list[tuple[str | None, ...]]

    @classmethod
    def of(cls, spec: Spec, table: OrderTable, calendar: BusinessCalendar) -> Watch:
        """Every order of the table watched, no expectation known yet."""
        segments = spec.quote.segments
        index, distinct = distinct_labels(
            {n: table.columns[n] for n in segments}, segments, table.size
        )
        return cls(
            clock_start_s=calendar.clock_starts(table.ordered_at_s),
            expected_hours=np.full(table.size, np.nan),
            label_index=index,
            distinct_labels=distinct,
        )

    def paths(self, policy: AdaptiveBuffers, rows: IntArray) -> list[tuple[str, ...]]:
        """`policy.paths` of the orders `rows`: resolved once per distinct tuple of labels."""
        resolved = policy.paths(self.distinct_labels)
        return list(map(resolved.__getitem__, self.label_index[rows].tolist()))


@dataclass(frozen=True, slots=True)
class AdaptiveStream:
    """The adaptive policy's running control state, and promises given but not yet decided.

    `pending` holds (deadline, sequence number, segment path, was late), sorted: a promise is
    learnt at its deadline, kept or broken, never before."""

    state: ControlState = dataclasses.field(default_factory=ControlState)
    pending: tuple[Pending, ...] = ()
    sequence: int = 0


def adaptive_bucket_seconds(unit: str) -> float:
    """How long the adaptive policy quotes with one state: a day for `day`, else an hour."""
    return SECONDS_PER_DAY if unit == "day" else 3600.0


def quote_adaptive(
    engine: QuoteEngine,
    table: OrderTable,
    rows: IntArray,
    start_s: float,
    end_s: float,
    stream: AdaptiveStream,
    watch: Watch,
    fold: int,
) -> tuple[QuoteRecord, AdaptiveStream]:
    """Quote `rows` (placed in [start_s, end_s)) bucket by bucket, as a service would have.

    Each bucket is quoted through `quote_batch` with the control state as of its start: every
    promise whose deadline had passed learnt (kept iff fulfilled by its deadline, an order still
    open at its deadline is late), and the nowcast of the orders in progress, from outcomes
    known by then only. Returns the quotes and the stream to carry on with."""
    policy = engine.buffer_rule
    if not isinstance(policy, AdaptiveBuffers):
        raise TypeError("quote_adaptive needs an engine with the adaptive policy")
    bucket = adaptive_bucket_seconds(engine.unit)
    ordered = table.ordered_at_s[rows]
    fulfilled = table.fulfilled_at_s[rows]
    state = stream.state
    pending = list(stream.pending)
    heapq.heapify(pending)
    sequence = stream.sequence
    n_buckets = max(1, math.ceil((end_s - start_s) / bucket))
    bounds = np.searchsorted(ordered, start_s + bucket * np.arange(n_buckets + 1), side="left")
    bounds[-1] = rows.size
    parts: list[QuoteRecord] = []
    for b in range(n_buckets):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if lo == hi:
            continue
        now = start_s + b * bucket
        state = _learn_due(state, pending, now, engine.target_late_rate, policy.leaks())
        if policy.use_nowcast:
            state = _with_nowcast(state, policy, table, watch, now)
        part = rows[lo:hi]
        batch = quote_batch(engine, _columns(table, part), ordered[lo:hi], state)
        parts.append(_record(part, batch, fold))
        kept = fulfilled[lo:hi] <= batch.deadline_s  # False while open: late at the deadline
        paths = watch.paths(policy, part)
        for i in range(hi - lo):
            heapq.heappush(
                pending, (float(batch.deadline_s[i]), sequence, paths[i], not bool(kept[i]))
            )
            sequence += 1
    record = joined(parts, fold)  # every row falls in one bucket, in time order
    return record, AdaptiveStream(state=state, pending=tuple(sorted(pending)), sequence=sequence)


def _learn_due(
    state: ControlState,
    pending: list[Pending],
    now_s: float,
    target_late_rate: float,
    leaks: Mapping[str, float],
) -> ControlState:
    """The state once every pending promise due by `now_s` is learnt (popped from the heap)."""
    decided: list[tuple[str, ...]] = []
    late: list[bool] = []
    while pending and pending[0][0] <= now_s:
        _, _, path, was_late = heapq.heappop(pending)
        decided.append(path)
        late.append(was_late)
    if not decided:
        return state
    return learn(state, decided, np.array(late), target_late_rate, leaks)


def _with_nowcast(
    state: ControlState, policy: AdaptiveBuffers, table: OrderTable, watch: Watch, now_s: float
) -> ControlState:
    """The state with the nowcast of the orders in progress at `now_s`: those quoted, started
    and not known fulfilled more than the widest nowcast window before `now_s`."""
    widest_s = max(c.window_hours for c in policy.controls.values()) * 3600.0
    known = np.isfinite(watch.expected_hours)
    seen = np.flatnonzero(
        known & (watch.clock_start_s < now_s) & ~(table.fulfilled_at_s <= now_s - widest_s)
    )
    medians, events = policy.nowcast(
        watch.clock_start_s[seen],
        watch.expected_hours[seen],
        table.fulfilled_at_s[seen],
        watch.paths(policy, seen),
        now_s,
    )
    return with_nowcast(state, medians, events)
