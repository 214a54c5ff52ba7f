"""The ledger: every quote given, its outcome, staff contacts and the model being served.

SQLAlchemy Core over SQLite (a file, WAL mode, several processes) or PostgreSQL; the tables are
in `service.tables`, engines and migrations in `service.database`. Each method is one
transaction; on PostgreSQL unique constraints and `FOR UPDATE` row locks keep concurrent
workers from writing twice, on SQLite the write lock taken up front does.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from alembic import command
from numpy.typing import NDArray
from sqlalchemy import Integer, Select, case, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from models.errors import InputError, NotFound
from models.features import category_label
from models.quoting import Promise
from service.database import (
    MIGRATION_LOCK_ID,
    WRITE_OPTION,
    alembic_config,
    create_ledger_engine,
    epoch_seconds,
    insert_ignore,
    migration_lock,
)
from service.errors import Conflict
from service.tables import (
    MAX_QUOTE_ID_CHARS,
    contacts,
    outcomes,
    quote_requests,
    quotes,
    served_model,
    storable_text,
)

log = logging.getLogger(__name__)

UTC = dt.UTC
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
OUTCOME_CHUNK = 500
# Crockford's base32 without I, L, O, U: easy to read off a slip and to type.
ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class NewRequest:
    """Who asked, with which Idempotency-Key, for what (a hash of the canonical request)."""

    client_id: str
    idempotency_key: str | None
    request_sha256: str
    kind: Literal["single", "batch", "web", "revision"]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NewQuote:
    """A promise to store with what the ledger keeps beside it."""

    promise: Promise
    features: Mapping[str, Any]
    reference: str | None
    warnings: Sequence[str]
    model_version: str
    time_zone: str
    revision_of: str | None = None  # the original quote this revises
    revision: int = 0  # 1 for the first revision of an original, 2 for the next...
    model_expected_hours: float | None = None  # a revision's: the model's expectation


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """An outcome as recorded."""

    fulfilled_at: dt.datetime
    was_late: bool
    late_hours: float
    recorded_at: dt.datetime
    source: str


@dataclass(frozen=True, slots=True)
class StoredQuote:
    """A quote as the ledger holds it (times in UTC, `promise_local` in the store's zone)."""

    quote_id: str
    created_at: dt.datetime
    model_version: str
    reference: str | None
    features: Mapping[str, Any]
    warnings: Sequence[str]
    ordered_at: dt.datetime
    clock_start: dt.datetime
    expected_completion: dt.datetime
    deadline_at: dt.datetime
    promise_local: dt.datetime
    time_zone: str
    unit: Literal["day", "hour", "minute"]
    expected_hours: float
    buffer_hours: float
    promise_units: float
    policy: str
    target_late_rate: float
    level: float
    segment: str
    closed_days_skipped: int
    exceeds_max_promise: bool
    explanation: str
    outcome: StoredOutcome | None = None
    revision_of: str | None = None
    revision: int = 0
    model_expected_hours: float | None = None

    @property
    def original_id(self) -> str:
        """The id of the original quote of this quote's chain of revisions."""
        return self.revision_of or self.quote_id


@dataclass(frozen=True, slots=True)
class Contact:
    """A staff call about an order: which chain (its original quote), who, when, a note."""

    quote_id: str
    contacted_by: str
    contacted_at: dt.datetime
    note: str | None


@dataclass(frozen=True, slots=True)
class DecidedCounts:
    """Original promises whose deadline fell in a window, for one segment: decided and late
    (fulfilled after the deadline or still open), with their target and policy."""

    segment: str
    decided: int
    late: int
    target_late_rate: float
    policy: str
    model_version: str


@dataclass(frozen=True, slots=True)
class RevisionFacts:
    """One revision in a window: how long before the original's deadline it was made, and
    whether the revised promise was kept (None while open)."""

    hours_before_original: float
    was_late: bool | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """The quotes of a request and whether they were stored earlier (a retried request)."""

    quotes: list[StoredQuote]
    replayed: bool


OutcomeStatus = Literal["recorded", "already_recorded", "conflict", "unknown", "before_order"]


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What became of one outcome: its status, the stored outcome and the quote's deadline."""

    quote_id: str
    status: OutcomeStatus
    outcome: StoredOutcome | None = None
    deadline_at: dt.datetime | None = None
    ordered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """Quotes given in a window for one segment, how many have outcomes, how many were late."""

    segment: str
    quotes: int
    outcomes: int
    late: int
    target_late_rate: float


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The version the workers should serve; `generation` grows with every change."""

    version: str
    generation: int


@dataclass(frozen=True, slots=True)
class DecidedPromises:
    """Decided promises in the order the adaptive policy learns them, and whether each broke."""

    late: BoolArray  # (n,)
    labels: list[tuple[str | None, ...]]  # each quote's segment values (`category_label`s)

    @property
    def size(self) -> int:
        return int(self.late.size)


@dataclass(frozen=True, slots=True)
class OrdersInProgress:
    """Orders the adaptive policy's nowcast watches: aligned arrays, epoch seconds and hours."""

    clock_start_s: FloatArray
    expected_hours: FloatArray
    fulfilled_s: FloatArray  # NaN: no outcome recorded by `now`
    labels: list[tuple[str | None, ...]]

    @property
    def size(self) -> int:
        return int(self.clock_start_s.size)


def new_quote_id() -> str:
    """A fresh quote id such as `Q-7K3M-9XRT-2HDP` (60 random bits, easy to read aloud)."""
    chars = "".join(secrets.choice(ID_ALPHABET) for _ in range(12))
    return f"Q-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


class Ledger:
    """The quote ledger behind one SQLAlchemy engine; each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_migrated = False

    @classmethod
    def connect(
        cls, url: str, busy_timeout_ms: int = 10_000, connect_timeout_seconds: int = 5
    ) -> Ledger:
        """A ledger for `url` (sqlite:///FILE or postgresql+psycopg://...); no query is run."""
        return cls(create_ledger_engine(url, busy_timeout_ms, connect_timeout_seconds))

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; safe when workers start together."""
        with migration_lock(self.engine), self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        self.is_migrated = True
        log.info("ledger.migrated", extra={"dialect": self.engine.dialect.name})

    def ensure_migrated(self) -> None:
        """Migrate once the database answers (a service started while it was down); raises a
        SQLAlchemy error while it still cannot be reached."""
        if not self.is_migrated:
            self.migrate()

    def ping(self) -> None:
        """Raises a SQLAlchemy error when the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(select(1)).scalar_one()

    # -- quotes ------------------------------------------------------------------------------

    def find_request(self, client_id: str, idempotency_key: str) -> tuple[str, Recorded] | None:
        """(request hash, its stored quotes) for an Idempotency-Key this client used before."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(quote_requests.c.id, quote_requests.c.request_sha256).where(
                    quote_requests.c.client_id == client_id,
                    quote_requests.c.idempotency_key == idempotency_key,
                )
            ).first()
            if row is None:
                return None
            stored = self._quotes_where(conn, quotes.c.request_id == row.id)
        return row.request_sha256, Recorded(stored, replayed=True)

    def replay(self, request: NewRequest) -> Recorded | None:
        """The stored answer to an earlier request with this Idempotency-Key, if any.

        Raises `Conflict` when the key was used for a different request."""
        if request.idempotency_key is None:
            return None
        found = self.find_request(request.client_id, request.idempotency_key)
        if found is None:
            return None
        digest, recorded = found
        if digest != request.request_sha256:
            raise Conflict(
                f"Idempotency-Key {request.idempotency_key!r} was already used for a different "
                "request; send a new key with a new request (a retry must repeat the same one)"
            )
        return recorded

    def record_quotes(self, request: NewRequest, items: Sequence[NewQuote]) -> Recorded:
        """Store a request's quotes in one transaction and return them as stored.

        With an Idempotency-Key already used (also by a concurrent request that committed
        first), the first request's quotes come back instead (`replayed`), and nothing new is
        stored; a different body under the same key raises `Conflict`."""
        rows = [
            _quote_row(item, position, request.created_at) for position, item in enumerate(items)
        ]
        try:
            with self._write() as conn:
                request_id = conn.execute(
                    insert(quote_requests).values(
                        client_id=request.client_id,
                        idempotency_key=request.idempotency_key,
                        request_sha256=request.request_sha256,
                        kind=request.kind,
                        created_at=request.created_at,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                conn.execute(insert(quotes), [{**row, "request_id": request_id} for row in rows])
        except IntegrityError:
            # The unique (client, key) constraint: a concurrent twin committed first.
            replayed = self.replay(request)
            if replayed is None:
                raise
            return replayed
        return Recorded([_stored(row, None) for row in rows], replayed=False)

    def get_quote(self, quote_id: str) -> StoredQuote:
        """The quote with this id, with its outcome if recorded; raises `NotFound`."""
        if len(quote_id) <= MAX_QUOTE_ID_CHARS and storable_text(quote_id):
            with self.engine.connect() as conn:
                found = self._quotes_where(conn, quotes.c.id == quote_id)
            if found:
                return found[0]
        raise NotFound(f"no quote {quote_id[:80]!r}")

    def chain(self, quote_id: str) -> list[StoredQuote]:
        """The original of `quote_id`'s chain and its revisions, oldest first (one query);
        `NotFound`."""
        found: list[StoredQuote] = []
        if _valid_id(quote_id):
            original = (
                select(func.coalesce(quotes.c.revision_of, quotes.c.id))
                .where(quotes.c.id == quote_id)
                .scalar_subquery()
            )
            with self.engine.connect() as conn:
                found = self._quotes_where(
                    conn, (quotes.c.id == original) | (quotes.c.revision_of == original)
                )
        if not found:
            raise NotFound(f"no quote {quote_id[:80]!r}")
        return sorted(found, key=lambda q: q.revision)

    def record_revision(self, request: NewRequest, item: NewQuote) -> Recorded:
        """Store a revision (a quote linked to its original); a retry with the same
        Idempotency-Key gets the first answer. Raises `Conflict` when another revision of the
        same order was stored meanwhile (revise again from the newest)."""
        try:
            return self.record_quotes(request, [item])
        except IntegrityError as err:
            raise Conflict(
                f"quote {item.revision_of} was revised by someone else meanwhile; "
                "look at it again before revising"
            ) from err

    def open_quotes(
        self, deadline_from: dt.datetime, deadline_to: dt.datetime, limit: int
    ) -> list[StoredQuote]:
        """The newest promise of each order without an outcome whose deadline lies in
        [deadline_from, deadline_to], soonest deadline first, at most `limit`."""
        newer = quotes.alias("newer")
        original = func.coalesce(quotes.c.revision_of, quotes.c.id)
        superseded = (
            select(newer.c.id)
            .where(newer.c.revision_of == original, newer.c.revision > quotes.c.revision)
            .exists()
        )
        condition = (
            outcomes.c.quote_id.is_(None)
            & ~superseded
            & (quotes.c.deadline_at >= deadline_from)
            & (quotes.c.deadline_at <= deadline_to)
        )
        with self.engine.connect() as conn:
            return self._quotes_where(
                conn, condition, order_by=(quotes.c.deadline_at, quotes.c.id), limit=limit
            )

    def record_contact(
        self, quote_id: str, contacted_by: str, note: str | None, now_utc: dt.datetime
    ) -> Contact:
        """Record that staff contacted the customer of `quote_id`'s order; `NotFound`."""
        original = self.get_quote(quote_id).original_id
        contact = Contact(original, contacted_by, now_utc, note)
        with self._write() as conn:
            conn.execute(
                insert(contacts).values(
                    quote_id=original, contacted_by=contacted_by, contacted_at=now_utc, note=note
                )
            )
        return contact

    def contacts_for(self, quote_ids: Sequence[str]) -> dict[str, list[Contact]]:
        """The contacts recorded for each of these original quote ids, oldest first."""
        ids = sorted({i for i in quote_ids if _valid_id(i)})
        found: dict[str, list[Contact]] = {}
        if not ids:
            return found
        with self.engine.connect() as conn:
            for start in range(0, len(ids), OUTCOME_CHUNK):
                rows = conn.execute(
                    select(contacts)
                    .where(contacts.c.quote_id.in_(ids[start : start + OUTCOME_CHUNK]))
                    .order_by(contacts.c.contacted_at, contacts.c.id)
                )
                for row in rows:
                    found.setdefault(row.quote_id, []).append(
                        Contact(row.quote_id, row.contacted_by, _utc(row.contacted_at), row.note)
                    )
        return found

    # -- outcomes ----------------------------------------------------------------------------

    def record_outcome(
        self, quote_id: str, fulfilled_at: dt.datetime, now_utc: dt.datetime, source: str = "api"
    ) -> tuple[OutcomeResult, bool]:
        """Record one outcome; returns it and whether it is new.

        Raises `NotFound` for an unknown quote, `InputError` when fulfilled before the order,
        `Conflict` when a different outcome was recorded already."""
        [result] = self.record_outcomes([(quote_id, fulfilled_at)], now_utc, source)
        if result.status == "unknown":
            raise NotFound(f"no quote {quote_id[:80]!r}")
        if result.status == "before_order":
            assert result.ordered_at is not None
            raise InputError(
                f"fulfilled_at {fulfilled_at.isoformat()} is before the order was "
                f"placed ({result.ordered_at.isoformat()})",
                field="fulfilled_at",
            )
        if result.status == "conflict":
            assert result.outcome is not None
            raise Conflict(
                f"quote {quote_id} already has an outcome: fulfilled at "
                f"{result.outcome.fulfilled_at.isoformat()}; an outcome is recorded "
                "once"
            )
        return result, result.status == "recorded"

    def record_outcomes(
        self, items: Sequence[tuple[str, dt.datetime]], now_utc: dt.datetime, source: str
    ) -> list[OutcomeResult]:
        """Record outcomes (quote id, fulfilled at), in transactions of up to 500; each
        result says whether it was recorded now, already, conflicts, or names no quote."""
        results: list[OutcomeResult] = []
        for start in range(0, len(items), OUTCOME_CHUNK):
            with self._write() as conn:
                results.extend(
                    _record_chunk(conn, items[start : start + OUTCOME_CHUNK], now_utc, source)
                )
        return results

    # -- the adaptive policy's promises ------------------------------------------------------

    def decided_promises(
        self, policy: str, segments: Sequence[str], now_utc: dt.datetime, limit: int
    ) -> DecidedPromises:
        """The newest `limit` promises of `policy` (every model version, revisions included)
        given by `now_utc` whose deadline has passed by then, oldest deadline first (ties in
        the order they were given). Late unless an outcome recorded by `now_utc` says the order
        was fulfilled at or before the deadline (open past the deadline is late)."""
        # The drift alarms' rule (`decided_counts`), with outcomes known by `now_utc` only.
        broken = outcomes.c.quote_id.is_(None) | (outcomes.c.was_late == True)  # noqa: E712
        query = (
            select(
                case((broken, True), else_=False).label("late"),
                *_segment_values(segments),
            )
            .select_from(quotes.outerjoin(outcomes, _known_outcome(now_utc)))
            .where(
                (quotes.c.policy == policy)
                & (quotes.c.deadline_at <= now_utc)
                & (quotes.c.created_at <= now_utc)
            )
            .order_by(
                quotes.c.deadline_at.desc(), quotes.c.request_id.desc(), quotes.c.position.desc()
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()[::-1]
        return DecidedPromises(
            late=np.array([bool(row[0]) for row in rows], dtype=bool),
            labels=_labels(rows, 1, len(segments)),
        )

    def promises_in_progress(
        self,
        policy: str,
        segments: Sequence[str],
        now_utc: dt.datetime,
        given_since: dt.datetime,
        fulfilled_since: dt.datetime,
    ) -> OrdersInProgress:
        """The original promises of `policy` (one per order) given in [given_since, now_utc]
        whose clock started before `now_utc` and that were, as far as the ledger knew at
        `now_utc`, still open or fulfilled after `fulfilled_since`."""
        query = (
            select(
                epoch_seconds(quotes.c.clock_start),
                quotes.c.expected_hours,
                epoch_seconds(outcomes.c.fulfilled_at),
                *_segment_values(segments),
            )
            .select_from(quotes.outerjoin(outcomes, _known_outcome(now_utc)))
            .where(
                (quotes.c.policy == policy)
                & (quotes.c.revision == 0)
                & (quotes.c.created_at >= given_since)
                & (quotes.c.created_at <= now_utc)
                & (quotes.c.clock_start < now_utc)
                & (outcomes.c.quote_id.is_(None) | (outcomes.c.fulfilled_at > fulfilled_since))
            )
            .order_by(quotes.c.request_id, quotes.c.position)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return OrdersInProgress(
            clock_start_s=np.array([row[0] for row in rows], dtype=np.float64),
            expected_hours=np.array([row[1] for row in rows], dtype=np.float64),
            fulfilled_s=np.array(
                [math.nan if row[2] is None else row[2] for row in rows], dtype=np.float64
            ),
            labels=_labels(rows, 3, len(segments)),
        )

    # -- performance, served model -----------------------------------------------------------

    def segment_counts(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[SegmentCounts]:
        """Per segment: quotes given in [since, until), with outcomes, late; sorted by name."""
        late = func.sum(func.coalesce(outcomes.c.was_late.cast(Integer), 0))
        query = (
            select(
                quotes.c.segment,
                func.count().label("quotes"),
                func.count(outcomes.c.quote_id).label("outcomes"),
                late.label("late"),
                func.avg(quotes.c.target_late_rate).label("target"),
            )
            .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
            .group_by(quotes.c.segment)
            .order_by(quotes.c.segment)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(_given_between(query, since, until)).all()
        return [
            SegmentCounts(
                segment=row.segment,
                quotes=int(row.quotes),
                outcomes=int(row.outcomes),
                late=int(row.late or 0),
                target_late_rate=round(float(row.target), 12),
            )
            for row in rows
        ]

    def decided_counts(self, since: dt.datetime, now_utc: dt.datetime) -> list[DecidedCounts]:
        """Per segment (and model version): original promises whose deadline fell in
        (since, now], all decided by now; late when fulfilled after the deadline or still open.
        Revisions are left out: the alarm watches the policy's own promises."""
        broken = (outcomes.c.quote_id.is_(None)) | (outcomes.c.was_late == True)  # noqa: E712
        late = func.sum(case((broken, 1), else_=0))
        query = (
            select(
                quotes.c.segment,
                quotes.c.model_version,
                func.count().label("decided"),
                late.label("late"),
                func.avg(quotes.c.target_late_rate).label("target"),
                func.max(quotes.c.policy).label("policy"),
            )
            .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
            .where(
                quotes.c.revision == 0,
                quotes.c.deadline_at > since,
                quotes.c.deadline_at <= now_utc,
            )
            .group_by(quotes.c.segment, quotes.c.model_version)
            .order_by(quotes.c.segment, quotes.c.model_version)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DecidedCounts(
                segment=row.segment,
                decided=int(row.decided),
                late=int(row.late or 0),
                target_late_rate=round(float(row.target), 12),
                policy=row.policy,
                model_version=row.model_version,
            )
            for row in rows
        ]

    def revision_facts(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[RevisionFacts]:
        """The revisions made in [since, until): how early, and whether they were kept."""
        original = quotes.alias("original")
        query = (
            select(
                quotes.c.created_at,
                original.c.deadline_at.label("original_deadline"),
                outcomes.c.was_late,
            )
            .select_from(
                quotes.join(original, original.c.id == quotes.c.revision_of).outerjoin(
                    outcomes, outcomes.c.quote_id == quotes.c.id
                )
            )
            .where(quotes.c.revision > 0)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(_given_between(query, since, until)).all()
        return [
            RevisionFacts(
                hours_before_original=(
                    _utc(row.original_deadline) - _utc(row.created_at)
                ).total_seconds()
                / 3600.0,
                was_late=None if row.was_late is None else bool(row.was_late),
            )
            for row in rows
        ]

    def served_model(self) -> ServedModel | None:
        """The version workers should serve, or None before any worker loaded one."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(served_model.c.version, served_model.c.generation).where(
                    served_model.c.id == 1
                )
            ).first()
        return None if row is None else ServedModel(row.version, int(row.generation))

    def announce_model(self, version: str, now_utc: dt.datetime) -> ServedModel:
        """Record that workers should serve `version` (a new generation if it changed)."""
        with self._write() as conn:
            insert_ignore(
                conn,
                served_model,
                {"id": 1, "version": version, "generation": 1, "updated_at": now_utc},
            )
            row = conn.execute(
                select(served_model.c.version, served_model.c.generation)
                .where(served_model.c.id == 1)
                .with_for_update()
            ).one()
            if row.version == version:
                return ServedModel(version, int(row.generation))
            generation = int(row.generation) + 1
            conn.execute(
                update(served_model)
                .where(served_model.c.id == 1)
                .values(version=version, generation=generation, updated_at=now_utc)
            )
        return ServedModel(version, generation)

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (`BEGIN IMMEDIATE` on SQLite), committed on success."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def _quotes_where(
        self,
        conn: Connection,
        condition: Any,
        order_by: Sequence[Any] = (quotes.c.position,),
        limit: int | None = None,
    ) -> list[StoredQuote]:
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
                outcome = _outcome(
                    row["fulfilled_at"],
                    row["deadline_at"],
                    row["was_late"],
                    row["recorded_at"],
                    row["source"],
                )
            found.append(_stored(row, outcome))
        return found


_QUOTE_FACTS = (
    quotes.c.id,
    quotes.c.ordered_at,
    quotes.c.deadline_at,
    quotes.c.segment,
    quotes.c.policy,
    quotes.c.target_late_rate,
    quotes.c.model_version,
    quotes.c.revision_of,
)


def _record_chunk(
    conn: Connection, items: Sequence[tuple[str, dt.datetime]], now_utc: dt.datetime, source: str
) -> list[OutcomeResult]:
    ids = sorted({quote_id for quote_id, _ in items if _valid_id(quote_id)})
    found = (
        {row.id: row for row in conn.execute(select(*_QUOTE_FACTS).where(quotes.c.id.in_(ids)))}
        if ids
        else {}
    )
    results = []
    fulfilled_chains: dict[str, dt.datetime] = {}
    for quote_id, fulfilled_at in items:
        quote = found.get(quote_id)
        if quote is None:
            results.append(OutcomeResult(quote_id, "unknown"))
            continue
        if fulfilled_at < quote.ordered_at:
            results.append(
                OutcomeResult(
                    quote_id,
                    "before_order",
                    deadline_at=quote.deadline_at,
                    ordered_at=quote.ordered_at,
                )
            )
            continue
        was_late = fulfilled_at > quote.deadline_at
        if _insert_outcome(conn, quote, fulfilled_at, now_utc, source):
            fulfilled_chains.setdefault(quote.revision_of or quote.id, fulfilled_at)
            results.append(
                OutcomeResult(
                    quote_id,
                    "recorded",
                    _outcome(fulfilled_at, quote.deadline_at, was_late, now_utc, source),
                    quote.deadline_at,
                    quote.ordered_at,
                )
            )
            continue
        existing = conn.execute(select(outcomes).where(outcomes.c.quote_id == quote_id)).one()
        stored = _outcome(
            existing.fulfilled_at,
            quote.deadline_at,
            existing.was_late,
            existing.recorded_at,
            existing.source,
        )
        status: OutcomeStatus = (
            "already_recorded" if existing.fulfilled_at == fulfilled_at else "conflict"
        )
        results.append(OutcomeResult(quote_id, status, stored, quote.deadline_at, quote.ordered_at))
    _record_for_chains(conn, fulfilled_chains, now_utc, source)
    return results


def _record_for_chains(
    conn: Connection, fulfilled: Mapping[str, dt.datetime], now_utc: dt.datetime, source: str
) -> None:
    """One order, one fulfilment: the original and every revision of a chain get the outcome
    recorded for any of them, each judged against its own deadline."""
    if not fulfilled:
        return
    originals = sorted(fulfilled)
    members = conn.execute(
        select(*_QUOTE_FACTS).where(
            quotes.c.id.in_(originals) | quotes.c.revision_of.in_(originals)
        )
    ).all()
    for member in members:
        _insert_outcome(conn, member, fulfilled[member.revision_of or member.id], now_utc, source)


def _insert_outcome(
    conn: Connection, quote: Any, fulfilled_at: dt.datetime, now_utc: dt.datetime, source: str
) -> bool:
    """Insert a quote's outcome unless it has one (the adaptive policy's state is replayed
    from outcomes, `service.control`: nothing else to write)."""
    was_late = fulfilled_at > quote.deadline_at
    inserted = insert_ignore(
        conn,
        outcomes,
        {
            "quote_id": quote.id,
            "fulfilled_at": fulfilled_at,
            "was_late": was_late,
            "recorded_at": now_utc,
            "source": source,
        },
    )
    return bool(inserted)


def _known_outcome(now_utc: dt.datetime) -> Any:
    """The join to a quote's outcome, as the ledger knew it at `now_utc`."""
    return (outcomes.c.quote_id == quotes.c.id) & (outcomes.c.recorded_at <= now_utc)


def _segment_values(segments: Sequence[str]) -> list[Any]:
    """Each segment's value read out of the features JSON by the database (text on both
    dialects, NULL when missing: `category_label` agrees with the value as quoted)."""
    return [quotes.c.features[name].as_string() for name in segments]


def _labels(rows: Sequence[Any], first: int, n: int) -> list[tuple[str | None, ...]]:
    """The segment values of each row (columns first..first + n), as canonical labels."""
    labels: dict[tuple[Any, ...], tuple[str | None, ...]] = {}
    found = []
    for row in rows:
        raw = tuple(row[first : first + n])
        label = labels.get(raw)
        if label is None:
            label = labels[raw] = tuple(category_label(v) for v in raw)
        found.append(label)
    return found


def _given_between(
    query: Select[Any], since: dt.datetime | None, until: dt.datetime | None
) -> Select[Any]:
    """`query` kept to quotes given in [since, until) (either end open when None)."""
    if since is not None:
        query = query.where(quotes.c.created_at >= since)
    if until is not None:
        query = query.where(quotes.c.created_at < until)
    return query


def _valid_id(quote_id: str) -> bool:
    return len(quote_id) <= MAX_QUOTE_ID_CHARS and storable_text(quote_id)


def _outcome(
    fulfilled_at: dt.datetime,
    deadline_at: dt.datetime,
    was_late: bool,
    recorded_at: dt.datetime,
    source: str,
) -> StoredOutcome:
    late_hours = max(0.0, (fulfilled_at - deadline_at).total_seconds() / 3600.0)
    return StoredOutcome(
        fulfilled_at=fulfilled_at,
        was_late=bool(was_late),
        late_hours=late_hours,
        recorded_at=recorded_at,
        source=source,
    )


def _quote_row(item: NewQuote, position: int, created_at: dt.datetime) -> dict[str, Any]:
    promise = item.promise
    return {
        "id": new_quote_id(),
        "position": position,
        "created_at": created_at,
        "model_version": item.model_version,
        "reference": item.reference,
        "features": dict(item.features),
        "warnings": list(item.warnings),
        "ordered_at": promise.ordered_at,
        "clock_start": promise.clock_start,
        "expected_completion": promise.expected_completion,
        "deadline_at": promise.deadline_at,
        "promise_local": promise.promise_local.isoformat(),
        "time_zone": item.time_zone,
        "unit": promise.unit,
        "expected_hours": promise.expected_hours,
        "buffer_hours": promise.buffer_hours,
        "promise_units": promise.promise_units,
        "policy": promise.policy,
        "target_late_rate": promise.target_late_rate,
        "level": promise.level,
        "segment": promise.segment,
        "closed_days_skipped": promise.closed_days_skipped,
        "exceeds_max_promise": promise.exceeds_max_promise,
        "explanation": promise.explanation,
        "adaptive_step": None,  # unused since the control state is replayed (r0003)
        "revision_of": item.revision_of,
        "revision": item.revision,
        "model_expected_hours": item.model_expected_hours,
    }


def _stored(row: Mapping[Any, Any], outcome: StoredOutcome | None) -> StoredQuote:
    return StoredQuote(
        quote_id=row["id"],
        created_at=_utc(row["created_at"]),
        model_version=row["model_version"],
        reference=row["reference"],
        features=row["features"],
        warnings=list(row["warnings"]),
        ordered_at=_utc(row["ordered_at"]),
        clock_start=_utc(row["clock_start"]),
        expected_completion=_utc(row["expected_completion"]),
        deadline_at=_utc(row["deadline_at"]),
        promise_local=dt.datetime.fromisoformat(row["promise_local"]),
        time_zone=row["time_zone"],
        unit=row["unit"],
        expected_hours=float(row["expected_hours"]),
        buffer_hours=float(row["buffer_hours"]),
        promise_units=float(row["promise_units"]),
        policy=row["policy"],
        target_late_rate=float(row["target_late_rate"]),
        level=float(row["level"]),
        segment=row["segment"],
        closed_days_skipped=int(row["closed_days_skipped"]),
        exceeds_max_promise=bool(row["exceeds_max_promise"]),
        explanation=row["explanation"],
        outcome=outcome,
        revision_of=row["revision_of"],
        revision=int(row["revision"]),
        model_expected_hours=row["model_expected_hours"],
    )


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC)
