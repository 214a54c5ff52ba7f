"""Promises made up for ledger tests and benches: the shape the engine gives, without an engine,
stored the way the service stores them (one request, one record per promise)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from models.quoting import Promise
from service.ledger import Ledger
from service.ledger.records import NewRequest, StoredQuote, new_quote_id


def promise_due(
    ordered_at: dt.datetime,
    expected_hours: float,
    deadline_at: dt.datetime,
    policy: str = "conformal",
    segment: str = "MAN",
) -> Promise:
    """An hour promise for an order placed (its clock started) at `ordered_at`, expected to
    take `expected_hours` and due at `deadline_at`, at a 5% target."""
    promised_hours = (deadline_at - ordered_at).total_seconds() / 3600.0
    return Promise(
        ordered_at=ordered_at,
        clock_start=ordered_at,
        expected_completion=ordered_at + dt.timedelta(hours=expected_hours),
        deadline_at=deadline_at,
        promise_local=deadline_at,
        unit="hour",
        expected_hours=expected_hours,
        buffer_hours=max(0.0, promised_hours - expected_hours),
        promise_units=promised_hours,
        policy=policy,
        target_late_rate=0.05,
        level=0.95,
        segment=segment,
        closed_days_skipped=0,
        exceeds_max_promise=False,
        explanation="made up",
    )


def store_promises(
    ledger: Ledger, promises: Sequence[Promise], features: Sequence[Mapping[str, Any]]
) -> list[StoredQuote]:
    """The promises stored in one request, each given when its order was placed, with the
    features of its order."""
    quotes = [
        StoredQuote(
            quote_id=new_quote_id(),
            created_at=promise.ordered_at,
            promise=promise,
            model_version="made-up",
            time_zone="UTC",
            features=order,
            reference=None,
            warnings=[],
        )
        for promise, order in zip(promises, features, strict=True)
    ]
    request = NewRequest("made-up", None, "0" * 64, "batch", quotes[0].created_at)
    return ledger.quotes.record(request, quotes).quotes
