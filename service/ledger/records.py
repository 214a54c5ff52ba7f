"""What the ledger keeps: a quote is a `models.quoting.Promise` plus the ledger's own fields.

A promise's fields are written once, in `Promise`; the ledger adds who asked and when, the
request's features and warnings, the model version, the store's zone, the links of a revision
and, once known, the outcome. The quotes table holds the promise's fields as columns of the same
names (`service.ledger.rows`), and `schemas.QuoteResponse` reads them off this record.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.quoting import Promise
from service.tables import MAX_STORE_CHARS

# Crockford's base32 without I, L, O, U: easy to read off a slip and to type.
ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

RequestKind = Literal["single", "batch", "web", "revision"]
OutcomeStatus = Literal["recorded", "already_recorded", "conflict", "unknown", "before_order"]


def store_of(features: Mapping[str, Any], store_field: str) -> str | None:
    """The store an order names (its `store_field` feature, as text), None when it names none:
    what a quote belongs to, and what a key's scope is checked against."""
    value = features.get(store_field)
    return None if value is None else str(value)[:MAX_STORE_CHARS]


def new_quote_id() -> str:
    """A fresh quote id such as `Q-7K3M-9XRT-2HDP` (60 random bits, easy to read aloud)."""
    bits = secrets.randbits(60)  # one draw: `secrets.choice` per character cost 12 draws
    chars = "".join(ID_ALPHABET[(bits >> shift) & 31] for shift in range(55, -1, -5))
    return f"Q-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


@dataclass(frozen=True, slots=True)
class NewRequest:
    """Who asked, with which Idempotency-Key, for what (a hash of the canonical request)."""

    client_id: str
    idempotency_key: str | None
    request_sha256: str
    kind: RequestKind
    created_at: dt.datetime
    caller_name: str | None = None  # who holds the key: a staff member, a till


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """An outcome as recorded."""

    fulfilled_at: dt.datetime
    was_late: bool
    late_hours: float
    recorded_at: dt.datetime
    source: str

    @classmethod
    def judged(
        cls,
        fulfilled_at: dt.datetime,
        deadline_at: dt.datetime,
        was_late: bool,
        recorded_at: dt.datetime,
        source: str,
    ) -> StoredOutcome:
        """The outcome of a promise due at `deadline_at`, with the hours it was late by."""
        late_hours = max(0.0, (fulfilled_at - deadline_at).total_seconds() / 3600.0)
        return cls(fulfilled_at, bool(was_late), late_hours, recorded_at, source)


@dataclass(frozen=True, slots=True)
class StoredQuote:
    """A quote as the ledger holds it: the promise given and what the ledger keeps beside it
    (times in UTC; `promise.promise_local` in the store's zone). The desk builds it, id and
    all, before the ledger stores it; the ledger reads it back the same."""

    quote_id: str
    created_at: dt.datetime
    promise: Promise
    model_version: str
    time_zone: str
    features: Mapping[str, Any]
    reference: str | None
    warnings: Sequence[str]
    outcome: StoredOutcome | None = None
    revision_of: str | None = None  # the original quote this revises
    revision: int = 0  # 1 for the first revision of an original, 2 for the next...
    model_expected_hours: float | None = None  # a revision's: the model's expectation
    store: str | None = None  # the store the order names (`store_of`): who may see the quote
    customer_name: str | None = None  # who to call about the order (staff pages only)
    customer_phone: str | None = None

    @property
    def original_id(self) -> str:
        """The id of the original quote of this quote's chain of revisions."""
        return self.revision_of or self.quote_id

    @property
    def promised_by(self) -> dt.datetime | None:
        """The promised local time for hour and minute units; None for days (a date is
        promised)."""
        return None if self.promise.unit == "day" else self.promise.promise_local


@dataclass(frozen=True, slots=True)
class Recorded:
    """The quotes of a request and whether they were stored earlier (a retried request)."""

    quotes: list[StoredQuote]
    replayed: bool


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What became of one outcome: its status, the stored outcome and the quote's deadline."""

    quote_id: str
    status: OutcomeStatus
    outcome: StoredOutcome | None = None
    deadline_at: dt.datetime | None = None
    ordered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class OutcomeChange:
    """A correction asked for: the order's true fulfilment time, who corrects it, when, why."""

    fulfilled_at: dt.datetime
    reason: str
    corrected_by: str
    corrected_at: dt.datetime


@dataclass(frozen=True, slots=True)
class OutcomeCorrection:
    """A correction as the ledger keeps it, against the chain's original quote."""

    quote_id: str
    old_fulfilled_at: dt.datetime
    new_fulfilled_at: dt.datetime
    reason: str
    corrected_by: str
    corrected_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Corrected:
    """What a correction left: the quote's outcome, whether it changed, the history."""

    result: OutcomeResult
    changed: bool
    history: list[OutcomeCorrection]


@dataclass(frozen=True, slots=True)
class Contact:
    """A staff call about an order: which chain (its original quote), who, when, a note."""

    quote_id: str
    contacted_by: str
    contacted_at: dt.datetime
    note: str | None
