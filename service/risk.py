"""What the risk of an order says: a stored quote as the core reads it, and the risk answer.

Risks come from the served engine's residual distributions (`models.revision.assess`) applied
to the quote as stored: its clock start, the model's expectation then and its deadline, so a
quote keeps its own numbers after the model is retrained. A fulfilled order's answer is known
(probability 0 or 1). The desk (`service.desk`) assesses, lists and revises; this module turns
what it found into a `RiskResponse`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import InputError
from models.features import FeatureSchema
from models.revision import OpenPromise, OrderRisk
from service.errors import Conflict
from service.ledger.records import Contact, StoredQuote
from service.schemas import ContactView, RiskResponse

UTC = dt.UTC


class ModelGone(Conflict):
    """The model that quoted an order can no longer be loaded: its risk is not judged by
    another model silently."""

    code = "model_unavailable"


class RevisionNotNeeded(Conflict):
    """The current promise already keeps the target: a later one would only cost."""

    code = "no_revision_needed"


@dataclass(frozen=True, slots=True)
class AtRiskQuery:
    """Which open orders to list."""

    min_probability: float
    within: dt.timedelta
    store: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class QuoteRisk:
    """A stored quote at moment `at`: its outlook while the order is open (not needed once it
    is fulfilled), the contacts recorded for its order, and the id of a newer revision."""

    quote: StoredQuote
    at: dt.datetime
    outlook: OrderRisk | None
    contacts: Sequence[Contact] = ()
    revised_by: str | None = None


def open_promise(quote: StoredQuote, schema: FeatureSchema) -> OpenPromise:
    """The stored quote as the core reads it (segment labels checked by the served schema)."""
    try:
        features: Mapping[str, object] = schema.check_order(
            dict(quote.features), strict_categories=False
        )[0]
    except InputError:
        features = quote.features  # a schema that changed since: its segment falls back
    promise = quote.promise
    return OpenPromise(
        features=features,
        ordered_s=promise.ordered_at.timestamp(),
        clock_start_s=promise.clock_start.timestamp(),
        # A revision's `expected_hours` is conditional on its being open: the risk is measured
        # from the model's expectation, which it keeps beside it.
        expected_hours=(
            promise.expected_hours
            if quote.model_expected_hours is None
            else quote.model_expected_hours
        ),
        deadline_s=promise.deadline_at.timestamp(),
    )


def risk_response(risk: QuoteRisk) -> RiskResponse:
    """The risk answer for a quote: computed for an open order, known for a fulfilled one."""
    quote, promise, now_utc = risk.quote, risk.quote.promise, risk.at
    base: dict[str, Any] = {
        "quote_id": quote.quote_id,
        "original_quote_id": quote.original_id,
        "revision": quote.revision,
        "reference": quote.reference,
        "at": now_utc,
        "deadline_at": promise.deadline_at,
        "promise_date": promise.promise_date,
        "promised_by": quote.promised_by,
        "elapsed_hours": (now_utc - promise.clock_start).total_seconds() / 3600.0,
        "revised_by": risk.revised_by,
        "contacts": [ContactView.model_validate(c) for c in risk.contacts],
    }
    if quote.outcome is not None:
        late = quote.outcome.was_late
        return RiskResponse(
            **base,
            status="fulfilled",
            probability_late=1.0 if late else 0.0,
            expected_completion=quote.outcome.fulfilled_at,
            needs_revision=False,
            suggested_deadline_at=None,
            suggested_promise_date=None,
            suggested_promised_by=None,
            segment=promise.segment,
            explanation=(
                "Fulfilled after its promise: it was late."
                if late
                else "Fulfilled on time: the promise was kept."
            ),
        )
    view = risk.outlook
    assert view is not None, "an open order's risk has its outlook"
    suggested = view.suggested
    overdue = now_utc > promise.deadline_at
    return RiskResponse(
        **base,
        status="overdue" if overdue else "open",
        probability_late=view.probability_late,
        expected_completion=dt.datetime.fromtimestamp(view.expected_completion_s, tz=UTC),
        needs_revision=suggested is not None,
        suggested_deadline_at=None if suggested is None else suggested.deadline_at,
        suggested_promise_date=None if suggested is None else suggested.promise_date,
        suggested_promised_by=(
            None if suggested is None or promise.unit == "day" else suggested.promise_local
        ),
        segment=view.segment,
        explanation=_risk_sentence(view, overdue),
    )


def _risk_sentence(view: OrderRisk, overdue: bool) -> str:
    if overdue:
        head = "The promise has passed and the order is still open."
    else:
        head = (
            f"About {round(100 * view.probability_late)} in 100 orders still open at this point "
            "missed a promise like this one."
        )
    if view.suggested is None:
        return f"{head} The promise still keeps the target: no new date is needed."
    return f"{head} {view.suggested.explanation}"
