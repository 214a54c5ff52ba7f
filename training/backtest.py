"""Walk-forward back-test: how often would our promises have been broken, and at what length?

`run_backtest` answers with the JSON report (`backtest_summary` with the few figures a bundle's
manifest records). The protocol (DESIGN.md, issue 9):

```
history ────────────────────────────────┬──────┬──────┬──────┬──────┬──────┬─ settle ─┤ as_of
                                        c0     c1     c2     c3     c4    end
fold k: fit + calibrate on what was known at c_k, quote the orders placed in [c_k, c_k+1)
```

- Cut-offs are in time order. At each one the model and every policy are fitted by
  `training.train` from what was known then only (orders placed before it, outcomes of those
  fulfilled before it, and which were still open); the model is fitted once per fold and every
  policy and trade-off level is calibrated on it.
- The orders of the next horizon are quoted through `models.quoting.quote_batch`, the function
  the service uses, and scored against what really happened: a promise is kept iff the order was
  fulfilled at or before its deadline. An order still open at the extraction moment (`as_of`)
  whose deadline had passed is known late; one whose deadline lies after it has an unknown
  outcome and is excluded (and counted as `n_unknown`).
- The last horizon ends a settle time (the spec's `settle_quantile` of the durations, orders
  still open at `as_of` censored at their age) before `as_of`, so almost every order it holds
  is observed.
- Inside each fold the engine is refitted and recalibrated on production's cadence
  (`refit_schedule`: weekly for date promises, daily for hour and minute promises, or the
  spec's `[backtest] refit_every` / `recalibrate_every`), each period quoted by the engine
  fitted at its start from what was known then. Fold diagnostics report the fit at the fold's
  cut-off; the quantile policy's own model is refitted once per fold and level.
- The adaptive policy quotes in buckets (one day for daily promises, one hour otherwise) with its
  control state as of the bucket's start (`models.control`): every promise is learnt at its
  deadline, kept or broken (an order still open at its deadline is late), never before; the
  nowcast reads the orders in progress with only the outcomes known by then. Its state carries
  across refits and folds, as a running service's would.

Two effects that break naive back-tests are reported per fold (`folds`):
- right-censoring: how many orders were open at the cut-off, and the late rate a naive
  calibration (the latest orders fulfilled before the cut-off, open ones dropped) would have had
  next to ours;
- drift: the median duration of the fold's orders against the training slice's, the model's
  median residual on the calibration slice against the fold's, and the static (conformal)
  against the adaptive late rate.

Orders at risk (`at_risk`) replays the call list a monitor would have kept: each quoted order is
watched by the risk model fitted at its fold's cut-off (`models.risk`), and is flagged at a
threshold when its risk of missing the promise reaches it while the order is still open, at
least one unit before the
deadline (a warning that comes later is too late to act on). Per policy and threshold the report
gives the share of late orders warned of (recall), the share of warnings about orders that came
in time (false alarms), the median warning, and how often an honest revision at the warning
would itself have been broken (near the target if the risk model is honest).

The trade-off curve recalibrates each policy family at `TRADEOFF_TARGETS` on the same fold models
(the quantile family refits its quantile model per level: most of a full run's time), and sweeps
a model-free `flat` rule that promises every order the same duration, so a report can say how
long a promise the engine needs against one duration for all at the same late rate.

Durations are hours unless a name says otherwise; times are epoch seconds (UTC) inside and ISO
8601 in the report; rates are shares in [0, 1].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from models.calendar import BusinessCalendar
from models.control import ControlState, learn, with_nowcast
from models.errors import SpecError
from models.policies import (
    POLICY_NAMES,
    AdaptivePolicy,
    CalibrationSlice,
    make_policy,
    segment_keys,
)
from models.quoting import QuoteBatch, QuoteEngine, promise_units, quote_batch, segment_labels
from models.regressor import QuantileRegressor
from models.risk import RiskModel, flag_elapsed_hours, revised_hours
from models.units import HOURS_PER_UNIT, SECONDS_PER_UNIT, Unit
from training.data import OrderTable
from training.spec import Spec
from training.train import FitReport, FoldModel, calibrate, fit_model, settle_quantile_hours

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

# (what is being done, steps done, steps in all): drives a progress bar.
Progress = Callable[[str, int, int], None]

COMPANY = "company_promise"
FLAT = "flat"
# Share of the history (up to the last horizon's end) that the folds quote, by default; the
# first cut-off keeps the rest as training history.
DEFAULT_TEST_SHARE = 0.5
# Target late rates swept for each policy family's trade-off curve.
TRADEOFF_TARGETS: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30, 0.40)
# Every policy run is also run at these targets, for the scorecard (kept in `WalkForward.tradeoff`
# under (policy, target) like a trade-off level).
SCORECARD_TARGETS: tuple[float, ...] = (0.05, 0.10)
# The flat rule is swept over whole units between these quantiles of the quoted orders' durations.
FLAT_QUANTILES = (0.3, 0.998)
FLAT_MAX_POINTS = 40
MIN_FLAT_POINTS = 10
# Earliness histogram: at most this many bins, tails folded into the end bins.
EARLINESS_BINS = 40
SECONDS_PER_DAY = 86_400.0
# Risk thresholds at which the call list of orders at risk is replayed.
AT_RISK_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
SUMMARY_AT_RISK_THRESHOLD = 0.5  # the one a bundle's manifest records
# Risks and warning times are ratios and differences of floats: within these they tie.
RISK_TOLERANCE = 1e-9
WARNING_TOLERANCE_HOURS = 1e-9


# --------------------------------------------------------------------------- fold plan


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
    if spec.backtest.horizon_days is not None:
        horizon_days = float(spec.backtest.horizon_days)
    else:
        horizon_days = span_days * DEFAULT_TEST_SHARE / n_folds
        horizon_days = (
            max(1.0, math.floor(horizon_days))
            if daily
            else max(1.0, math.floor(horizon_days * 24.0)) / 24.0
        )
    edges = [
        end_local - dt.timedelta(days=horizon_days * (n_folds - k)) for k in range(n_folds + 1)
    ]
    # Wall-clock arithmetic keeps cut-offs on local midnights across daylight-saving changes.
    edges_s = [_wall_instant(edge) for edge in edges]
    if edges_s[0] <= first:
        raise SpecError(
            f"{spec.source}: {n_folds} folds of {horizon_days:g} days reach back to "
            f"{_iso(edges_s[0])}, before the first order ({_iso(first)}); the history up to the "
            f"last fold's end spans {span_days:.1f} days: use fewer folds or a shorter "
            f"[backtest] horizon_days"
        )
    return FoldPlan(
        cutoffs_s=tuple(edges_s[:-1]),
        ends_s=tuple(edges_s[1:]),
        settle_hours=settle_hours,
        as_of_s=as_of,
    )


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


# --------------------------------------------------------------------------- quotes


@dataclass(frozen=True, slots=True)
class QuoteRecord:
    """One rule's quotes for some orders: rows of the table and what was promised."""

    rows: IntArray
    deadline_s: FloatArray  # promise kept iff fulfilled at or before it; NaN: no promise given
    expected_hours: FloatArray  # the model's expectation from the clock start (NaN: no model)
    promised_hours: FloatArray  # expectation plus buffer, from the clock start (NaN: no model)
    fold: int


def _record(rows: IntArray, batch: QuoteBatch, fold: int) -> QuoteRecord:
    return QuoteRecord(
        rows=rows,
        deadline_s=batch.deadline_s,
        expected_hours=batch.expected_hours,
        promised_hours=batch.expected_hours + batch.buffer_hours,
        fold=fold,
    )


def _joined(parts: Sequence[QuoteRecord], fold: int) -> QuoteRecord:
    """One fold's record from the records of its refit periods (in time order)."""
    return QuoteRecord(
        rows=_concat([p.rows for p in parts], np.intp),
        deadline_s=_concat([p.deadline_s for p in parts], np.float64),
        expected_hours=_concat([p.expected_hours for p in parts], np.float64),
        promised_hours=_concat([p.promised_hours for p in parts], np.float64),
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
    labels: list[tuple[str | None, ...]]

    @classmethod
    def of(cls, spec: Spec, table: OrderTable, calendar: BusinessCalendar) -> Watch:
        """Every order of the table watched, no expectation known yet."""
        return cls(
            clock_start_s=calendar.clock_starts(table.ordered_at_s),
            expected_hours=np.full(table.size, np.nan),
            labels=segment_labels(
                {n: table.columns[n] for n in spec.quote.segments}, spec.quote.segments, table.size
            ),
        )


@dataclass(frozen=True, slots=True)
class AdaptiveStream:
    """The adaptive policy's running control state, and promises given but not yet decided.

    `pending` holds (deadline, sequence number, segment path, was late), sorted: a promise is
    learnt at its deadline, kept or broken, never before."""

    state: ControlState = dataclasses.field(default_factory=ControlState)
    pending: tuple[tuple[float, int, tuple[str, ...], bool], ...] = ()
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
    policy = engine.policy
    if not isinstance(policy, AdaptivePolicy):
        raise TypeError("quote_adaptive needs an engine with the adaptive policy")
    bucket = adaptive_bucket_seconds(engine.unit)
    ordered = table.ordered_at_s[rows]
    fulfilled = table.fulfilled_at_s[rows]
    target = engine.target_late_rate
    leaks = policy.leaks()
    state = stream.state
    pending = list(stream.pending)
    heapq.heapify(pending)
    sequence = stream.sequence
    n_buckets = max(1, math.ceil((end_s - start_s) / bucket))
    bounds = np.searchsorted(ordered, start_s + bucket * np.arange(n_buckets + 1), side="left")
    bounds[-1] = rows.size
    deadline = np.full(rows.size, np.nan)
    expected = np.full(rows.size, np.nan)
    promised = np.full(rows.size, np.nan)
    widest_s = max(c.window_hours for c in policy.control_.values()) * 3600.0
    known = np.isfinite(watch.expected_hours)
    for b in range(n_buckets):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if lo == hi:
            continue
        now = start_s + b * bucket
        decided: list[tuple[str, ...]] = []
        late: list[bool] = []
        while pending and pending[0][0] <= now:
            _, _, path, was_late = heapq.heappop(pending)
            decided.append(path)
            late.append(was_late)
        if decided:
            state = learn(state, decided, np.array(late), target, leaks)
        if policy.cfg.use_nowcast:
            seen = np.flatnonzero(
                known & (watch.clock_start_s < now) & ~(table.fulfilled_at_s <= now - widest_s)
            )
            medians, events = policy.nowcast(
                watch.clock_start_s[seen],
                watch.expected_hours[seen],
                table.fulfilled_at_s[seen],
                policy.paths([watch.labels[i] for i in seen.tolist()]),
                now,
            )
            state = with_nowcast(state, medians, events)
        part = rows[lo:hi]
        batch = quote_batch(engine, _columns(table, part), ordered[lo:hi], state)
        deadline[lo:hi] = batch.deadline_s
        expected[lo:hi] = batch.expected_hours
        promised[lo:hi] = batch.expected_hours + batch.buffer_hours
        kept = fulfilled[lo:hi] <= batch.deadline_s  # False while open: late at the deadline
        paths = policy.paths([watch.labels[i] for i in part.tolist()])
        for i in range(hi - lo):
            heapq.heappush(
                pending, (float(batch.deadline_s[i]), sequence, paths[i], not bool(kept[i]))
            )
            sequence += 1
    record = QuoteRecord(
        rows=rows, deadline_s=deadline, expected_hours=expected, promised_hours=promised, fold=fold
    )
    return record, AdaptiveStream(state=state, pending=tuple(sorted(pending)), sequence=sequence)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Scored:
    """Quotes scored against what happened, one entry per quoted order (all arrays aligned).

    Only `known` entries count: fulfilled by `as_of`, or still open with the deadline passed."""

    rows: IntArray
    fold: NDArray[np.int64]
    ordered_at_s: FloatArray
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
    rows = _concat([r.rows for r in records], np.intp)
    deadline = _concat([r.deadline_s for r in records], np.float64)
    fold = _concat([np.full(r.rows.size, r.fold, dtype=np.int64) for r in records], np.int64)
    expected = _concat([r.expected_hours for r in records], np.float64)
    promised = _concat([r.promised_hours for r in records], np.float64)
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
    early_units = np.where(known & is_done, early_units, np.nan)
    units = np.where(has_promise, promise_units(calendar, unit, ordered, safe_deadline), np.nan)
    start = calendar.clock_starts(ordered)
    return Scored(
        rows=rows,
        fold=fold,
        ordered_at_s=ordered,
        deadline_s=deadline,
        known=known,
        late=late,
        impressed=impressed,
        promise_hours=np.where(has_promise, (deadline - ordered) / 3600.0, np.nan),
        promise_units=units,
        early_hours=np.where(kept, (deadline - fulfilled) / 3600.0, np.nan),
        early_units=early_units,
        late_hours=np.where(
            late, (np.where(is_done, fulfilled, as_of_s) - deadline) / 3600.0, np.nan
        ),
        expected_hours=expected,
        promised_hours=promised,
        actual_hours=np.where(is_done, (fulfilled - start) / 3600.0, np.nan),
        segment=_segment_keys(spec, table, rows),
    )


def _concat(parts: Sequence[NDArray[Any]], dtype: type) -> NDArray[Any]:
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


def _segment_keys(spec: Spec, table: OrderTable, rows: IntArray) -> NDArray[np.object_]:
    segments = spec.quote.segments
    if not segments:
        return np.full(rows.size, "", dtype=object)
    labels = segment_labels({n: table.columns[n][rows] for n in segments}, segments, rows.size)
    return np.array(segment_keys(labels, len(segments)), dtype=object)


def figures(scored: Scored, mask: BoolArray | None = None) -> dict[str, Any]:
    """The report's figures for the scored quotes selected by `mask` (all when None).

    `late_rate`, `impressed`, `satisfied`, `disappointed` are shares of known outcomes;
    `mean_early_hours` is over kept promises, `mean_late_hours` over broken ones (for an order
    still open it counts the lateness reached by the extraction, a lower bound); promise lengths
    are from the order to the deadline."""
    selected = np.ones(scored.rows.size, dtype=bool) if mask is None else mask
    known = selected & scored.known
    n = int(known.sum())
    n_late = int((known & scored.late).sum())
    n_impressed = int((known & scored.impressed).sum())
    return {
        "late_rate": _share(n_late, n),
        "n_quotes": n,
        "n_late": n_late,
        "n_unknown": int((selected & ~scored.known & ~np.isnan(scored.deadline_s)).sum()),
        "mean_promise_hours": _mean(scored.promise_hours[known]),
        "median_promise_hours": _median(scored.promise_hours[known]),
        "mean_promise_units": _mean(scored.promise_units[known]),
        "median_promise_units": _median(scored.promise_units[known]),
        "mean_early_hours": _mean(scored.early_hours[known & ~scored.late]),
        "median_early_hours": _median(scored.early_hours[known & ~scored.late]),
        "mean_early_units": _mean(scored.early_units[known & ~scored.late]),
        "mean_late_hours": _mean(scored.late_hours[known & scored.late]),
        "impressed": _share(n_impressed, n),
        "satisfied": _share(n - n_late - n_impressed, n),
        "disappointed": _share(n_late, n),
    }


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _mean(values: FloatArray) -> float | None:
    finite = values[np.isfinite(values)]
    return None if finite.size == 0 else float(finite.mean())


def _median(values: FloatArray) -> float | None:
    finite = values[np.isfinite(values)]
    return None if finite.size == 0 else float(np.median(finite))


def pinball_loss(actual: FloatArray, predicted: FloatArray, quantile: float) -> float | None:
    """Mean pinball (quantile) loss in hours where both are known; None if none are."""
    ok = np.isfinite(actual) & np.isfinite(predicted)
    if not ok.any():
        return None
    diff = actual[ok] - predicted[ok]
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))


# --------------------------------------------------------------------------- orders at risk


@dataclass(frozen=True, slots=True)
class WatchedOrders:
    """Quoted orders as a monitor would have watched them (aligned arrays, epoch seconds)."""

    keys: list[str]  # each order's segment key in the risk model (`RiskModel.resolve_keys`)
    clock_start_s: FloatArray
    expected_hours: FloatArray  # the model's expectation from the clock start (NaN: none)
    deadline_s: FloatArray  # NaN: no promise given
    fulfilled_s: FloatArray  # NaN: still open at the extraction


@dataclass(frozen=True, slots=True)
class AtRiskCounts:
    """The call list at one risk threshold, replayed over orders with a known outcome.

    Counts add up over folds (`pool_at_risk`); `warning_hours` holds, for each flagged late
    order, how long before its deadline the flag came."""

    threshold: float
    n_quotes: int  # orders watched: quoted, with a known outcome
    late: int
    flagged: int
    flagged_late: int
    n_revised: int  # flagged orders whose revised promise has a known outcome
    revised_late: int  # of those, revised promises broken too
    warning_hours: FloatArray


def replay_at_risk(
    orders: WatchedOrders,
    risk: RiskModel,
    calendar: BusinessCalendar,
    unit: Unit,
    target_late_rate: float,
    as_of_s: float,
    threshold: float,
) -> AtRiskCounts:
    """Which orders a monitor alerting at `threshold` would have flagged in time, and whether an
    honest revision at the flag would have held.

    Only orders scored as the back-test scores them count (fulfilled by `as_of_s`, or open with
    the deadline passed). An order is flagged when its risk reaches the threshold (within
    `RISK_TOLERANCE`: a risk computed as exactly the threshold reaches it) while it is still open
    (fulfilled after that moment, or never), at least one unit before its deadline: a call in
    the last unit comes too late to change anything for the customer. Risk only grows while an
    order is open, so the first moment it reaches the threshold decides (`flag_elapsed_hours`).

    The revision promises `revised_hours` at the flag, rounded to the unit and moved off closed
    days as a quote is; it is scored like any promise (unknown while open before its deadline).
    """
    has_quote = np.isfinite(orders.deadline_s) & np.isfinite(orders.expected_hours)
    is_done = ~np.isnan(orders.fulfilled_s)
    index = np.flatnonzero(has_quote & (is_done | (orders.deadline_s < as_of_s)))
    keys = [orders.keys[i] for i in index.tolist()]
    start = orders.clock_start_s[index]
    expected = orders.expected_hours[index]
    deadline = orders.deadline_s[index]
    fulfilled = orders.fulfilled_s[index]
    late = ~(fulfilled <= deadline)  # NaN (open past the deadline): late
    deadline_hours = (deadline - start) / 3600.0
    flag_hours = flag_elapsed_hours(
        risk, keys, expected, deadline_hours, threshold - RISK_TOLERANCE
    )
    warning_hours = deadline_hours - flag_hours
    open_at_flag = ~(fulfilled <= start + flag_hours * 3600.0)
    in_time = warning_hours >= HOURS_PER_UNIT[unit] - WARNING_TOLERANCE_HOURS
    flagged = open_at_flag & in_time
    chosen = np.flatnonzero(flagged)
    n_revised = revised_late = 0
    if chosen.size:
        total_hours = revised_hours(
            risk,
            [keys[i] for i in chosen.tolist()],
            expected[chosen],
            flag_hours[chosen],
            target_late_rate,
        )
        revised, _ = calendar.deadlines(start[chosen] + total_hours * 3600.0, unit)
        done = fulfilled[chosen]
        revised_known = ~np.isnan(done) | (revised < as_of_s)
        n_revised = int(revised_known.sum())
        revised_late = int((revised_known & ~(done <= revised)).sum())
    return AtRiskCounts(
        threshold=threshold,
        n_quotes=int(index.size),
        late=int(late.sum()),
        flagged=int(flagged.sum()),
        flagged_late=int((flagged & late).sum()),
        n_revised=n_revised,
        revised_late=revised_late,
        warning_hours=warning_hours[flagged & late],
    )


def pool_at_risk(parts: Sequence[AtRiskCounts], threshold: float) -> AtRiskCounts:
    """Counts of several folds at one threshold, added up (none: all zero)."""
    return AtRiskCounts(
        threshold=threshold,
        n_quotes=sum(p.n_quotes for p in parts),
        late=sum(p.late for p in parts),
        flagged=sum(p.flagged for p in parts),
        flagged_late=sum(p.flagged_late for p in parts),
        n_revised=sum(p.n_revised for p in parts),
        revised_late=sum(p.revised_late for p in parts),
        warning_hours=_concat([p.warning_hours for p in parts], np.float64),
    )


def at_risk_figures(counts: AtRiskCounts) -> dict[str, Any]:
    """The report's entry for one threshold: shares (None when nothing to share) and counts.

    `recall` is the share of late orders flagged, `false_alarm_share` the share of flagged
    orders that came in time, `median_warning_hours` over flagged late orders; `revised_late_rate`
    the share of honest revisions at the flag that were broken too."""
    return {
        "threshold": counts.threshold,
        "recall": _share(counts.flagged_late, counts.late),
        "false_alarm_share": _share(counts.flagged - counts.flagged_late, counts.flagged),
        "median_warning_hours": _median(counts.warning_hours),
        "flagged": counts.flagged,
        "late": counts.late,
        "flagged_late": counts.flagged_late,
        "revised_late_rate": _share(counts.revised_late, counts.n_revised),
        "n_quotes": counts.n_quotes,
        "n_revised": counts.n_revised,
    }


def _at_risk(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, run: WalkForward
) -> dict[str, list[dict[str, Any]]]:
    """Replay the call list for every policy, and for the company's promise watched by the same
    fold's risk model and model expectation; folds without a risk model are left out."""
    sources: dict[str, list[QuoteRecord]] = dict(run.policies)
    if run.company is not None:
        sources[COMPANY] = [
            dataclasses.replace(own, expected_hours=ours.expected_hours)
            for own, ours in zip(run.company, run.reference, strict=True)
        ]
    segments = tuple(spec.quote.segments)
    parts: dict[str, list[list[AtRiskCounts]]] = {name: [] for name in sources}
    for k, risk in enumerate(run.risk_models):
        if risk is None:
            continue
        rows = run.reference[k].rows  # every record of a fold quotes the same orders
        labels = segment_labels({n: table.columns[n][rows] for n in segments}, segments, rows.size)
        keys = risk.resolve_keys(labels)
        start = calendar.clock_starts(table.ordered_at_s[rows])
        for name, records in sources.items():
            record = records[k]
            if not np.array_equal(record.rows, rows):
                raise AssertionError(f"{name} quoted other orders than the reference in fold {k}")
            orders = WatchedOrders(
                keys=keys,
                clock_start_s=start,
                expected_hours=record.expected_hours,
                deadline_s=record.deadline_s,
                fulfilled_s=table.fulfilled_at_s[rows],
            )
            parts[name].append(
                [
                    replay_at_risk(
                        orders,
                        risk,
                        calendar,
                        spec.quote.unit,
                        run.target_late_rate,
                        run.plan.as_of_s,
                        threshold,
                    )
                    for threshold in AT_RISK_THRESHOLDS
                ]
            )
    return {
        name: [
            at_risk_figures(pool_at_risk([fold[i] for fold in folds], threshold))
            for i, threshold in enumerate(AT_RISK_THRESHOLDS)
        ]
        for name, folds in parts.items()
    }


# --------------------------------------------------------------------------- walk forward


@dataclass(frozen=True)
class WalkForward:
    """Everything a back-test quoted, before it is summarised into a report."""

    plan: FoldPlan
    target_late_rate: float
    policies: dict[str, list[QuoteRecord]]  # per policy, one record per fold in time order
    company: list[QuoteRecord] | None
    naive: list[QuoteRecord]  # conformal calibrated naively (latest fulfilled, open dropped)
    reference: list[QuoteRecord]  # conformal as the engine calibrates it (for the comparison)
    fits: list[FitReport]
    fold_models: list[dict[str, Any]]  # per fold: training and calibration medians
    tradeoff: dict[tuple[str, float], list[QuoteRecord]]  # (family, target) -> per fold
    # Per fold: the residual distributions that watch open orders (the same for every policy).
    risk_models: list[RiskModel | None] = dataclasses.field(default_factory=list)


def walk_forward(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    policies: Sequence[str],
    plan: FoldPlan,
    *,
    target: float | None = None,
    tradeoff_families: Sequence[str] = (),
    tradeoff_targets: Sequence[float] = TRADEOFF_TARGETS,
    progress: Progress | None = None,
) -> WalkForward:
    """Fit at each cut-off, calibrate each policy, quote the next horizon; nothing is scored.

    Runs OpenMP single-threaded: the batches here are small, and OpenMP threads spinning on a
    busy machine made one model fit take a minute instead of a second."""
    with threadpool_limits(limits=1, user_api="openmp"):
        return _walk_forward(
            spec,
            table,
            calendar,
            policies,
            plan,
            target,
            tradeoff_families,
            tradeoff_targets,
            progress,
        )


@dataclass(frozen=True, slots=True)
class _Task:
    """One policy (or trade-off level) to calibrate and quote on a fold."""

    name: str
    level: float  # target late rate
    is_sweep: bool

    @property
    def label(self) -> str:
        return f"{self.name} at {self.level:.1%}" if self.is_sweep else self.name


def _walk_forward(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    policies: Sequence[str],
    plan: FoldPlan,
    target: float | None,
    tradeoff_families: Sequence[str],
    tradeoff_targets: Sequence[float],
    progress: Progress | None,
) -> WalkForward:
    say = progress or (lambda _what, _done, _total: None)
    goal = spec.quote.target_late_rate if target is None else target
    # The trade-off sweeps calibrated buffers: a buffer given in the spec would not move.
    swept_spec = spec.model_copy(
        update={
            "quote": spec.quote.model_copy(
                update={"fixed_buffer": None, "proportional_buffer": None}
            )
        }
    )
    tasks = [_Task(name, goal, False) for name in policies]
    tasks += [
        _Task(family, float(t), True) for family in tradeoff_families for t in tradeoff_targets
    ]
    tasks += [_Task(name, t, True) for name in policies for t in SCORECARD_TARGETS]
    tasks = list(dict.fromkeys(tasks))
    # A sweep level equal to a policy run at the same target is that run: quote it once; and the
    # conformal policy at the target is the reference every fold quotes anyway.
    reference_task = _Task("conformal", goal, False)
    same_as = {
        task: _Task(task.name, task.level, False)
        for task in tasks
        if task.is_sweep
        and _Task(task.name, task.level, False) in tasks
        and _sweep_equals_policy(spec, task.name)
    }
    own_tasks = [task for task in dict.fromkeys(tasks) if task not in same_as]
    schedules = [
        refit_schedule(spec, calendar, cutoff, end)
        for cutoff, end in zip(plan.cutoffs_s, plan.ends_s, strict=True)
    ]
    total = sum(len(schedule) for schedule in schedules) * (1 + len(own_tasks))
    watch = Watch.of(spec, table, calendar)
    done = 0
    records: dict[_Task, list[QuoteRecord]] = {task: [] for task in tasks}
    company: list[QuoteRecord] | None = None if table.company_deadline_s is None else []
    naive: list[QuoteRecord] = []
    reference: list[QuoteRecord] = []
    fits: list[FitReport] = []
    fold_models: list[dict[str, Any]] = []
    risk_models: list[RiskModel | None] = []
    streams: dict[_Task, AdaptiveStream] = {}
    # The quantile policy's own model, one per fold and level (`calibrate`).
    quantile_models: dict[tuple[int, _Task], QuantileRegressor] = {}
    for k, cutoff in enumerate(plan.cutoffs_s):
        parts: dict[_Task, list[QuoteRecord]] = {task: [] for task in own_tasks}
        fold_parts: list[QuoteRecord] = []
        naive_parts: list[QuoteRecord] = []
        fold: FoldModel | None = None
        for start, stop, refit in schedules[k]:
            where = f"fold {k + 1}/{plan.folds} ({_iso(start)[:10]})"
            say(f"{where}: {'fitting the model' if refit else 'recalibrating'}", done, total)
            fold = fit_model(spec, table, calendar, start, None if refit else fold)
            rows = np.flatnonzero((table.ordered_at_s >= start) & (table.ordered_at_s < stop))
            conformal, fit = calibrate(spec, fold, calendar, "conformal", goal)
            if start == cutoff:
                fits.append(fit)
                fold_models.append(_fold_model_info(fold))
                risk_models.append(conformal.risk)
            fold_parts.append(quote_static(conformal, table, rows, k))
            if k == 0 and start == cutoff:  # the history the walk starts on, as first modelled
                watch.expected_hours[: fold.known.size] = fold.regressor.predict_hours(fold.matrix)
            watch.expected_hours[rows] = fold_parts[-1].expected_hours
            naive_engine = _naive_engine(spec, fold, calendar, conformal)
            naive_parts.append(quote_static(naive_engine, table, rows, k))
            done += 1
            for task in own_tasks:
                say(f"{where}: {task.label}", done, total)
                if task == reference_task:
                    parts[task].append(fold_parts[-1])
                else:
                    task_spec = swept_spec if task.is_sweep else spec
                    engine, _ = calibrate(
                        task_spec,
                        fold,
                        calendar,
                        task.name,
                        task.level,
                        quantile_models.get((k, task)),
                    )
                    if engine.quantile_regressor is not None:
                        quantile_models[(k, task)] = engine.quantile_regressor
                    if task.name == "adaptive":
                        record, streams[task] = quote_adaptive(
                            engine,
                            table,
                            rows,
                            start,
                            stop,
                            streams.get(task, AdaptiveStream()),
                            watch,
                            k,
                        )
                        parts[task].append(record)
                    else:
                        parts[task].append(quote_static(engine, table, rows, k))
                done += 1
        reference.append(_joined(fold_parts, k))
        naive.append(_joined(naive_parts, k))
        rows = reference[-1].rows
        if company is not None and table.company_deadline_s is not None:
            company.append(
                QuoteRecord(
                    rows=rows,
                    deadline_s=table.company_deadline_s[rows],
                    expected_hours=np.full(rows.size, np.nan),
                    promised_hours=np.full(rows.size, np.nan),
                    fold=k,
                )
            )
        results = {task: _joined(parts[task], k) for task in own_tasks}
        for task in tasks:
            records[task].append(results[same_as.get(task, task)])
    say("scoring", total, total)
    return WalkForward(
        plan=plan,
        target_late_rate=goal,
        policies={task.name: records[task] for task in tasks if not task.is_sweep},
        company=company,
        naive=naive,
        reference=reference,
        fits=fits,
        fold_models=fold_models,
        tradeoff={(task.name, task.level): records[task] for task in tasks if task.is_sweep},
        risk_models=risk_models,
    )


def _sweep_equals_policy(spec: Spec, name: str) -> bool:
    """Whether the policy as the spec configures it is the same as its trade-off sweep's."""
    if name == "fixed":
        return spec.quote.fixed_buffer is None
    if name == "proportional":
        return spec.quote.proportional_buffer is None
    return True


def _naive_engine(
    spec: Spec, fold: FoldModel, calendar: BusinessCalendar, engine: QuoteEngine
) -> QuoteEngine:
    """The conformal engine recalibrated the naive way: on the latest orders fulfilled before
    the cut-off (as many as our calibration slice holds), orders still open dropped."""
    known = fold.known
    done_index = np.flatnonzero(fold.done)
    cal_index = done_index[-min(fold.cal_index.size, done_index.size) :]
    needed_hours = (
        calendar.earliest_raw_meeting(known.fulfilled_at_s[cal_index], spec.quote.unit)
        - fold.start_s[cal_index]
    ) / 3600.0
    config = spec.policy_config("conformal", engine.target_late_rate)
    labels = segment_labels(
        {n: known.columns[n][cal_index] for n in config.segments}, config.segments, cal_index.size
    )
    naive_slice = CalibrationSlice(
        expected_hours=fold.regressor.predict_hours(fold.matrix[cal_index]),
        needed_hours=needed_hours,
        censored=np.zeros(cal_index.size, dtype=bool),
        segment_labels=labels,
    )
    return dataclasses.replace(engine, policy=make_policy(config).fit(naive_slice))


def _fold_model_info(fold: FoldModel) -> dict[str, Any]:
    cal_done = fold.cal_index[fold.done[fold.cal_index]]
    residual = fold.hours[cal_done] - fold.regressor.predict_hours(fold.matrix[cal_done])
    return {
        "train_median_hours": _median(fold.hours[fold.train_mask]),
        "calibration_median_hours": _median(fold.hours[cal_done]),
        "calibration_median_residual_hours": _median(residual),
    }


# --------------------------------------------------------------------------- the report


def run_backtest(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    policies: list[str] | None,
    folds: int | None,
    progress: Progress | None = None,
    *,
    target: float | None = None,
    tradeoff: bool | Sequence[str] = True,
    plan: FoldPlan | None = None,
) -> dict[str, Any]:
    """Run the walk-forward back-test and answer with the JSON report (plain, JSON-safe types).

    `policies` defaults to all five, `folds` to the spec's, `target` to the spec's target late
    rate; `tradeoff` sweeps each policy family (True: those run; or a list of families) over
    `TRADEOFF_TARGETS` (the flat rule is always swept: it needs no model). `plan` fixes the
    cut-offs (else `plan_folds`).

    Top-level keys: `scorecard` (first: targets held, and the promise at equal lateness against
    the business's and a flat rule's, see `training.scorecard`), `spec`, `dataset`, `protocol`,
    `target_late_rate`, `unit`, `policies` (name -> figures with `by_segment` and `by_fold`),
    `company_promise` (the same, or None),
    `model` (MAE and pinball loss in hours), `tradeoff` (points `{policy, level, late_rate,
    mean_promise_hours, ...}`: for a policy family `level` is the confidence 1 - target, for the
    `flat` rule the one promised duration in hours), `comparison` (promise lengths at equal late
    rates), `folds` (per fold: windows, right-censoring and drift), `earliness` (histograms of
    units early, negative when late), `at_risk` (per policy and `company_promise`, the call list
    of orders at risk replayed at each of `AT_RISK_THRESHOLDS`: `{threshold, recall,
    false_alarm_share, median_warning_hours, flagged, late, flagged_late, revised_late_rate,
    n_quotes, n_revised}`, see `replay_at_risk`)."""
    names = list(POLICY_NAMES) if not policies else list(dict.fromkeys(policies))
    for name in names:
        spec.policy_config(name)  # an unknown policy is a SpecError before any work
    fold_plan = plan or plan_folds(spec, table, calendar, folds)
    if isinstance(tradeoff, bool):
        families = names if tradeoff else []
    else:
        families = list(dict.fromkeys(tradeoff))
        for name in families:
            spec.policy_config(name)
    run = walk_forward(
        spec,
        table,
        calendar,
        names,
        fold_plan,
        target=target,
        tradeoff_families=families,
        progress=progress,
    )
    return build_report(spec, table, calendar, run)


def backtest_summary(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, policy: str | None, folds: int
) -> dict[str, Any]:
    """The compact back-test record a bundle's manifest keeps (one policy, no trade-off sweep).

    Keys: policy, unit, target_late_rate, late_rate, folds, n_quotes, n_unknown,
    mean_promise_hours, median_promise_hours, mean_promise_units, mae_hours, pinball_loss_hours,
    company_late_rate and company_mean_promise_hours (when the spec names a company promise),
    flat_mean_promise_hours (a same-duration-for-all rule reaching the same late rate), first
    cut-off and last horizon end (ISO), and the call list of orders at risk at
    `SUMMARY_AT_RISK_THRESHOLD` (at_risk_recall, at_risk_false_alarm_share,
    at_risk_median_warning_hours; None without a risk model), and `scorecard`
    (`training.scorecard.compact_scorecard`: late rates at the scorecard targets, ratios, the
    sentence, the warnings)."""
    name = policy or spec.quote.policy
    report = run_backtest(spec, table, calendar, [name], folds, tradeoff=False)
    own = report["policies"][name]
    company = report["company_promise"]
    summary: dict[str, Any] = {
        "policy": name,
        "unit": spec.quote.unit,
        "target_late_rate": report["target_late_rate"],
        "late_rate": own["late_rate"],
        "folds": report["protocol"]["folds"],
        "n_quotes": own["n_quotes"],
        "n_unknown": own["n_unknown"],
        "mean_promise_hours": own["mean_promise_hours"],
        "median_promise_hours": own["median_promise_hours"],
        "mean_promise_units": own["mean_promise_units"],
        "mae_hours": report["model"]["mae_hours"],
        "pinball_loss_hours": report["model"]["pinball_loss_hours"].get(name),
        "flat_mean_promise_hours": report["comparison"][name]["flat_mean_promise_hours"],
        "flat_mean_promise_units": report["comparison"][name]["flat_mean_promise_units"],
        "first_cutoff": report["protocol"]["cutoffs"][0],
        "last_end": report["protocol"]["ends"][-1],
    }
    if company is not None:
        summary["company_late_rate"] = company["late_rate"]
        summary["company_mean_promise_hours"] = company["mean_promise_hours"]
    at_risk = {e["threshold"]: e for e in report["at_risk"].get(name, [])}
    watched = at_risk.get(SUMMARY_AT_RISK_THRESHOLD, {})
    summary["at_risk_threshold"] = SUMMARY_AT_RISK_THRESHOLD
    for key in ("recall", "false_alarm_share", "median_warning_hours"):
        summary[f"at_risk_{key}"] = watched.get(key)
    from training.scorecard import compact_scorecard  # it reads this module

    summary["scorecard"] = compact_scorecard(report["scorecard"], name)
    return summary


def build_report(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, run: WalkForward
) -> dict[str, Any]:
    """Score a walk-forward run into the JSON report (see `run_backtest`)."""
    plan = run.plan
    as_of = plan.as_of_s
    scored = {
        name: score(spec, table, calendar, as_of, records) for name, records in run.policies.items()
    }
    company = None if run.company is None else score(spec, table, calendar, as_of, run.company)
    reference = score(spec, table, calendar, as_of, run.reference)
    naive = score(spec, table, calendar, as_of, run.naive)
    quantile = 1.0 - run.target_late_rate
    flat_points = _flat_points(spec, table, calendar, plan, reference)
    swept = {
        key: score(spec, table, calendar, as_of, records) for key, records in run.tradeoff.items()
    }
    tradeoff = [_point(family, 1.0 - level, level, s) for (family, level), s in swept.items()]
    tradeoff += flat_points
    from training.scorecard import build_scorecard, runs_at_targets  # it reads this module

    report: dict[str, Any] = {
        "scorecard": build_scorecard(
            spec.quote.unit,
            run.target_late_rate,
            runs_at_targets(scored, swept, run.target_late_rate),
            company,
            tradeoff,
            [fit.fallbacks for fit in run.fits],
            spec.quote.segments,
        ),
        "spec": {
            "source": str(spec.source),
            "policy": spec.quote.policy,
            "segments": list(spec.quote.segments),
            "relative": spec.quote.relative,
        },
        "dataset": _dataset_info(table, reference),
        "protocol": _protocol_info(spec, plan),
        "target_late_rate": run.target_late_rate,
        "unit": spec.quote.unit,
        "policies": {name: _full_figures(s, plan) for name, s in scored.items()},
        COMPANY: None if company is None else _full_figures(company, plan),
        "model": {
            "quantile": quantile,
            "mae_hours": _mae(reference),
            "median_absolute_error_hours": _median(
                np.abs(reference.actual_hours - reference.expected_hours)
            ),
            "pinball_loss_hours": {
                name: pinball_loss(s.actual_hours, s.promised_hours, quantile)
                for name, s in scored.items()
            },
            "n_scored": int(np.isfinite(reference.actual_hours).sum()),
            "by_fold": [
                {"fold": k, "cutoff": _iso(c), "mae_hours": _mae(reference, reference.fold == k)}
                for k, c in enumerate(plan.cutoffs_s)
            ],
        },
        "tradeoff": tradeoff,
        "comparison": _comparison(scored, company, tradeoff),
        "folds": _fold_diagnostics(run, scored, reference, naive),
        "earliness": _earliness(spec.quote.unit, scored, company),
        "at_risk": _at_risk(spec, table, calendar, run),
    }
    safe: dict[str, Any] = _json_safe(report)
    return safe


def _full_figures(scored: Scored, plan: FoldPlan) -> dict[str, Any]:
    result = figures(scored)
    segments = sorted({str(s) for s in scored.segment.tolist() if s != ""})
    result["by_segment"] = {seg: figures(scored, scored.segment == seg) for seg in segments}
    result["by_fold"] = [
        {"fold": k, "cutoff": _iso(c), "end": _iso(e), **figures(scored, scored.fold == k)}
        for k, (c, e) in enumerate(zip(plan.cutoffs_s, plan.ends_s, strict=True))
    ]
    return result


def _point(policy: str, level: float, target: float | None, scored: Scored) -> dict[str, Any]:
    own = figures(scored)
    return {
        "policy": policy,
        "level": level,
        "target_late_rate": target,
        "late_rate": own["late_rate"],
        "mean_promise_hours": own["mean_promise_hours"],
        "median_promise_hours": own["median_promise_hours"],
        "mean_promise_units": own["mean_promise_units"],
        "n_quotes": own["n_quotes"],
    }


def _flat_points(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, plan: FoldPlan, reference: Scored
) -> list[dict[str, Any]]:
    """The model-free rule: every order promised the same duration from its clock start, rounded
    and moved off closed days like the engine's promises; swept over whole units (level = that
    duration in hours). The grid comes from the quoted orders' durations, so the rule is tuned in
    hindsight: comparisons with it flatter the rule, not the engine."""
    unit_h = HOURS_PER_UNIT[spec.quote.unit]
    actual = reference.actual_hours[np.isfinite(reference.actual_hours)]
    if actual.size == 0:
        return []
    low, high = (np.quantile(actual, q) / unit_h for q in FLAT_QUANTILES)
    first, last = max(1, math.floor(low)), max(1, math.ceil(high))
    last = max(last, first + MIN_FLAT_POINTS - 1)
    units = np.arange(first, last + 1, dtype=np.float64)
    if units.size > FLAT_MAX_POINTS:
        units = np.unique(np.round(np.linspace(first, last, FLAT_MAX_POINTS)))
    rows = reference.rows
    start = calendar.clock_starts(table.ordered_at_s[rows])
    points = []
    for n_units in units:
        hours = float(n_units * unit_h)
        deadline, _ = calendar.deadlines(start + hours * 3600.0, spec.quote.unit)
        records = [
            QuoteRecord(
                rows=rows,
                deadline_s=deadline,
                expected_hours=np.full(rows.size, np.nan),
                promised_hours=np.full(rows.size, hours),
                fold=0,
            )
        ]
        flat = dataclasses.replace(
            score(spec, table, calendar, plan.as_of_s, records), fold=reference.fold
        )
        points.append(_point(FLAT, hours, None, flat))
    return points


def curve_at(
    points: Sequence[Mapping[str, Any]],
    family: str,
    late_rate: float | None,
    key: str = "mean_promise_hours",
) -> float | None:
    """`key` (a mean promise length) on `family`'s trade-off curve at `late_rate`, linear
    between points; None when the rate lies outside the curve."""
    if late_rate is None:
        return None
    curve = sorted(
        (p["late_rate"], p[key])
        for p in points
        if p["policy"] == family and p["late_rate"] is not None and p[key] is not None
    )
    if len(curve) < 2:
        return None
    rates = np.array([c[0] for c in curve])
    lengths = np.array([c[1] for c in curve])
    if not rates[0] <= late_rate <= rates[-1]:
        return None
    # Equal late rates at several lengths: the shortest promise reaching it is the fair one.
    unique_rates = np.unique(rates)
    shortest = np.array([lengths[rates == r].min() for r in unique_rates])
    if unique_rates.size == 1:
        return float(shortest[0])
    return float(np.interp(late_rate, unique_rates, shortest))


def _comparison(
    scored: Mapping[str, Scored], company: Scored | None, tradeoff: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Promise lengths at equal late rates (hours, and units of the spec).

    Per policy: its own mean promise against the flat rule's and the `fixed` family's at the same
    late rate. For the company's promise: the mean promise each policy family needs to reach the
    company's late rate."""
    result: dict[str, Any] = {}
    for name, s in scored.items():
        own = figures(s)
        rate = own["late_rate"]
        entry: dict[str, Any] = {"late_rate": rate}
        for scale in ("hours", "units"):
            mine = own[f"mean_promise_{scale}"]
            flat = curve_at(tradeoff, FLAT, rate, f"mean_promise_{scale}")
            entry[f"mean_promise_{scale}"] = mine
            entry[f"flat_mean_promise_{scale}"] = flat
            entry[f"saving_vs_flat_{scale}"] = None if flat is None or mine is None else flat - mine
            entry[f"fixed_mean_promise_{scale}"] = curve_at(
                tradeoff, "fixed", rate, f"mean_promise_{scale}"
            )
        result[name] = entry
    if company is not None:
        own = figures(company)
        rate = own["late_rate"]
        families = sorted({p["policy"] for p in tradeoff})
        entry = {"late_rate": rate}
        for scale in ("hours", "units"):
            entry[f"mean_promise_{scale}"] = own[f"mean_promise_{scale}"]
            entry[f"flat_mean_promise_{scale}"] = curve_at(
                tradeoff, FLAT, rate, f"mean_promise_{scale}"
            )
            entry[f"at_company_late_rate_{scale}"] = {
                family: curve_at(tradeoff, family, rate, f"mean_promise_{scale}")
                for family in families
            }
        result[COMPANY] = entry
    return result


def _fold_diagnostics(
    run: WalkForward, scored: Mapping[str, Scored], reference: Scored, naive: Scored
) -> list[dict[str, Any]]:
    rows = []
    plan = run.plan
    for k, (cutoff, end) in enumerate(zip(plan.cutoffs_s, plan.ends_s, strict=True)):
        fit = run.fits[k]
        in_fold = reference.fold == k
        fold_median = _median(reference.actual_hours[in_fold])
        train_median = run.fold_models[k]["train_median_hours"]
        late_rates = {name: figures(s, s.fold == k)["late_rate"] for name, s in scored.items()}
        rows.append(
            {
                "fold": k,
                "cutoff": _iso(cutoff),
                "end": _iso(end),
                "n_orders": int(in_fold.sum()),
                "n_unknown": int((in_fold & ~reference.known).sum()),
                "fit": fit.to_info(),
                "censoring": {
                    "n_open_at_cutoff": fit.n_open_at_cutoff,
                    "n_censored_calibration": fit.n_censored_calibration,
                    "settle_hours": fit.settle_hours,
                    "late_rate": figures(reference, in_fold)["late_rate"],
                    "naive_late_rate": figures(naive, naive.fold == k)["late_rate"],
                    "naive_mean_promise_hours": figures(naive, naive.fold == k)[
                        "mean_promise_hours"
                    ],
                    "mean_promise_hours": figures(reference, in_fold)["mean_promise_hours"],
                },
                "drift": {
                    "train_median_hours": train_median,
                    "calibration_median_hours": run.fold_models[k]["calibration_median_hours"],
                    "fold_median_hours": fold_median,
                    "median_shift": (
                        None
                        if fold_median is None or not train_median
                        else fold_median / train_median - 1.0
                    ),
                    "calibration_median_residual_hours": run.fold_models[k][
                        "calibration_median_residual_hours"
                    ],
                    "fold_median_residual_hours": _median(
                        reference.actual_hours[in_fold] - reference.expected_hours[in_fold]
                    ),
                    "conformal_late_rate": figures(reference, in_fold)["late_rate"],
                    "adaptive_late_rate": late_rates.get("adaptive"),
                },
                "late_rates": late_rates,
            }
        )
    return rows


def _earliness(unit: str, scored: Mapping[str, Scored], company: Scored | None) -> dict[str, Any]:
    """Histograms of units early (negative: late) of fulfilled orders, on shared bins."""
    sources = dict(scored)
    if company is not None:
        sources[COMPANY] = company
    values = {name: s.early_units[np.isfinite(s.early_units)] for name, s in sources.items()}
    pooled = np.concatenate([v for v in values.values()] or [np.empty(0)])
    if pooled.size == 0:
        return {"unit": unit, "edges": [], "counts": {}}
    low, high = (float(q) for q in np.quantile(pooled, [0.005, 0.995]))
    if unit == "day":
        # Whole days, centred on the integers; wide spreads get wider (still whole-day) bins.
        width = max(1, math.ceil((math.ceil(high) - math.floor(low) + 1) / EARLINESS_BINS))
        edges = np.arange(math.floor(low) - 0.5, math.ceil(high) + 0.5 + width, float(width))
    else:
        edges = np.linspace(min(low, 0.0), max(high, 1.0), EARLINESS_BINS + 1)
    counts = {
        name: np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0].tolist()
        for name, v in values.items()
    }
    return {"unit": unit, "edges": edges.tolist(), "counts": counts}


def _mae(scored: Scored, mask: BoolArray | None = None) -> float | None:
    error = np.abs(scored.actual_hours - scored.expected_hours)
    return _mean(error if mask is None else error[mask])


def _dataset_info(table: OrderTable, reference: Scored) -> dict[str, Any]:
    first, last = float(table.ordered_at_s.min()), float(table.ordered_at_s.max())
    return {
        "path": str(table.source),
        "rows_read": table.rows_read,
        "rows_used": table.size,
        "skipped": dict(table.skipped),
        "open_at_extraction": int(table.is_open.sum()),
        "first_order": _iso(first),
        "last_order": _iso(last),
        "as_of": _iso(table.as_of_s),
        "span_days": (last - first) / SECONDS_PER_DAY,
        "orders_quoted": int(reference.rows.size),
    }


def _protocol_info(spec: Spec, plan: FoldPlan) -> dict[str, Any]:
    return {
        "folds": plan.folds,
        "cutoffs": [_iso(c) for c in plan.cutoffs_s],
        "ends": [_iso(e) for e in plan.ends_s],
        "horizon_hours": plan.horizon_hours,
        "settle_hours": plan.settle_hours,
        "as_of": _iso(plan.as_of_s),
        "adaptive_bucket_hours": adaptive_bucket_seconds(spec.quote.unit) / 3600.0,
        "control_gain": spec.quote.control_gain,
        "nowcast": spec.quote.nowcast,
        "refit_every_days": spec.refit_days[0],
        "recalibrate_every_days": spec.refit_days[1],
        "calibration_share": spec.model.calibration_share,
        "settle_quantile": spec.model.settle_quantile,
        "scoring": (
            "kept iff fulfilled at or before the deadline; an order open at the "
            "extraction is late if its deadline had passed, else unknown and excluded"
        ),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat().replace("+00:00", "Z")
