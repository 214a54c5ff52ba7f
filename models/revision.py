"""An open order's risk now, and the honest revision of its promise.

Given a promise already made (its clock start, the model's expectation and its deadline) and
the moment `now`, `assess` answers from the engine's residual distributions (`models.risk`):
how likely the promise is to break given the order is still open, when the order will now
most likely be ready, and the promise that would keep the target late rate from here (the
conditional quantile at 1 - target, rounded to the unit and moved off closed days as every
quote is). A promise is revised only once its risk exceeds the target and the risk it had when
it was given (until then it is as good as it was), and never to an earlier deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from models.errors import NoRiskModel
from models.quoting import Promise, QuoteEngine, promise_from_hours
from models.risk import outlook, probability_late


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


def assess(engine: QuoteEngine, promise: OpenPromise, now_s: float) -> OrderRisk:
    """The outlook of `promise` at `now_s` for an order not fulfilled by then."""
    risk = engine.risk
    if risk is None:
        raise NoRiskModel(
            "this model was trained before open-order risk was kept; retrain and promote it"
        )
    labels = tuple(promise.features.get(name) for name in engine.segments)
    segment, dist = risk.resolve([None if v is None else str(v) for v in labels])
    start = promise.clock_start_s
    elapsed = (now_s - start) / 3600.0
    deadline_hours = (promise.deadline_s - start) / 3600.0
    view = outlook(dist, promise.expected_hours, elapsed, deadline_hours, engine.target_late_rate)
    # The risk the promise had when it was given (about the target, but measured on plain
    # residuals, it may differ a little from the policy's calibrated scores): a promise is
    # revised once its risk has grown beyond both.
    at_issue = probability_late(dist, promise.expected_hours, 0.0, deadline_hours)
    suggested = None
    if view.probability_late > max(engine.target_late_rate, at_issue) + 1e-9:
        revised = promise_from_hours(
            engine,
            promise.ordered_s,
            start,
            view.expected_hours,
            max(0.0, view.revised_hours - view.expected_hours),
            1.0 - engine.target_late_rate,
            segment,
        )
        # Rounding can make the two meet; a revision is never earlier than the promise given.
        if revised.deadline_at.timestamp() > promise.deadline_s:
            text = _revision_text(elapsed, engine.hours_per_unit, revised.explanation)
            suggested = replace(revised, explanation=text)
    return OrderRisk(
        segment=segment,
        elapsed_hours=elapsed,
        probability_late=view.probability_late,
        expected_completion_s=start + view.expected_hours * 3600.0,
        suggested=suggested,
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
