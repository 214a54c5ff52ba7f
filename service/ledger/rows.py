"""Records to rows and back: a `StoredQuote` as a row of `quotes`, and the queries that read one.

The promise's fields map by name to columns of the quotes table, so a field added to `Promise`
needs only its column (`service.tables` and a migration): `promise_row` writes every field and
`promise_of` reads every field back, each as its column's type holds it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Double, Integer, select, true
from sqlalchemy.engine import Connection

from models.quoting import Promise
from service.ledger.records import StoredOutcome, StoredQuote
from service.settings import Stores
from service.tables import MAX_QUOTE_ID_CHARS, UTCDateTime, outcomes, quotes, storable_text

UTC = dt.UTC
PROMISE_FIELDS = tuple(f.name for f in fields(Promise))
# The promised local day or time keeps its zone's offset: it is kept as ISO 8601 text.
LOCAL_TIME_FIELD = "promise_local"


def in_scope(stores: Stores) -> ColumnElement[bool]:
    """The quotes of these stores (every quote for None): what a scoped key may see."""
    return true() if stores is None else quotes.c.store.in_(sorted(stores))


def utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC)


def is_valid_id(quote_id: str) -> bool:
    """Whether `quote_id` could name a quote (longer or unstorable text never does)."""
    return len(quote_id) <= MAX_QUOTE_ID_CHARS and storable_text(quote_id)


def promise_row(promise: Promise) -> dict[str, Any]:
    """The promise's fields as the quotes table's columns."""
    row = {name: getattr(promise, name) for name in PROMISE_FIELDS}
    row[LOCAL_TIME_FIELD] = promise.promise_local.isoformat()
    return row


def _reader(column_type: object) -> Callable[[Any], Any]:
    """How a value of a column of this type becomes the promise field's Python value."""
    if isinstance(column_type, UTCDateTime):
        return utc
    if isinstance(column_type, Boolean):
        return bool
    if isinstance(column_type, Integer):
        return int
    if isinstance(column_type, Double):
        return float
    return lambda value: value


_READERS: dict[str, Callable[[Any], Any]] = {
    name: _reader(quotes.c[name].type) for name in PROMISE_FIELDS
}
_READERS[LOCAL_TIME_FIELD] = dt.datetime.fromisoformat


def promise_of(row: Mapping[Any, Any]) -> Promise:
    """The promise a row of the quotes table holds."""
    return Promise(**{name: read(row[name]) for name, read in _READERS.items()})


def quote_row(quote: StoredQuote, request_id: int, position: int) -> dict[str, Any]:
    """The row of the quotes table for `quote`, the `position`-th of its request."""
    return {
        "id": quote.quote_id,
        "request_id": request_id,
        "position": position,
        "created_at": quote.created_at,
        "model_version": quote.model_version,
        "time_zone": quote.time_zone,
        "features": dict(quote.features),
        "reference": quote.reference,
        "warnings": list(quote.warnings),
        **promise_row(quote.promise),
        "adaptive_step": None,  # unused since the control state is replayed (r0003)
        "revision_of": quote.revision_of,
        "revision": quote.revision,
        "model_expected_hours": quote.model_expected_hours,
        "store": quote.store,
        "customer_name": quote.customer_name,
        "customer_phone": quote.customer_phone,
    }


def stored_quote(row: Mapping[Any, Any], outcome: StoredOutcome | None) -> StoredQuote:
    """The record a row of the quotes table holds, with its outcome."""
    return StoredQuote(
        quote_id=row["id"],
        created_at=utc(row["created_at"]),
        promise=promise_of(row),
        model_version=row["model_version"],
        time_zone=row["time_zone"],
        features=row["features"],
        reference=row["reference"],
        warnings=list(row["warnings"]),
        outcome=outcome,
        revision_of=row["revision_of"],
        revision=int(row["revision"]),
        model_expected_hours=row["model_expected_hours"],
        store=row["store"],
        customer_name=row["customer_name"],
        customer_phone=row["customer_phone"],
    )


def quotes_where(
    conn: Connection,
    condition: Any,
    order_by: Sequence[Any] = (quotes.c.position,),
    limit: int | None = None,
) -> list[StoredQuote]:
    """The quotes meeting `condition`, each with its outcome if recorded."""
    query = (
        select(
            quotes,
            outcomes.c.fulfilled_at,
            outcomes.c.was_late,
            outcomes.c.recorded_at,
            outcomes.c.source,
        )
        .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
        .where(condition)
        .order_by(*order_by)
        .limit(limit)
    )
    found = []
    for row in conn.execute(query).mappings():
        outcome = None
        if row["fulfilled_at"] is not None:
            outcome = StoredOutcome.judged(
                row["fulfilled_at"],
                row["deadline_at"],
                row["was_late"],
                row["recorded_at"],
                row["source"],
            )
        found.append(stored_quote(row, outcome))
    return found
