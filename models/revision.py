"""An open order's risk now, and the honest revision of its promise.

Given a promise already made (its clock start, the model's expectation and its deadline) and
the moment `now`, `assess` answers from the engine's residual distributions (`models.risk`):
how likely the promise is to break given the order is still open, when the order will now
most likely be ready, and the promise that would keep the target late rate from here (the
conditional quantile at 1 - target, rounded to the unit and moved off closed days as every
quote is). A promise is revised only once its risk exceeds the target and the risk it had when
it was given (until then it is as good as it was), and never to an earlier deadline.

That rule is written once, over arrays, in `revise`: `assess_all` applies it to the service's
open orders (`assess` to one), the back-test's call list (`training.backtest.at_risk`) to every
order it flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.errors import NoRiskModel
from models.quoting import Promise, QuoteBatch, QuoteEngine, promise_at, promise_batch
from models.risk import OpenOrderOutlooks, RiskModel, outlooks
from models.units import Unit

FloatArray = NDArray[np.float64]
# A risk computed as the bar itself does not exceed it.
RISK_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class OpenPromise:
    """A promise made earlier, as the ledger keeps it (epoch seconds, hours)."""

    features: Mapping[str, object]  # canonical labels, as the engine's schema checks them
    ordered_s: float
    clock_start_s: float
    expected_hours: float
    deadline_s: float


@dataclass(frozen=True, slots=True)
class OrderRisk:
    """An open order now: the risk to its promise and, when the promise no longer keeps the
    target, the honest promise from here."""

    segment: str  # the residual distribution's segment
    elapsed_hours: float  # since the clock started (negative before it starts)
    probability_late: float
    expected_completion_s: float  # the conditional median
    suggested: Promise | None  # None while the promise given still keeps the target

    @property
    def needs_revision(self) -> bool:
        return self.suggested is not None


@dataclass(frozen=True, slots=True)
class Revisions:
    """The revision rule applied to open orders, each at its own moment (arrays of shape (n,),
    hours from each clock start, epoch seconds)."""

    outlook: OpenOrderOutlooks  # each order's risk now and at issue, median, revised hours
    is_revised: NDArray[np.bool_]  # the service would issue a revision at that moment
    expected_hours: FloatArray  # a revision's expectation: the conditional median
    buffer_hours: FloatArray  # a revision's buffer over `expected_hours`
    deadline_s: FloatArray  # the revised deadline where `is_revised`, else NaN
    closed_days_skipped: NDArray[np.int64]  # by the revised deadline (0 where not revised)


def revise(
    risk: RiskModel,
    keys: Sequence[str],
    calendar: BusinessCalendar,
    unit: Unit,
    target_late_rate: float,
    clock_start_s: FloatArray,
    expected_hours: FloatArray,
    deadline_s: FloatArray,
    elapsed_hours: FloatArray,
) -> Revisions:
    """Which open orders get a revision `elapsed_hours` after their clock start, and to what.

    `keys` are the orders' segment keys in `risk` (`RiskModel.resolve_keys`), `expected_hours`
    the model's expectation and `deadline_s` the promise given. An order is revised when its
    risk now exceeds both `target_late_rate` and the risk its promise had at issue (by more than
    `RISK_TOLERANCE`), and only to a deadline later than the one given: the conditional
    quantile at 1 - target, rounded to `unit` and moved off closed days by the calendar's
    `deadlines`, as `quote_batch` rounds every quote.
    """
    deadline_hours = (deadline_s - clock_start_s) / 3600.0
    view = outlooks(risk, keys, expected_hours, elapsed_hours, deadline_hours, target_late_rate)
    # The risk at issue is measured on plain residuals, so it may differ a little from the
    # target the policy calibrated: a promise is as good as it was until its risk passes both.
    bar = np.maximum(target_late_rate, view.probability_at_issue) + RISK_TOLERANCE
    buffer = np.maximum(0.0, view.revised_hours - view.expected_hours)
    revised = np.full(deadline_s.size, np.nan)
    skipped = np.zeros(deadline_s.size, dtype=np.int64)
    candidates = np.flatnonzero(view.probability_late > bar)
    if candidates.size:
        hours = view.expected_hours[candidates] + buffer[candidates]
        raw = clock_start_s[candidates] + hours * 3600.0
        revised[candidates], skipped[candidates] = calendar.deadlines(raw, unit)
    # Rounding can make the two meet; a revision is never earlier than the promise given.
    is_revised = revised > deadline_s  # NaN: False
    return Revisions(
        outlook=view,
        is_revised=is_revised,
        expected_hours=view.expected_hours,
        buffer_hours=buffer,
        deadline_s=np.where(is_revised, revised, np.nan),
        closed_days_skipped=np.where(is_revised, skipped, 0),
    )


def assess(engine: QuoteEngine, promise: OpenPromise, now_s: float) -> OrderRisk:
    """The outlook of `promise` at `now_s` for an order not fulfilled by then (`assess_all`
    for one order)."""
    return assess_all(engine, [promise], now_s)[0]


def assess_all(
    engine: QuoteEngine, promises: Sequence[OpenPromise], now_s: float
) -> list[OrderRisk]:
    """The outlooks at `now_s` of orders not fulfilled by then, in order: one `revise` over all
    of them, each suggested promise counted and explained as every quote is (`promise_at`).
    `NoRiskModel` for an engine trained before risks were kept (unless there is nothing to
    assess)."""
    if not promises:
        return []
    risk = engine.risk
    if risk is None:
        raise NoRiskModel(
            "this model was trained before open-order risk was kept; retrain and promote it"
        )
    keys = risk.resolve_keys([_labels(engine, promise) for promise in promises])
    start = np.array([promise.clock_start_s for promise in promises])
    elapsed = (now_s - start) / 3600.0
    found = revise(
        risk,
        keys,
        engine.calendar,
        engine.unit,
        engine.target_late_rate,
        start,
        np.array([promise.expected_hours for promise in promises]),
        np.array([promise.deadline_s for promise in promises]),
        elapsed,
    )
    suggested: dict[int, Promise] = {}
    revised = np.flatnonzero(found.is_revised)
    if revised.size:
        batch = _revision_batch(engine, promises, keys, found, revised)
        for j, i in enumerate(revised.tolist()):
            made = promise_at(engine, batch, j)
            text = _revision_text(float(elapsed[i]), engine.hours_per_unit, made.explanation)
            suggested[i] = replace(made, explanation=text)
    completion = start + found.expected_hours * 3600.0
    return [
        OrderRisk(
            segment=keys[i],
            elapsed_hours=float(elapsed[i]),
            probability_late=float(found.outlook.probability_late[i]),
            expected_completion_s=float(completion[i]),
            suggested=suggested.get(i),
        )
        for i in range(len(promises))
    ]


def _labels(engine: QuoteEngine, promise: OpenPromise) -> tuple[str | None, ...]:
    values = (promise.features.get(name) for name in engine.segments)
    return tuple(None if value is None else str(value) for value in values)


def _revision_batch(
    engine: QuoteEngine,
    promises: Sequence[OpenPromise],
    keys: Sequence[str],
    found: Revisions,
    revised: NDArray[np.intp],
) -> QuoteBatch:
    """The revised orders' promises as a quote batch, made by `promise_batch` from the revised
    expectation and buffer as every quote is: rounded, counted and checked against the longest
    promise allowed (the same deadlines `revise` found, by the same arithmetic)."""
    rows = revised.tolist()
    return promise_batch(
        engine.calendar,
        engine.unit,
        engine.max_promise_units,
        ordered_at_s=np.array([promises[i].ordered_s for i in rows]),
        clock_start_s=np.array([promises[i].clock_start_s for i in rows]),
        expected_hours=found.expected_hours[revised],
        buffer_hours=found.buffer_hours[revised],
        segments=[keys[i] for i in rows],
        levels=np.full(revised.size, 1.0 - engine.target_late_rate),
    )


def _revision_text(elapsed_hours: float, hours_per_unit: float, explanation: str) -> str:
    if elapsed_hours <= 0:
        return f"Revised before the clock started. {explanation}"
    if hours_per_unit >= 24.0:
        open_for = f"{elapsed_hours / 24.0:.1f} days"
    elif hours_per_unit >= 1.0:
        open_for = f"{elapsed_hours:.1f} hours"
    else:
        open_for = f"{elapsed_hours * 60.0:.0f} minutes"
    return f"Revised: the order is still open {open_for} after its clock started. {explanation}"
