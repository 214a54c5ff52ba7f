"""The ledger's tables, as the queries see them (the schema itself is made by the Alembic
migrations in `service/migrations`; a test checks that both agree).

    quote_requests  one per request (single, batch or web form); (client, Idempotency-Key)
                    is unique, so a retried request finds its first answer
    quotes          one per promise, with the request's features as JSON
    outcomes        at most one per quote: when it was really fulfilled
    served_model    one row: the version workers should serve and a generation counter
    contacts        staff calls about an order at risk: which quote, who, when, a note
    outcome_corrections  each correction of an outcome: old and new value, who, when, why
    staff_sessions  signed-in staff sessions (a token's sha256), ended at sign-out
    write_probes    one row per worker, rewritten by readiness probes: can the ledger write?
    bundle_files    the files of each bundle a worker was told to serve, so that a host with
                    an empty registry folder can serve it (checked as any bundle is)

A quote belongs to its store (`quotes.store`, the order's `PROMISE_STORE_FIELD` feature as
text, null when it names none): a key scoped to some stores sees only their quotes.

A revision is a quote too: `revision_of` names the original (the root of the chain) and
`revision` counts from 1; originals have `revision` 0. The original is never overwritten. A
revision's `expected_hours` is the new expectation given how long the order has been open;
`model_expected_hours` keeps the model's, which its risk is measured from.

The adaptive policy keeps no table: its state is replayed from quotes and outcomes
(`service.control`). `quotes.adaptive_step` is a relic of the controller it replaced, written
as null (dropping it would copy the quotes table on SQLite; migration r0003).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

UTC = dt.UTC
MAX_QUOTE_ID_CHARS = 64
MAX_STORE_CHARS = 200
MAX_CUSTOMER_NAME_CHARS = 200
MAX_CUSTOMER_PHONE_CHARS = 40


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
RowId = BigInteger().with_variant(Integer(), "sqlite")

quote_requests = Table(
    "quote_requests",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_sha256", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("caller_name", String(200), nullable=True),
    UniqueConstraint("client_id", "idempotency_key"),
)

quotes = Table(
    "quotes",
    metadata,
    Column("id", String(MAX_QUOTE_ID_CHARS), primary_key=True),
    Column("request_id", RowId, ForeignKey("quote_requests.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("model_version", String(100), nullable=False),
    Column("reference", Text, nullable=True),
    Column("features", JSON, nullable=False),
    Column("warnings", JSON, nullable=False),
    Column("ordered_at", UTCDateTime(), nullable=False),
    Column("clock_start", UTCDateTime(), nullable=False),
    Column("expected_completion", UTCDateTime(), nullable=False),
    Column("deadline_at", UTCDateTime(), nullable=False),
    Column("promise_local", String(40), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("unit", String(8), nullable=False),
    Column("expected_hours", Double, nullable=False),
    Column("buffer_hours", Double, nullable=False),
    Column("promise_units", Double, nullable=False),
    Column("policy", String(20), nullable=False),
    Column("target_late_rate", Double, nullable=False),
    Column("level", Double, nullable=False),
    Column("segment", Text, nullable=False),
    Column("closed_days_skipped", Integer, nullable=False),
    Column("exceeds_max_promise", Boolean, nullable=False),
    Column("explanation", Text, nullable=False),
    Column("adaptive_step", Double, nullable=True),
    Column("revision_of", String(MAX_QUOTE_ID_CHARS), ForeignKey("quotes.id"), nullable=True),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Column("model_expected_hours", Double, nullable=True),
    Column("store", String(MAX_STORE_CHARS), nullable=True),
    # Who to call about the order (r0006): shown to staff of the store only.
    Column("customer_name", String(MAX_CUSTOMER_NAME_CHARS), nullable=True),
    Column("customer_phone", String(MAX_CUSTOMER_PHONE_CHARS), nullable=True),
    Index(None, "request_id", "position", unique=True),
    Index(None, "created_at"),
    Index(None, "revision_of", "revision", unique=True),
    Index(None, "deadline_at"),
    Index(None, "store", "deadline_at"),
    Index(None, "reference", "created_at"),  # look-up by the shop's reference (r0007)
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("quote_id", String(MAX_QUOTE_ID_CHARS), ForeignKey("quotes.id"), primary_key=True),
    Column("fulfilled_at", UTCDateTime(), nullable=False),
    Column("was_late", Boolean, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("source", String(20), nullable=False),
    Column("recorded_by", String(200), nullable=True),
    Index(None, "recorded_at"),
)

outcome_corrections = Table(
    "outcome_corrections",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("quote_id", String(MAX_QUOTE_ID_CHARS), ForeignKey("quotes.id"), nullable=False),
    Column("old_fulfilled_at", UTCDateTime(), nullable=False),
    Column("new_fulfilled_at", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("corrected_by", String(200), nullable=False),
    Column("corrected_at", UTCDateTime(), nullable=False),
    Index(None, "quote_id"),
)

staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("ended_reason", String(40), nullable=True),
    Index(None, "key_id"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("quote_id", String(MAX_QUOTE_ID_CHARS), ForeignKey("quotes.id"), nullable=False),
    Column("contacted_by", String(200), nullable=False),
    Column("contacted_at", UTCDateTime(), nullable=False),
    Column("note", Text, nullable=True),
    Index(None, "quote_id"),
)

served_model = Table(
    "served_model",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", String(100), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

write_probes = Table(
    "write_probes",
    metadata,
    Column("worker", String(200), primary_key=True),
    Column("probed_at", UTCDateTime(), nullable=False),
)

bundle_files = Table(
    "bundle_files",
    metadata,
    Column("version", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("content", LargeBinary, nullable=False),
    Column("stored_at", UTCDateTime(), nullable=False),
)


def storable_text(text: str) -> bool:
    """False for text a database cannot keep intact (NUL, unpaired surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
