"""The JSON API under /v1 for point-of-sale systems: each route parses, calls, stores, answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from models.errors import InputError, PromiseError
from service.cursor import (
    AT_RISK_LIST,
    CURSOR_FIELD,
    MAX_CURSOR_CHARS,
    QUOTES_LIST,
    PageCursor,
    at_risk_filters,
    read_cursor,
)
from service.deps import (
    AdminCaller,
    DeskDep,
    HolderDep,
    IdempotencyKey,
    QuoteCaller,
    QuoteDeskDep,
    ReadCaller,
    SettingsDep,
)
from service.errors import Conflict, ErrorBody
from service.ledger.records import OutcomeCorrection, OutcomeResult, Recorded
from service.openapi import (
    ERROR_CODES,
    ERROR_CODES_KEY,
    INVALID_BUNDLE,
    NEVER_422,
    REPLAY_HEADER,
    REPLAYS,
)
from service.risk import AtRiskQuery, ModelGone, RevisionNotNeeded
from service.schemas import (
    MAX_REFERENCE_CHARS,
    BatchQuoteRequest,
    BatchQuoteResponse,
    ContactRequest,
    ContactView,
    CorrectionView,
    ModelResponse,
    OutcomeCorrectionRequest,
    OutcomeRequest,
    OutcomeResponse,
    OutcomeView,
    PerformanceResponse,
    QuoteRequest,
    QuoteResponse,
    ReloadResponse,
    RiskResponse,
    UtcDatetime,
)
from service.schemas_lists import (
    ISO_DURATION_PATTERN,
    AtRiskResponse,
    QuoteListResponse,
    iso_duration,
)
from service.settings import Settings
from service.strict_json import StrictJsonRoute
from service.tables import storable_text

MAX_WITHIN = dt.timedelta(days=366)


def _errors(
    *statuses: int, invalid: str | None = None, more: Mapping[int, tuple[str, ...]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: each status with its reason and `error` codes (the
    usual ones, `service.openapi.ERROR_CODES`, and the route's `more`). The body limits' 400,
    408 and 413 and the key throttle's 429 are added where they apply (`service.openapi`)."""
    reasons = {
        401: "No API key, or an unknown one",
        403: "A key without the needed role, or an order of a store the key does not act for",
        404: "No such quote (a quote of a store the key does not act for is not found either)",
        409: "Contradicts what the ledger holds, or the model that quoted it is gone",
        422: invalid or "Invalid input: `field` names it",
        503: "No model loaded or the ledger is unreachable; see Retry-After",
    }
    extra = more or {}
    return {
        status: {
            "model": ErrorBody,
            "description": reasons[status],
            ERROR_CODES_KEY: [*ERROR_CODES[status], *extra.get(status, ())],
        }
        for status in statuses
    }


def _quoted(recorded: Recorded, many: bool = False) -> Response:
    """The 201 answer of a quoting request: its quote (its quotes in a batch) as JSON, with the
    header telling a retry's replay. Built and serialized once here: FastAPI re-validates a
    returned model against the route's `response_model`, a second pass over the same fields."""
    quotes = [QuoteResponse.model_validate(quote) for quote in recorded.quotes]
    body = (
        BatchQuoteResponse(quotes=quotes).model_dump_json() if many else quotes[0].model_dump_json()
    )
    return Response(
        body,
        status_code=201,
        media_type="application/json",
        headers={REPLAY_HEADER: str(recorded.replayed).lower()},
    )


router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)

QuoteId = Annotated[str, Path(description="The id a quote was given, e.g. Q-7K3M-9XRT-2HDP.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_CHARS,
        description="The `next_cursor` of the previous page, unchanged: the next page starts "
        "after its last item (keyset: items stored meanwhile never shift it). The cursor keeps "
        "the list's filters, which may be left out; given, they must be the same.",
    ),
]
PAGED_INVALID = (
    "Invalid input: `field` names it; `cursor` for a cursor that cannot be read, was given "
    "to another key or for another list, or pages other filters"
)


@router.get(
    "/quotes",
    tags=["quotes"],
    responses=_errors(401, 403, 422, 503, invalid=PAGED_INVALID),
)
def find_quotes(
    caller: QuoteCaller,
    desk: DeskDep,
    reference: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_REFERENCE_CHARS,
            description="The shop's own order reference, as sent with the quote (exact "
            "match); may be left out with a `cursor`, which keeps it.",
            examples=["PO-1234"],
        ),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1_000, description="At most this many quotes.")] = 100,
) -> QuoteListResponse:
    """The quotes given for the shop's own order reference, newest first (an order's revisions
    too), a page at a time with the `total`. Another store's quote is left out, exactly as if
    it did not exist."""
    page = read_cursor(cursor, QUOTES_LIST, caller) if cursor is not None else None
    return desk.find_quotes(_reference_of(page, reference), limit, caller, page)


def _reference_of(page: PageCursor | None, reference: str | None) -> str:
    """The reference looked up: as given, else as the cursor keeps it (given, the same)."""
    kept = page.query.get("reference") if page is not None else None
    if page is not None and (not isinstance(kept, str) or reference not in (None, kept)):
        raise InputError(
            "this cursor pages the quotes of another reference; send the same reference with "
            "it (or none), or start again without a cursor",
            field=CURSOR_FIELD,
        )
    chosen = reference if reference is not None else kept
    if not isinstance(chosen, str):
        raise InputError("reference is required (or a cursor that keeps it)", field="reference")
    if not storable_text(chosen):
        raise InputError(
            "reference contains a NUL character or an unpaired surrogate", field="reference"
        )
    return chosen


@router.post(
    "/quotes",
    status_code=201,
    response_model=QuoteResponse,
    openapi_extra={REPLAYS: True},
    tags=["quotes"],
    responses=_errors(401, 403, 409, 422, 503),
)
async def create_quote(
    body: QuoteRequest,
    caller: QuoteCaller,
    desk: QuoteDeskDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Quote one order. The quote is stored before it is answered; a retry with the same
    `Idempotency-Key` gets the same quote back (header `Idempotent-Replayed: true`)."""
    return _quoted(await desk.issue([body], "single", caller, idempotency_key))


@router.post(
    "/quotes/batch",
    status_code=201,
    response_model=BatchQuoteResponse,
    openapi_extra={REPLAYS: True},
    tags=["quotes"],
    responses=_errors(401, 403, 409, 422, 503),
)
async def create_quotes(
    body: BatchQuoteRequest,
    caller: QuoteCaller,
    desk: QuoteDeskDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Quote many orders in one call (at most `PROMISE_MAX_BATCH`): all are quoted and stored,
    or none when any is invalid (each bad field named, e.g. `orders[3].order.lens_type`)."""
    recorded = await desk.issue(body.orders, "batch", caller, idempotency_key)
    return _quoted(recorded, many=True)


# Any id is looked up (a malformed one is simply not found), so FastAPI's automatic 422 is
# dropped from the schema (`app.honest_openapi`).
@router.get(
    "/quotes/{quote_id}",
    tags=["quotes"],
    responses=_errors(401, 403, 404, 503),
    openapi_extra={NEVER_422: True},
)
def get_quote(quote_id: QuoteId, caller: QuoteCaller, desk: DeskDep) -> QuoteResponse:
    """The quote as it was given, with its outcome once recorded. Another store's quote is
    not found, as an unknown id."""
    return QuoteResponse.model_validate(desk.quote(quote_id, caller))


@router.post(
    "/quotes/{quote_id}/outcome",
    status_code=201,
    tags=["outcomes"],
    responses={
        200: {"model": OutcomeResponse, "description": "The same outcome was recorded before"},
        **_errors(401, 403, 404, 409, 422, 503),
    },
)
def create_outcome(
    quote_id: QuoteId,
    body: OutcomeRequest,
    caller: QuoteCaller,
    desk: DeskDep,
    response: Response,
) -> OutcomeResponse:
    """Record when the order was really fulfilled, once: 201 when new, 200 when the same
    outcome was recorded before, 409 when a different one was (correct it with PUT)."""
    result, created = desk.record_outcome(quote_id, body.fulfilled_at, caller)
    response.status_code = 201 if created else 200
    return _outcome_response(quote_id, result, [])


@router.put(
    "/quotes/{quote_id}/outcome",
    tags=["outcomes"],
    responses=_errors(401, 403, 404, 409, 422, 503),
)
def correct_outcome(
    quote_id: QuoteId, body: OutcomeCorrectionRequest, caller: QuoteCaller, desk: DeskDep
) -> OutcomeResponse:
    """Correct a recorded outcome that was wrong: the order (and every revision of it) takes
    the new fulfilment time, and the ledger keeps the old and the new value, who, when and
    why (`corrections`, oldest first). The live late rate, the drift alarms and the adaptive
    policy count the corrected value. Sending the recorded time again changes nothing; 409
    when no outcome is recorded yet (POST it)."""
    corrected = desk.correct_outcome(quote_id, body.fulfilled_at, body.reason, caller)
    return _outcome_response(quote_id, corrected.result, corrected.history)


@router.get(
    "/quotes/{quote_id}/outcome",
    tags=["outcomes"],
    responses=_errors(401, 403, 404, 409, 503),
    openapi_extra={NEVER_422: True},
)
def get_outcome(quote_id: QuoteId, caller: QuoteCaller, desk: DeskDep) -> OutcomeResponse:
    """The recorded outcome with its history of corrections; 409 while none is recorded."""
    quote = desk.quote(quote_id, caller)
    if quote.outcome is None:
        raise Conflict(f"quote {quote_id} has no outcome recorded yet")
    result = OutcomeResult(quote_id, "recorded", quote.outcome, quote.promise.deadline_at)
    return _outcome_response(quote_id, result, desk.outcome_history(quote_id, caller))


def _outcome_response(
    quote_id: str, result: OutcomeResult, history: Sequence[OutcomeCorrection]
) -> OutcomeResponse:
    assert result.outcome is not None and result.deadline_at is not None
    return OutcomeResponse(
        quote_id=quote_id,
        deadline_at=result.deadline_at,
        outcome=OutcomeView.model_validate(result.outcome),
        corrections=[CorrectionView.model_validate(item) for item in history],
    )


@router.get(
    "/quotes/{quote_id}/risk",
    tags=["at risk"],
    responses=_errors(401, 403, 404, 409, 503, more={409: (ModelGone.code,)}),
    openapi_extra={NEVER_422: True},
)
def get_risk(quote_id: QuoteId, caller: QuoteCaller, desk: QuoteDeskDep) -> RiskResponse:
    """How likely the quote's promise is to break given the order is still open now, when it
    will most likely be ready, and the promise that keeps the target late rate from here.
    A fulfilled order's answer is known (probability 0 or 1)."""
    return desk.risk(quote_id, caller)


@router.get(
    "/at-risk",
    tags=["at risk"],
    responses=_errors(401, 403, 409, 422, 503, invalid=PAGED_INVALID),
)
def get_at_risk(
    caller: QuoteCaller,
    desk: QuoteDeskDep,
    settings: SettingsDep,
    min_probability: Annotated[
        float | None,
        Query(
            ge=0.0,
            le=1.0,
            description="Least risk listed; default PROMISE_AT_RISK_MIN_PROBABILITY.",
        ),
    ] = None,
    within: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Promises due within this long from now: an ISO 8601 duration of "
            "weeks, days, hours, minutes and seconds (P7D, PT12H, P1DT6H; not a number of "
            "seconds, years or months), positive and at most P366D; default "
            "PROMISE_AT_RISK_WITHIN_DAYS days. Overdue open orders are always listed (up to "
            "PROMISE_AT_RISK_OVERDUE_DAYS).",
            json_schema_extra={"format": "duration", "pattern": ISO_DURATION_PATTERN},
            examples=["P7D"],
        ),
    ] = None,
    store: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only this store (the PROMISE_STORE_FIELD feature); a key lists the "
            "stores it acts for only.",
        ),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1_000, description="At most this many orders.")] = 200,
) -> AtRiskResponse:
    """The call list: open orders of the caller's stores whose promise is likely to break,
    soonest deadline first (the likelier first at equal deadlines), each with the honest new
    date to offer; a page at a time with the `total`, every page judged at the first page's
    moment `at`."""
    page = read_cursor(cursor, AT_RISK_LIST, caller) if cursor is not None else None
    span = None if within is None else iso_duration(within, "within")
    query = _call_list_query(settings, page, min_probability, span, store, limit)
    return desk.at_risk(query, caller, page)


def _call_list_query(
    settings: Settings,
    page: PageCursor | None,
    min_probability: float | None,
    within: dt.timedelta | None,
    store: str | None,
    limit: int,
) -> AtRiskQuery:
    """The call list's filters: as given, else as the cursor keeps them, else the defaults."""
    if page is not None:
        kept = at_risk_filters(page)
        given = (min_probability, within, store)
        if any(value is not None and value != was for value, was in zip(given, kept, strict=True)):
            raise InputError(
                "this cursor pages a call list with other filters (min_probability, within, "
                "store); send the same ones with it (or none), or start again without a cursor",
                field=CURSOR_FIELD,
            )
        min_probability, within, store = kept
    if store is not None and not storable_text(store):
        raise InputError("store contains a NUL character or an unpaired surrogate", field="store")
    horizon = dt.timedelta(days=settings.at_risk_within_days) if within is None else within
    if not dt.timedelta(0) < horizon <= MAX_WITHIN:
        raise InputError("within must be a positive duration of at most 366 days", field="within")
    return AtRiskQuery(
        min_probability=(
            settings.at_risk_min_probability if min_probability is None else min_probability
        ),
        within=horizon,
        store=store,
        limit=limit,
    )


@router.post(
    "/quotes/{quote_id}/revise",
    status_code=201,
    response_model=QuoteResponse,
    openapi_extra={REPLAYS: True},
    tags=["at risk"],
    responses=_errors(
        401, 403, 404, 409, 422, 503, more={409: (RevisionNotNeeded.code, ModelGone.code)}
    ),
)
async def revise_quote(
    quote_id: QuoteId,
    caller: QuoteCaller,
    desk: QuoteDeskDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Give the order a new, honest promise from the time it has been open, at the same target
    late rate: stored as a revision linked to the original (never overwriting it). 409 when
    the order is fulfilled, was revised meanwhile, or its promise still keeps the target
    (`no_revision_needed`)."""
    return _quoted(await desk.revise(quote_id, caller, idempotency_key))


@router.post(
    "/quotes/{quote_id}/contacts",
    status_code=201,
    tags=["at risk"],
    responses=_errors(401, 403, 404, 422, 503),
)
def create_contact(
    quote_id: QuoteId,
    caller: QuoteCaller,
    desk: DeskDep,
    body: ContactRequest | None = None,
) -> ContactView:
    """Record that the customer was contacted about this order (who: the name of the caller's
    key, a staff member's name from the keys file)."""
    contact = desk.record_contact(quote_id, caller, body.note if body else None)
    return ContactView.model_validate(contact)


# Every role may read performance and the model: no 403 to document.
@router.get("/performance", tags=["performance"], responses=_errors(401, 422, 503))
def get_performance(
    caller: ReadCaller,
    desk: DeskDep,
    holder: HolderDep,
    since: Annotated[
        UtcDatetime | None,
        Query(description="Quotes given at or after this time (ISO 8601 with a zone)."),
    ] = None,
    until: Annotated[
        UtcDatetime | None,
        Query(description="Quotes given before this time (ISO 8601 with a zone)."),
    ] = None,
) -> PerformanceResponse:
    """For the caller's stores (every store for an unscoped key): the live late rate of quotes
    with recorded outcomes, overall and per segment, against
    the target, for quotes given in [since, until) (revisions count as quotes too); the
    revisions made in the window; and drift alarms as of now: per segment, the promises due in
    the last `PROMISE_ALARM_WINDOW_DAYS` (an open order past its deadline counts as late),
    flagged when the whole confidence interval lies outside [target / factor, target * factor];
    beside each segment of adaptive promises, where the served adaptive buffer stands now."""
    if since is not None and until is not None and since >= until:
        raise InputError("since must be before until", field="since")
    return desk.performance(holder.current(), since, until, caller)


@router.get("/model", tags=["model"], responses=_errors(401, 503))
def get_model(caller: ReadCaller, holder: HolderDep) -> ModelResponse:
    """The bundle in use: version, when trained, policy, target and back-test summary; and the
    version promoted for serving (an admin reload switches to it when they differ)."""
    serving = holder.require()
    manifest = serving.bundle.manifest
    try:
        promoted: str | None = holder.promoted_version()
        promoted_error = None
    except PromiseError as err:
        promoted, promoted_error = None, str(err)
    engine = serving.bundle.engine
    info = dict(manifest.info)
    feature_schema = _section(info, "feature_schema")
    return ModelResponse(
        version=manifest.version,
        created_at=manifest.created_at,
        loaded_at=serving.loaded_at,
        policy=manifest.policy,
        target_late_rate=manifest.target_late_rate,
        unit=manifest.unit,
        time_zone=str(engine.calendar.zone),
        segments_by=list(engine.segments),
        libraries=dict(manifest.libraries),
        backtest=_section(info, "backtest"),
        fit=_section(info, "fit"),
        data=_section(info, "data"),
        feature_schema=feature_schema,
        order_fields=list(engine.schema.feature_names),
        derived_fields=[
            str(column)
            for column in feature_schema.get("columns", ())
            if column not in engine.schema.feature_names
        ],
        promoted_version=promoted,
        promoted_error=promoted_error,
    )


@router.post(
    "/model/reload",
    tags=["model"],
    responses=_errors(401, 403, 404, 409, 422, 503, more={422: (INVALID_BUNDLE,)}),
)
def reload_model(
    caller: AdminCaller,
    holder: HolderDep,
    force: Annotated[
        bool,
        Query(
            description="Switch even to a model that takes other orders (other features, "
            "unit, segments or time zone): point-of-sale systems may then be refused."
        ),
    ] = False,
) -> ReloadResponse:
    """Serve the promoted bundle on every worker (and every host on this ledger): load it and
    swap to it atomically. 409 listing the differences when it takes other orders than the
    served one (unless `force=true`); when it cannot be loaded the old one keeps serving and
    the answer says why (422, or 404 when nothing is promoted)."""
    reloaded = holder.reload(force=force)
    return ReloadResponse(
        previous_version=reloaded.previous_version,
        version=reloaded.serving.version,
        changed=reloaded.previous_version != reloaded.serving.version,
        loaded_at=reloaded.serving.loaded_at,
        differences=reloaded.differences,
    )


def _section(info: dict[str, Any], name: str) -> dict[str, Any]:
    value = info.get(name)
    return dict(value) if isinstance(value, dict) else {}
