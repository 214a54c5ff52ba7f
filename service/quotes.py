"""Quoting and recording outcomes for the API and the web form: check, quote, store.

`Desk.issue` is the whole quote path: a retried request (same client and Idempotency-Key) is
answered from the ledger; otherwise the orders are validated against the bundle's schema,
quoted in one `quote()` call (the back-test's call; an adaptive engine with the control state
replayed from the ledger, `service.control`), and stored before anything is answered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from threadpoolctl import ThreadpoolController

from models.errors import InputError
from models.quoting import quote
from service.bundles import Serving
from service.control import ControlCache
from service.errors import InputErrors
from service.ledger import Ledger, NewQuote, NewRequest, OutcomeResult, Recorded
from service.metrics import Metrics
from service.schemas import CheckedOrder, QuoteRequest, to_orders
from service.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["single", "batch", "web"]
RequestKind = Literal["single", "batch", "web", "revision"]


@cache
def openmp_threads() -> ThreadpoolController:
    """The process's native thread pools (found once; limiting them per call is cheap).

    A request quotes a handful of orders: OpenMP threads for so few rows cost more than they
    save and fight the other requests for the cores (500 orders took 1 s with 2 threads on a
    busy 2-core machine, 20 ms with one). The limit applies to the calling thread only."""
    return ThreadpoolController()


def fingerprint(kind: RequestKind, payload: Any) -> str:
    """The sha256 of a request's canonical JSON: equal for a faithful retry."""
    text = json.dumps(
        {"kind": kind, "body": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Desk:
    """What one quote request works with: the bundle snapshot, the ledger, the worker's
    control state cache, settings, metrics, clock."""

    serving: Serving
    ledger: Ledger
    control: ControlCache
    settings: Settings
    metrics: Metrics
    now_utc: dt.datetime

    def issue(
        self,
        requests: Sequence[QuoteRequest],
        kind: Kind,
        client_id: str,
        idempotency_key: str | None,
        payload: Any,
    ) -> Recorded:
        """The stored quotes for these orders (new, or the first answer to a retry).

        Raises `InputError` naming the field for a bad order, `Conflict` for a reused key."""
        new_request = NewRequest(
            client_id=client_id,
            idempotency_key=idempotency_key,
            request_sha256=fingerprint(kind, payload),
            kind=kind,
            created_at=self.now_utc,
        )
        recorded = self.ledger.replay(new_request)
        if recorded is None:
            checked = self.check(requests, kind)
            recorded = self.ledger.record_quotes(new_request, self._quote(checked))
        if recorded.replayed:
            self.metrics.replays.inc()
            log.info(
                "quote.replayed",
                extra={"quote_id": recorded.quotes[0].quote_id, "count": len(recorded.quotes)},
            )
        else:
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
        return recorded

    def check(self, requests: Sequence[QuoteRequest], kind: Kind) -> list[CheckedOrder]:
        """Validated orders; raises `InputError` (`InputErrors` for several) naming fields."""
        return to_orders(
            requests,
            self.serving.bundle.engine.schema,
            self.now_utc,
            self.settings,
            prefix="orders" if kind == "batch" else "",
        )

    def problems(self, requests: Sequence[QuoteRequest], kind: Kind) -> list[tuple[str, str]]:
        """(field, message) for each bad field, empty when the orders can be quoted."""
        try:
            self.check(requests, kind)
        except InputErrors as err:
            return err.problems
        except InputError as err:
            return [(err.field or "order", str(err))]
        return []

    def _quote(self, checked: Sequence[CheckedOrder]) -> list[NewQuote]:
        engine = self.serving.bundle.engine
        state = self.control.state(self.serving, self.now_utc)  # None unless adaptive
        with openmp_threads().limit(limits=1, user_api="openmp"):
            promises = quote(engine, [item.order for item in checked], state)
        zone = str(engine.calendar.zone)
        return [
            NewQuote(
                promise=promise,
                features=item.features,
                reference=item.reference,
                warnings=item.warnings,
                model_version=self.serving.version,
                time_zone=zone,
            )
            for promise, item in zip(promises, checked, strict=True)
        ]


def record_outcome(
    ledger: Ledger,
    settings: Settings,
    metrics: Metrics,
    quote_id: str,
    fulfilled_at: dt.datetime,
    now_utc: dt.datetime,
) -> tuple[OutcomeResult, bool]:
    """Record what really happened to a quote; returns the stored outcome and whether it is
    new. Raises `InputError` for a time in the future, `NotFound`, or `Conflict`."""
    if fulfilled_at > now_utc + dt.timedelta(seconds=settings.clock_skew_seconds):
        raise InputError(
            f"fulfilled_at {fulfilled_at.isoformat()} is in the future (server "
            f"time {now_utc.isoformat(timespec='seconds')})",
            field="fulfilled_at",
        )
    result, created = ledger.record_outcome(quote_id, fulfilled_at, now_utc, source="api")
    if created:
        assert result.outcome is not None
        metrics.outcomes.labels(str(result.outcome.was_late).lower(), "api").inc()
        log.info(
            "outcome.recorded", extra={"quote_id": quote_id, "was_late": result.outcome.was_late}
        )
    return result, created
