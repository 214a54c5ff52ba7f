"""Keeping promises alive: the risk of open orders, the call list, and honest revisions.

Risks come from the served engine's residual distributions (`models.revision.assess`) applied
to the quote as stored: its clock start, the model's expectation then and its deadline, so a
quote keeps its own numbers after the model is retrained. A revision is stored as a quote
linked to the original (`revision_of`), never overwriting it; an outcome recorded for any
quote of the chain is recorded for all of them (`service.ledger`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import InputError
from models.features import FeatureSchema
from models.revision import NoRiskModel, OpenPromise, OrderRisk, assess
from service.bundles import Serving
from service.errors import Conflict
from service.ledger import Contact, Ledger, NewQuote, NewRequest, Recorded, StoredQuote
from service.metrics import Metrics
from service.quotes import fingerprint
from service.schemas import AtRiskResponse, ContactView, RiskResponse
from service.settings import Settings

log = logging.getLogger(__name__)

UTC = dt.UTC
# The at-risk list reads at most this many open promises per request (soonest first).
MAX_OPEN_SCANNED = 20_000


class RevisionNotNeeded(Conflict):
    """The current promise already keeps the target: a later one would only cost."""

    code = "no_revision_needed"


def open_promise(quote: StoredQuote, schema: FeatureSchema) -> OpenPromise:
    """The stored quote as the core reads it (segment labels checked by the served schema)."""
    try:
        features: Mapping[str, object] = schema.check_order(
            dict(quote.features), strict_categories=False
        )[0]
    except InputError:
        features = quote.features  # a schema that changed since: its segment falls back
    return OpenPromise(
        features=features,
        ordered_s=quote.ordered_at.timestamp(),
        clock_start_s=quote.clock_start.timestamp(),
        # A revision's `expected_hours` is conditional on its being open: the risk is measured
        # from the model's expectation, which it keeps beside it.
        expected_hours=(
            quote.expected_hours
            if quote.model_expected_hours is None
            else quote.model_expected_hours
        ),
        deadline_s=quote.deadline_at.timestamp(),
    )


def assess_quote(serving: Serving, quote: StoredQuote, now_utc: dt.datetime) -> OrderRisk:
    """The open order's outlook now; `Conflict` for a bundle trained before risks were kept."""
    return _assess(serving, open_promise(quote, serving.bundle.engine.schema), now_utc)


def _assess(serving: Serving, promise: OpenPromise, now_utc: dt.datetime) -> OrderRisk:
    try:
        return assess(serving.bundle.engine, promise, now_utc.timestamp())
    except NoRiskModel as err:
        raise Conflict(str(err)) from err


def risk_view(
    serving: Serving,
    quote: StoredQuote,
    now_utc: dt.datetime,
    contacts: Sequence[Contact] = (),
    revised_by: str | None = None,
    outlook: OrderRisk | None = None,
) -> RiskResponse:
    """The risk answer for a quote: computed for an open order, known for a fulfilled one."""
    base: dict[str, Any] = {
        "quote_id": quote.quote_id,
        "original_quote_id": quote.original_id,
        "revision": quote.revision,
        "reference": quote.reference,
        "at": now_utc,
        "deadline_at": quote.deadline_at,
        "promise_date": quote.promise_local.date(),
        "promised_by": None if quote.unit == "day" else quote.promise_local,
        "elapsed_hours": (now_utc - quote.clock_start).total_seconds() / 3600.0,
        "revised_by": revised_by,
        "contacts": [_contact_view(c) for c in contacts],
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
            segment=quote.segment,
            explanation=(
                "Fulfilled after its promise: it was late."
                if late
                else "Fulfilled on time: the promise was kept."
            ),
        )
    view = outlook or assess_quote(serving, quote, now_utc)
    suggested = view.suggested
    overdue = now_utc > quote.deadline_at
    return RiskResponse(
        **base,
        status="overdue" if overdue else "open",
        probability_late=view.probability_late,
        expected_completion=dt.datetime.fromtimestamp(view.expected_completion_s, tz=UTC),
        needs_revision=suggested is not None,
        suggested_deadline_at=None if suggested is None else suggested.deadline_at,
        suggested_promise_date=None if suggested is None else suggested.promise_date,
        suggested_promised_by=(
            None if suggested is None or quote.unit == "day" else suggested.promise_local
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


def _contact_view(contact: Contact) -> ContactView:
    return ContactView(
        quote_id=contact.quote_id,
        contacted_by=contact.contacted_by,
        contacted_at=contact.contacted_at,
        note=contact.note,
    )


def quote_risk(
    ledger: Ledger, serving: Serving, quote_id: str, now_utc: dt.datetime
) -> RiskResponse:
    """The risk of one quote, with its contacts and the id of any newer revision."""
    chain = ledger.chain(quote_id)
    quote = next(q for q in chain if q.quote_id == quote_id)
    newest = chain[-1]
    revised_by = newest.quote_id if newest.revision > quote.revision else None
    contacts = ledger.contacts_for([quote.original_id]).get(quote.original_id, [])
    return risk_view(serving, quote, now_utc, contacts, revised_by)


@dataclass(frozen=True, slots=True)
class AtRiskQuery:
    """Which open orders to list."""

    min_probability: float
    within: dt.timedelta
    store: str | None
    limit: int


def at_risk(
    ledger: Ledger,
    serving: Serving,
    settings: Settings,
    query: AtRiskQuery,
    now_utc: dt.datetime,
) -> AtRiskResponse:
    """Open orders (their newest promise) due within `within` or overdue by at most the
    configured days, whose risk is at least `min_probability`: soonest deadline first, the
    likelier first at equal deadlines."""
    candidates = ledger.open_quotes(
        now_utc - dt.timedelta(days=settings.at_risk_overdue_days),
        now_utc + query.within,
        limit=MAX_OPEN_SCANNED,
    )
    if query.store is not None:
        candidates = [
            q for q in candidates if str(q.features.get(settings.store_field)) == query.store
        ]
    listed: list[tuple[StoredQuote, OrderRisk]] = []
    for quote in candidates:
        view = assess_quote(serving, quote, now_utc)
        if view.probability_late >= query.min_probability - 1e-12:
            listed.append((quote, view))
    listed.sort(key=lambda item: (item[0].deadline_at, -item[1].probability_late))
    listed = listed[: query.limit]
    contacts = ledger.contacts_for([q.original_id for q, _ in listed])
    orders = [
        risk_view(serving, q, now_utc, contacts.get(q.original_id, []), None, view)
        for q, view in listed
    ]
    return AtRiskResponse(
        at=now_utc,
        min_probability=query.min_probability,
        within_hours=query.within.total_seconds() / 3600.0,
        store=query.store,
        count=len(orders),
        orders=orders,
    )


def revise(
    ledger: Ledger,
    serving: Serving,
    metrics: Metrics,
    quote_id: str,
    client_id: str,
    idempotency_key: str | None,
    now_utc: dt.datetime,
) -> Recorded:
    """Store an honest revision of the newest promise of `quote_id`'s order.

    Raises `NotFound`; `Conflict` when the order is fulfilled or was revised meanwhile;
    `RevisionNotNeeded` when the current promise still keeps the target."""
    request = NewRequest(
        client_id=client_id,
        idempotency_key=idempotency_key,
        request_sha256=fingerprint("revision", {"quote_id": quote_id}),
        kind="revision",
        created_at=now_utc,
    )
    replayed = ledger.replay(request)
    if replayed is not None:
        return replayed
    chain = ledger.chain(quote_id)
    newest = chain[-1]
    if newest.outcome is not None:
        raise Conflict(
            f"the order of quote {quote_id} was fulfilled at "
            f"{newest.outcome.fulfilled_at.isoformat()}: there is nothing to revise"
        )
    engine = serving.bundle.engine
    promise = open_promise(newest, engine.schema)
    view = _assess(serving, promise, now_utc)
    if view.suggested is None:
        raise RevisionNotNeeded(
            f"the promise of {newest.quote_id} still keeps the target late rate "
            f"(risk {view.probability_late:.0%} now): no revision is needed"
        )
    item = NewQuote(
        promise=view.suggested,  # not None: checked above
        features=newest.features,
        reference=newest.reference,
        warnings=[],
        model_version=serving.version,
        time_zone=str(engine.calendar.zone),
        revision_of=newest.original_id,
        revision=newest.revision + 1,
        model_expected_hours=promise.expected_hours,
    )
    recorded = ledger.record_revision(request, item)
    if not recorded.replayed:
        metrics.revisions.inc()
        log.info(
            "quote.revised",
            extra={
                "quote_id": recorded.quotes[0].quote_id,
                "revision_of": newest.original_id,
                "probability_late": round(view.probability_late, 4),
            },
        )
    return recorded
