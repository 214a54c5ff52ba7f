"""Scoring: quote records against what really happened, and the figures the report gives.

A promise is kept iff the order was fulfilled at or before its deadline. An order still open at
the extraction moment (`as_of`) whose deadline had passed is known late; one whose deadline lies
after it has an unknown outcome and is left out (counted as `n_unknown`). Everything a quote
knew (clock start, deadline, promise length in units) comes from its record; only the day an
order was ready is read from the calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.segments import distinct_labels, segment_key
from models.units import SECONDS_PER_UNIT
from training.backtest.replay import QuoteRecord, concat
from training.backtest.report_data import Figures
from training.data import OrderTable
from training.spec import Spec

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Scored:
    """Quotes scored against what happened, one entry per quoted order (all arrays aligned).

    Only `known` entries count: fulfilled by `as_of`, or still open with the deadline passed."""

    rows: IntArray
    fold: NDArray[np.int64]
    ordered_at_s: FloatArray
    clock_start_s: FloatArray  # as quoted
    deadline_s: FloatArray
    known: BoolArray
    late: BoolArray  # known and late
    impressed: BoolArray  # kept, ready at least one unit before the promised one
    promise_hours: FloatArray  # order to deadline
    promise_units: FloatArray  # order to promise in units (whole days for `day`)
    early_hours: FloatArray  # deadline - fulfilment where kept, else NaN
    early_units: FloatArray  # units early (negative: late), NaN where unknown or open
    late_hours: FloatArray  # fulfilment (or `as_of` while open) - deadline where late, else NaN
    expected_hours: FloatArray
    promised_hours: FloatArray
    actual_hours: FloatArray  # clock start to fulfilment, NaN while open
    segment: NDArray[np.object_]  # the order's own segment key (not the one that served it)


def score(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    as_of_s: float,
    records: Sequence[QuoteRecord],
) -> Scored:
    """Score quote records (several folds) against the table's outcomes as of `as_of_s`."""
    unit = spec.quote.unit
    rows = concat([r.rows for r in records], np.intp)
    deadline = concat([r.deadline_s for r in records], np.float64)
    fold = concat([np.full(r.rows.size, r.fold, dtype=np.int64) for r in records], np.int64)
    start = concat([r.clock_start_s for r in records], np.float64)
    ordered = table.ordered_at_s[rows]
    fulfilled = table.fulfilled_at_s[rows]
    has_promise = ~np.isnan(deadline)
    is_done = ~np.isnan(fulfilled)
    known = has_promise & (is_done | (deadline < as_of_s))
    kept = known & (fulfilled <= deadline)
    late = known & ~kept
    safe_deadline = np.where(has_promise, deadline, ordered + 3600.0)
    safe_fulfilled = np.where(is_done, fulfilled, ordered)
    unit_s = float(SECONDS_PER_UNIT[unit])
    if unit == "day":
        promised_day = calendar.local_day_numbers(safe_deadline - 1.0)
        ready_day = calendar.local_day_numbers(safe_fulfilled)
        early_units = (promised_day - ready_day).astype(np.float64)
        impressed = kept & (ready_day < promised_day)
    else:
        early_units = (safe_deadline - safe_fulfilled) / unit_s
        impressed = kept & (safe_fulfilled <= safe_deadline - unit_s)
    return Scored(
        rows=rows,
        fold=fold,
        ordered_at_s=ordered,
        clock_start_s=start,
        deadline_s=deadline,
        known=known,
        late=late,
        impressed=impressed,
        promise_hours=np.where(has_promise, (deadline - ordered) / 3600.0, np.nan),
        promise_units=concat([r.promise_units for r in records], np.float64),
        early_hours=np.where(kept, (deadline - fulfilled) / 3600.0, np.nan),
        early_units=np.where(known & is_done, early_units, np.nan),
        late_hours=np.where(
            late, (np.where(is_done, fulfilled, as_of_s) - deadline) / 3600.0, np.nan
        ),
        expected_hours=concat([r.expected_hours for r in records], np.float64),
        promised_hours=concat([r.promised_hours for r in records], np.float64),
        actual_hours=np.where(is_done, (fulfilled - start) / 3600.0, np.nan),
        segment=_segment_keys(spec, table, rows),
    )


def _segment_keys(spec: Spec, table: OrderTable, rows: IntArray) -> NDArray[np.object_]:
    segments = spec.quote.segments
    if not segments:
        return np.full(rows.size, "", dtype=object)
    # Few distinct tuples of segment values, many orders: each key is joined once.
    index, distinct = distinct_labels(
        {n: table.columns[n][rows] for n in segments}, segments, rows.size
    )
    keys = np.empty(len(distinct), dtype=object)
    keys[:] = [segment_key(values, len(segments)) for values in distinct]
    return keys[index]


def figures(scored: Scored, mask: BoolArray | None = None) -> Figures:
    """The report's figures for the scored quotes selected by `mask` (all when None)."""
    selected = np.ones(scored.rows.size, dtype=bool) if mask is None else mask
    known = selected & scored.known
    kept = known & ~scored.late
    n = int(known.sum())
    n_late = int((known & scored.late).sum())
    n_impressed = int((known & scored.impressed).sum())
    return Figures(
        late_rate=share(n_late, n),
        n_quotes=n,
        n_late=n_late,
        n_unknown=int((selected & ~scored.known & ~np.isnan(scored.deadline_s)).sum()),
        mean_promise_hours=mean(scored.promise_hours[known]),
        median_promise_hours=median(scored.promise_hours[known]),
        mean_promise_units=mean(scored.promise_units[known]),
        median_promise_units=median(scored.promise_units[known]),
        mean_early_hours=mean(scored.early_hours[kept]),
        median_early_hours=median(scored.early_hours[kept]),
        mean_early_units=mean(scored.early_units[kept]),
        mean_late_hours=mean(scored.late_hours[known & scored.late]),
        impressed=share(n_impressed, n),
        satisfied=share(n - n_late - n_impressed, n),
        disappointed=share(n_late, n),
    )


def share(part: int, whole: int) -> float | None:
    """part / whole, None when there is no whole."""
    return None if whole == 0 else part / whole


def mean(values: FloatArray) -> float | None:
    """The mean of the finite values, None when there are none."""
    finite = values[np.isfinite(values)]
    return None if finite.size == 0 else float(finite.mean())


def median(values: FloatArray) -> float | None:
    """The median of the finite values, None when there are none."""
    finite = values[np.isfinite(values)]
    return None if finite.size == 0 else float(np.median(finite))


def mae_hours(scored: Scored, mask: BoolArray | None = None) -> float | None:
    """Mean absolute error of the model's expectation where the duration is known."""
    error = np.abs(scored.actual_hours - scored.expected_hours)
    return mean(error if mask is None else error[mask])


def pinball_loss(actual: FloatArray, predicted: FloatArray, quantile: float) -> float | None:
    """Mean pinball (quantile) loss in hours where both are known; None if none are."""
    ok = np.isfinite(actual) & np.isfinite(predicted)
    if not ok.any():
        return None
    diff = actual[ok] - predicted[ok]
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))
