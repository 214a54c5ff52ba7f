"""The desk: what each request does, from its checked input to the stored answer.

`Desk` works with the ledger alone: outcomes, contacts, the performance report. `QuoteDesk` adds
the bundle snapshot the request uses throughout (a reload never mixes two models in one answer):
quotes, the risk of an order, the call list, revisions.

Quotes and revisions take one path (`QuoteDesk._answer`): a retried request (same client and
Idempotency-Key, and the same request once validated: `1` and `1.0` are one number) is answered
from the ledger; otherwise its quotes are made (the orders checked against the bundle's schema and
quoted in one `models.quoting.quote` call, the back-test's, with an adaptive engine's control
state replayed from the ledger, `service.control`; or the honest revision of an open order),
stored before anything is answered, then counted and logged.

Every method acts for a `Caller` and within its stores: quoting for a store outside them is 403
naming the store; another store's quote is not found (404, as an unknown id: no oracle), and
the lists, the performance report and the drift alarms count the caller's stores only.

The lists (the call list, the quotes of a reference) answer a page at a time with the total
and a keyset cursor (`service.cursor`): the next page starts after the last item's sort key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from threadpoolctl import ThreadpoolController

from models import quoting
from models.control import ControlState
from models.errors import InputError
from models.revision import OrderRisk, assess, assess_all
from service.auth import Caller
from service.bundles import Serving
from service.control import ControlCache
from service.cursor import (
    AT_RISK_LIST,
    QUOTES_LIST,
    PageCursor,
    at_risk_fields,
    call_order,
    judged_at,
    key_fingerprint,
    reference_position,
    risk_cursor_position,
    risk_position,
)
from service.errors import Conflict
from service.ledger import Ledger
from service.ledger.records import (
    Contact,
    Corrected,
    NewRequest,
    OutcomeChange,
    OutcomeCorrection,
    OutcomeResult,
    Recorded,
    RequestKind,
    StoredQuote,
    new_quote_id,
    store_of,
)
from service.metrics import Metrics
from service.performance import drift_report, late_rates, revision_summary, verdict_report
from service.quote_request import Kind, fingerprint, out_of_scope, payload_of
from service.risk import (
    AtRiskQuery,
    ModelGone,
    QuoteRisk,
    RevisionNotNeeded,
    open_promise,
    risk_response,
)
from service.schemas import (
    CheckedOrder,
    PerformanceResponse,
    QuoteRequest,
    QuoteResponse,
    RiskResponse,
    to_orders,
)
from service.schemas_lists import AtRiskResponse, QuoteListResponse
from service.settings import Settings

log = logging.getLogger(__name__)

# The at-risk list reads at most this many open promises per request (soonest first).
MAX_OPEN_SCANNED = 20_000


@cache
def openmp_threads() -> ThreadpoolController:
    """The process's native thread pools, found once."""
    return ThreadpoolController()


_QUOTING_THREAD = threading.local()


def one_openmp_thread() -> None:
    """Keep the calling thread (the event loop's: quotes are made there) to one OpenMP thread,
    set once, not around every quote (threadpoolctl's `limit` cost ~0.2 ms a quote). A request
    quotes a handful of orders: more OpenMP threads fight the other requests for the cores
    (500 orders took 1 s with 2 threads on a busy 2-core machine, 20 ms with one)."""
    if not getattr(_QUOTING_THREAD, "is_limited", False):
        openmp_threads().limit(limits=1, user_api="openmp")  # kept: never undone
        _QUOTING_THREAD.is_limited = True


@dataclass(frozen=True, slots=True)
class NewQuotes:
    """Quotes made for a request, and what announces them once stored (a metric, a log)."""

    quotes: list[StoredQuote]
    announce: Callable[[Recorded], None]


@dataclass(frozen=True, slots=True)
class CallList:
    """The call list's answer, and the stored quote of each order on it, in the same order
    (the staff page shows what was ordered and who to call without reading them again)."""

    response: AtRiskResponse
    quotes: list[StoredQuote]


@dataclass(frozen=True, slots=True)
class Desk:
    """What one request works with: the ledger, the worker's control state cache, settings,
    metrics and the request's clock."""

    ledger: Ledger
    control: ControlCache
    settings: Settings
    metrics: Metrics
    now_utc: dt.datetime

    def quoting(
        self, serving: Serving, model_of: Callable[[str], Serving | None] | None = None
    ) -> QuoteDesk:
        """This desk with the bundle snapshot a quoting request uses throughout, and how to
        find the model that made an older quote (`BundleHolder.serving_for`; without it, only
        the snapshot's own version is known)."""
        return QuoteDesk(
            self.ledger,
            self.control,
            self.settings,
            self.metrics,
            self.now_utc,
            serving,
            model_of or (lambda version: serving if version == serving.version else None),
        )

    def quote(self, quote_id: str, caller: Caller) -> StoredQuote:
        """The quote as given, with its outcome; `NotFound` (also for another store's)."""
        return self.ledger.quotes.get(quote_id, caller.stores)

    def find_quotes(
        self, reference: str, limit: int, caller: Caller, cursor: PageCursor | None = None
    ) -> QuoteListResponse:
        """A page of the quotes given for the shop's `reference` in the caller's stores, newest
        first, after `cursor`'s position (from the start without one)."""
        after = None if cursor is None else reference_position(cursor)
        page = self.ledger.quotes.by_reference(reference, limit, caller.stores, after)
        next_cursor = None
        if page.more:
            last = page.quotes[-1]
            position = (last.created_at.isoformat(), last.quote_id)
            query = {"reference": reference}
            next_cursor = PageCursor(QUOTES_LIST, key_fingerprint(caller), query, position)
        return QuoteListResponse(
            reference=reference,
            total=page.total,
            count=len(page.quotes),
            next_cursor=None if next_cursor is None else next_cursor.encode(),
            quotes=[QuoteResponse.model_validate(quote) for quote in page.quotes],
        )

    def record_outcome(
        self, quote_id: str, fulfilled_at: dt.datetime, caller: Caller
    ) -> tuple[OutcomeResult, bool]:
        """Record what really happened to a quote; returns the stored outcome and whether it is
        new. Raises `InputError` for a time in the future, `NotFound`, or `Conflict`."""
        now_utc = self.now_utc
        self._not_in_future(fulfilled_at)
        result, created = self.ledger.outcomes.record(
            quote_id, fulfilled_at, now_utc, "api", caller.name, caller.stores
        )
        if created:
            assert result.outcome is not None
            self.metrics.outcomes.labels(str(result.outcome.was_late).lower(), "api").inc()
            log.info(
                "outcome.recorded",
                extra={"quote_id": quote_id, "was_late": result.outcome.was_late},
            )
        return result, created

    def correct_outcome(
        self, quote_id: str, fulfilled_at: dt.datetime, reason: str, caller: Caller
    ) -> Corrected:
        """Correct a recorded outcome, keeping the old value, who, when and why in the ledger.
        Raises `InputError` for a time in the future, `NotFound`, or `Conflict` (no outcome
        recorded yet)."""
        self._not_in_future(fulfilled_at)
        change = OutcomeChange(fulfilled_at, reason, caller.name, self.now_utc)
        corrected = self.ledger.outcomes.correct(quote_id, change, caller.stores)
        if corrected.changed:
            old = corrected.history[-1].old_fulfilled_at
            self.metrics.corrections.inc()
            log.info(
                "outcome.corrected",
                extra={
                    "quote_id": quote_id,
                    "old_fulfilled_at": old.isoformat(),
                    "fulfilled_at": fulfilled_at.isoformat(),
                    "corrected_by": caller.name,
                },
            )
        return corrected

    def outcome_history(self, quote_id: str, caller: Caller) -> list[OutcomeCorrection]:
        """The corrections of the quote's order, oldest first; `NotFound`."""
        return self.ledger.outcomes.history(quote_id, caller.stores)

    def _not_in_future(self, fulfilled_at: dt.datetime) -> None:
        now_utc = self.now_utc
        if fulfilled_at > now_utc + dt.timedelta(seconds=self.settings.clock_skew_seconds):
            raise InputError(
                f"fulfilled_at {fulfilled_at.isoformat()} is in the future (server "
                f"time {now_utc.isoformat(timespec='seconds')})",
                field="fulfilled_at",
            )

    def record_contact(self, quote_id: str, caller: Caller, note: str | None) -> Contact:
        """Record that the caller (by name) called the customer of `quote_id`'s order;
        `NotFound`."""
        contact = self.ledger.contacts.record(
            quote_id, caller.name, note, self.now_utc, caller.stores
        )
        self.metrics.contacts.inc()
        return contact

    def performance(
        self,
        serving: Serving | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        caller: Caller,
    ) -> PerformanceResponse:
        """The whole report from the ledger for the caller's stores: quotes given in
        [since, until), drift as of now, against the served model's target and beside its
        adaptive buffers (when it has them), and a verdict per segment as of now over the
        promises due since `since` (the drift window without it; `until` does not apply)."""
        target = serving.bundle.engine.target_late_rate if serving else None
        adaptive = self.control.view(serving, self.now_utc)
        stats = self.ledger.stats
        stores = caller.stores
        overall, segments = late_rates(stats.segment_counts(since, until, stores), target)
        window_days = (
            (self.now_utc - since).total_seconds() / 86_400.0
            if since is not None and since < self.now_utc
            else self.settings.alarm_window_days
        )
        return PerformanceResponse(
            since=since,
            until=until,
            overall=overall,
            segments=segments,
            revisions=revision_summary(stats.revision_facts(since, until, stores)),
            drift=drift_report(self.ledger, self.settings, self.now_utc, adaptive, stores),
            verdicts=verdict_report(
                self.ledger, self.settings, self.now_utc, window_days, target, stores
            ),
        )


@dataclass(frozen=True, slots=True)
class QuoteDesk(Desk):
    """A desk with the bundle snapshot this request quotes with, and the models of older
    quotes: an open order's risk, call-list entry and revision use the model that quoted it,
    never another one silently."""

    serving: Serving
    model_of: Callable[[str], Serving | None]

    async def issue(
        self,
        requests: Sequence[QuoteRequest],
        kind: Kind,
        caller: Caller,
        idempotency_key: str | None,
    ) -> Recorded:
        """The stored quotes for these orders (new, or the first answer to a retry).

        On the event loop: the orders are checked and quoted here (a fraction of a
        millisecond), the group commit stores them meanwhile the loop serves others; what may
        block (a keyed request's look-up, the control state's replay) goes to asyncio's own
        threads, not to the threadpool the sync routes share.
        Raises `InputError` naming the field for a bad order, `AccessDenied` (403) for an order
        of a store the caller may not act for, `Conflict` for a reused key."""
        checked = self.check(requests, kind)
        store_field = self.settings.store_field
        for asked in requests:
            store = store_of(asked.order, store_field)
            if not caller.allows(store):
                raise out_of_scope(caller, store, store_field)
        payload = payload_of(requests, checked, kind)
        request = self._request(kind, caller, idempotency_key, payload)

        async def make() -> NewQuotes:
            state = await self.control.current(self.serving, self.now_utc)  # None unless adaptive
            return self._quote(requests, checked, kind, state)

        return await self._answer(request, make)

    def check(self, requests: Sequence[QuoteRequest], kind: Kind) -> list[CheckedOrder]:
        """Validated orders; raises `InputError` (`InputErrors` for several) naming fields."""
        return to_orders(
            requests,
            self.serving.bundle.engine.schema,
            self.now_utc,
            self.settings,
            prefix="orders" if kind == "batch" else "",
        )

    def risk(self, quote_id: str, caller: Caller) -> RiskResponse:
        """The risk of one quote, with its contacts and the id of any newer revision;
        `NotFound`, or `NoRiskModel` for a bundle trained before risks were kept."""
        chain = self.ledger.quotes.chain(quote_id, caller.stores)
        quote = next(q for q in chain if q.quote_id == quote_id)
        newest = chain[-1]
        revised_by = newest.quote_id if newest.revision > quote.revision else None
        contacts = self.ledger.contacts.of_chains([quote.original_id]).get(quote.original_id, [])
        outlook = None if quote.outcome is not None else self._outlook(quote, self._model(quote))
        return risk_response(QuoteRisk(quote, self.now_utc, outlook, contacts, revised_by))

    def at_risk(
        self, query: AtRiskQuery, caller: Caller, cursor: PageCursor | None = None
    ) -> AtRiskResponse:
        """The call list as the API answers it (`call_list`)."""
        return self.call_list(query, caller, cursor).response

    def call_list(
        self, query: AtRiskQuery, caller: Caller, cursor: PageCursor | None = None
    ) -> CallList:
        """A page of at most `query.limit` open orders of the caller's stores (of `query.store`
        among them, when given; their newest promise) due within `query.within` or overdue by
        at most the configured days, whose risk is at least `query.min_probability`: soonest
        deadline first, the likelier first at equal deadlines (then by quote id), after the
        position of `cursor` and judged at its moment (the first page's), so a page never
        repeats or skips an order of the pages before it; an order quoted since that sorts
        after the cursor is listed (judged at that moment too), and a model served since may
        judge the rest differently. The list is drawn from the `MAX_OPEN_SCANNED` open orders
        due soonest; `total` counts it."""
        skew = dt.timedelta(seconds=self.settings.clock_skew_seconds)
        now_utc = self.now_utc if cursor is None else judged_at(cursor, self.now_utc, skew)
        stores = caller.stores
        if query.store is not None:
            stores = frozenset({query.store}) & (stores or {query.store})
        candidates = self.ledger.quotes.open_orders(
            now_utc - dt.timedelta(days=self.settings.at_risk_overdue_days),
            now_utc + query.within,
            limit=MAX_OPEN_SCANNED,
            stores=stores,
        )
        listed: list[tuple[StoredQuote, OrderRisk]] = []
        unassessed: dict[str, int] = {}
        by_version: dict[str, list[StoredQuote]] = {}
        for quote in candidates:
            by_version.setdefault(quote.model_version, []).append(quote)
        for version, quotes in by_version.items():
            serving = self.model_of(version)
            if serving is None:
                unassessed[version] = len(quotes)
                continue
            engine = serving.bundle.engine
            promises = [open_promise(quote, engine.schema) for quote in quotes]
            outlooks = assess_all(engine, promises, now_utc.timestamp())
            listed.extend(
                (quote, outlook)
                for quote, outlook in zip(quotes, outlooks, strict=True)
                if outlook.probability_late >= query.min_probability - 1e-12
            )
        listed.sort(key=call_order)
        total = len(listed)
        if cursor is not None:
            after = risk_position(cursor)
            listed = [item for item in listed if call_order(item) > after]
        more = len(listed) > query.limit
        listed = listed[: query.limit]
        contacts = self.ledger.contacts.of_chains([q.original_id for q, _ in listed])
        orders = [
            risk_response(QuoteRisk(q, now_utc, outlook, contacts.get(q.original_id, [])))
            for q, outlook in listed
        ]
        next_cursor = None
        if more:
            next_cursor = PageCursor(
                AT_RISK_LIST,
                key_fingerprint(caller),
                at_risk_fields(query),
                risk_cursor_position(call_order(listed[-1])),
                at=now_utc,
            ).encode()
        response = AtRiskResponse(
            at=now_utc,
            min_probability=query.min_probability,
            within_hours=query.within.total_seconds() / 3600.0,
            store=query.store,
            total=total,
            count=len(orders),
            next_cursor=next_cursor,
            orders=orders,
            unassessed=sum(unassessed.values()),
            unassessed_versions=sorted(unassessed),
        )
        return CallList(response, [quote for quote, _ in listed])

    async def revise(self, quote_id: str, caller: Caller, idempotency_key: str | None) -> Recorded:
        """Store an honest revision of the newest promise of `quote_id`'s order.

        Raises `NotFound` (also for another store's quote); `Conflict` when the order is
        fulfilled or was revised meanwhile; `RevisionNotNeeded` when the current promise still
        keeps the target. The chain is read, and the model that quoted it found (perhaps
        loaded), in asyncio's threads (as `issue`'s look-ups)."""
        chain = await asyncio.to_thread(self.ledger.quotes.chain, quote_id, caller.stores)
        payload = {"quote_id": quote_id}
        request = self._request("revision", caller, idempotency_key, payload)
        return await self._answer(
            request, lambda: asyncio.to_thread(self._revision, quote_id, chain)
        )

    async def _answer(
        self, request: NewRequest, make: Callable[[], Awaitable[NewQuotes]]
    ) -> Recorded:
        """The stored answer to `request`: the first answer to a retry; else the quotes `make`
        gives, stored before they are answered, then announced."""
        recorded = None
        if request.idempotency_key is not None:  # only a keyed request can be a retry
            recorded = await asyncio.to_thread(self.ledger.quotes.replay, request)
        if recorded is None:
            made = await make()
            recorded = await self.ledger.quotes.record_async(request, made.quotes)
            if not recorded.replayed:
                made.announce(recorded)
                return recorded
        if request.kind != "revision":  # a retried revision is answered, not counted
            self.metrics.replays.inc()
            log.info(
                "quote.replayed",
                extra={"quote_id": recorded.quotes[0].quote_id, "count": len(recorded.quotes)},
            )
        return recorded

    def _request(
        self, kind: RequestKind, caller: Caller, idempotency_key: str | None, payload: Any
    ) -> NewRequest:
        return NewRequest(
            client_id=caller.client_id,
            idempotency_key=idempotency_key,
            request_sha256=fingerprint(kind, payload),
            kind=kind,
            created_at=self.now_utc,
            caller_name=caller.name,
        )

    def _quote(
        self,
        requests: Sequence[QuoteRequest],
        checked: Sequence[CheckedOrder],
        kind: Kind,
        state: ControlState | None,
    ) -> NewQuotes:
        engine = self.serving.bundle.engine
        one_openmp_thread()
        promises = quoting.quote(engine, [item.order for item in checked], state)
        quotes = [
            self._record(promise, request.order, request.reference, item.warnings, None, request)
            for promise, request, item in zip(promises, requests, checked, strict=True)
        ]
        return NewQuotes(quotes, lambda recorded: self._issued(recorded, kind))

    def _issued(self, recorded: Recorded, kind: Kind) -> None:
        self.metrics.quotes.labels(kind).inc(len(recorded.quotes))
        log.info(
            "quote.issued",
            extra={
                "quote_id": recorded.quotes[0].quote_id,
                "count": len(recorded.quotes),
                "kind": kind,
                "model_version": self.serving.version,
            },
        )

    def _revision(self, quote_id: str, chain: Sequence[StoredQuote]) -> NewQuotes:
        newest = chain[-1]
        if newest.outcome is not None:
            raise Conflict(
                f"the order of quote {quote_id} was fulfilled at "
                f"{newest.outcome.fulfilled_at.isoformat()}: there is nothing to revise"
            )
        serving = self._model(newest)
        engine = serving.bundle.engine
        promise = open_promise(newest, engine.schema)
        view = assess(engine, promise, self.now_utc.timestamp())
        if view.suggested is None:
            raise RevisionNotNeeded(
                f"the promise of {newest.quote_id} still keeps the target late rate "
                f"(risk {view.probability_late:.0%} now): no revision is needed"
            )
        revision = replace(
            self._record(view.suggested, newest.features, newest.reference, [], serving, newest),
            revision_of=newest.original_id,
            revision=newest.revision + 1,
            model_expected_hours=promise.expected_hours,
        )
        return NewQuotes([revision], lambda recorded: self._revised(recorded, view))

    def _revised(self, recorded: Recorded, view: OrderRisk) -> None:
        self.metrics.revisions.inc()
        revision = recorded.quotes[0]
        log.info(
            "quote.revised",
            extra={
                "quote_id": revision.quote_id,
                "revision_of": revision.revision_of,
                "probability_late": round(view.probability_late, 4),
            },
        )

    def _record(
        self,
        promise: quoting.Promise,
        features: Mapping[str, Any],
        reference: str | None,
        warnings: Sequence[str],
        serving: Serving | None = None,
        asked: QuoteRequest | StoredQuote | None = None,
    ) -> StoredQuote:
        """A new record of `promise`, quoted now with `serving` (default: the served model),
        keeping the customer to call from the request `asked` (or the quote it revises)."""
        made_by = serving or self.serving
        if isinstance(asked, StoredQuote):
            name, phone = asked.customer_name, asked.customer_phone
        else:
            customer = asked.customer if asked is not None else None
            name, phone = (customer.name, customer.phone) if customer else (None, None)
        return StoredQuote(
            quote_id=new_quote_id(),
            created_at=self.now_utc,
            promise=promise,
            model_version=made_by.version,
            time_zone=str(made_by.bundle.engine.calendar.zone),
            features=features,
            reference=reference,
            warnings=warnings,
            store=store_of(features, self.settings.store_field),
            customer_name=name,
            customer_phone=phone,
        )

    def _model(self, quote: StoredQuote) -> Serving:
        """The model that made `quote`; `ModelGone` when it can no longer be loaded."""
        serving = self.model_of(quote.model_version)
        if serving is None:
            raise ModelGone(
                f"quote {quote.quote_id} was made by model {quote.model_version}, which can no "
                f"longer be loaded here (serving {self.serving.version}); its risk is not "
                "judged by another model"
            )
        return serving

    def _outlook(self, quote: StoredQuote, serving: Serving) -> OrderRisk:
        """The open order's outlook now; `NoRiskModel` for a bundle trained before risks."""
        engine = serving.bundle.engine
        return assess(engine, open_promise(quote, engine.schema), self.now_utc.timestamp())
