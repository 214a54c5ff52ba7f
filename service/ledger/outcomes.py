"""Outcomes: when an order was really fulfilled, recorded once per quote and for its whole chain,
and corrected only with a reason that the ledger keeps.

An outcome is written at most once (`INSERT ... ON CONFLICT DO NOTHING`): the same one sent
again is `already_recorded`, a different one a `conflict`. One order has one fulfilment, so the
outcome recorded for any quote of a chain is recorded for the original and every revision too,
each judged against its own deadline. A mistaken outcome is corrected (`correct`): the chain's
outcomes take the new time, and `outcome_corrections` keeps the old and the new value, who,
when and why. The live late rate, the drift alarms and the adaptive policy's state (replayed
from outcomes, `service.control`) read the corrected value.

A key scoped to some stores records and corrects outcomes of their quotes only: another
store's quote is `unknown`, as an unknown id is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from models.errors import InputError
from service.database import insert_ignore, write_transaction
from service.errors import Conflict
from service.ledger.quotes import unknown_quote
from service.ledger.records import (
    Corrected,
    OutcomeChange,
    OutcomeCorrection,
    OutcomeResult,
    OutcomeStatus,
    StoredOutcome,
)
from service.ledger.rows import in_scope, is_valid_id, utc
from service.settings import Stores
from service.tables import outcome_corrections, outcomes, quotes

# Outcomes are recorded in transactions of at most this many.
OUTCOME_CHUNK = 500

_QUOTE_FACTS = (
    quotes.c.id,
    quotes.c.ordered_at,
    quotes.c.deadline_at,
    quotes.c.revision_of,
)


class OutcomeBook:
    """The outcomes of quotes; each chunk of outcomes is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        quote_id: str,
        fulfilled_at: dt.datetime,
        now_utc: dt.datetime,
        source: str = "api",
        recorded_by: str | None = None,
        stores: Stores = None,
    ) -> tuple[OutcomeResult, bool]:
        """Record one outcome; returns it and whether it is new.

        Raises `NotFound` for an unknown quote (or one of a store outside `stores`),
        `InputError` when fulfilled before the order, `Conflict` when a different outcome was
        recorded already."""
        [result] = self.record_many(
            [(quote_id, fulfilled_at)], now_utc, source, recorded_by, stores
        )
        if result.status == "unknown":
            raise unknown_quote(quote_id)
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
                "once: correct it with PUT /v1/quotes/{id}/outcome and a reason"
            )
        return result, result.status == "recorded"

    def record_many(
        self,
        items: Sequence[tuple[str, dt.datetime]],
        now_utc: dt.datetime,
        source: str,
        recorded_by: str | None = None,
        stores: Stores = None,
    ) -> list[OutcomeResult]:
        """Record outcomes (quote id, fulfilled at), in transactions of up to 500; each
        result says whether it was recorded now, already, conflicts, or names no quote (of
        `stores`, None: every store)."""
        results: list[OutcomeResult] = []
        for start in range(0, len(items), OUTCOME_CHUNK):
            with write_transaction(self.engine) as conn:
                chunk = items[start : start + OUTCOME_CHUNK]
                recording = _Recording(conn, now_utc, source, recorded_by, stores)
                results.extend(recording.record(chunk))
        return results

    def correct(self, quote_id: str, change: OutcomeChange, stores: Stores = None) -> Corrected:
        """Correct the recorded outcome of `quote_id`'s order (its whole chain) to
        `change.fulfilled_at`, keeping the old value, who, when and why; returns the outcome
        now held and the order's history of corrections, oldest first.

        The same time as recorded changes nothing (a retried correction). Raises `NotFound`
        for an unknown quote (or one of a store outside `stores`), `Conflict` when no outcome
        is recorded yet, `InputError` when fulfilled before the order was placed."""
        if not is_valid_id(quote_id):
            raise unknown_quote(quote_id)
        with write_transaction(self.engine) as conn:
            quote = conn.execute(
                select(*_QUOTE_FACTS, outcomes.c.fulfilled_at)
                .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
                .where((quotes.c.id == quote_id) & in_scope(stores))
                .with_for_update(of=quotes)
            ).first()
            if quote is None:
                raise unknown_quote(quote_id)
            if quote.fulfilled_at is None:
                raise Conflict(
                    f"quote {quote_id} has no outcome to correct: record it first with "
                    f"POST /v1/quotes/{quote_id}/outcome"
                )
            if change.fulfilled_at < quote.ordered_at:
                raise InputError(
                    f"fulfilled_at {change.fulfilled_at.isoformat()} is before the order was "
                    f"placed ({quote.ordered_at.isoformat()})",
                    field="fulfilled_at",
                )
            original = quote.revision_of or quote.id
            if quote.fulfilled_at != change.fulfilled_at:
                self._rewrite_chain(conn, original, change)
                conn.execute(
                    insert(outcome_corrections).values(
                        quote_id=original,
                        old_fulfilled_at=quote.fulfilled_at,
                        new_fulfilled_at=change.fulfilled_at,
                        reason=change.reason,
                        corrected_by=change.corrected_by,
                        corrected_at=change.corrected_at,
                    )
                )
            row = conn.execute(select(outcomes).where(outcomes.c.quote_id == quote.id)).one()
            history = corrections_of(conn, original)
        outcome = StoredOutcome.judged(
            row.fulfilled_at, quote.deadline_at, row.was_late, row.recorded_at, row.source
        )
        return Corrected(
            OutcomeResult(quote.id, "recorded", outcome, quote.deadline_at, quote.ordered_at),
            changed=quote.fulfilled_at != change.fulfilled_at,
            history=history,
        )

    def history(self, quote_id: str, stores: Stores = None) -> list[OutcomeCorrection]:
        """The corrections of `quote_id`'s order, oldest first; `NotFound` as for `correct`."""
        if not is_valid_id(quote_id):
            raise unknown_quote(quote_id)
        with self.engine.connect() as conn:
            quote = conn.execute(
                select(quotes.c.id, quotes.c.revision_of).where(
                    (quotes.c.id == quote_id) & in_scope(stores)
                )
            ).first()
            if quote is None:
                raise unknown_quote(quote_id)
            return corrections_of(conn, quote.revision_of or quote.id)

    @staticmethod
    def _rewrite_chain(conn: Connection, original: str, change: OutcomeChange) -> None:
        """Every quote of the chain that has an outcome takes the corrected time, judged
        against its own deadline."""
        members = conn.execute(
            select(quotes.c.id, quotes.c.deadline_at)
            .join(outcomes, outcomes.c.quote_id == quotes.c.id)
            .where((quotes.c.id == original) | (quotes.c.revision_of == original))
        ).all()
        for member in members:
            conn.execute(
                update(outcomes)
                .where(outcomes.c.quote_id == member.id)
                .values(
                    fulfilled_at=change.fulfilled_at,
                    was_late=change.fulfilled_at > utc(member.deadline_at),
                    recorded_by=change.corrected_by,
                )
            )


def corrections_of(conn: Connection, original: str) -> list[OutcomeCorrection]:
    """The corrections recorded for the chain of `original`, oldest first."""
    rows = conn.execute(
        select(outcome_corrections)
        .where(outcome_corrections.c.quote_id == original)
        .order_by(outcome_corrections.c.corrected_at, outcome_corrections.c.id)
    )
    return [
        OutcomeCorrection(
            quote_id=row.quote_id,
            old_fulfilled_at=utc(row.old_fulfilled_at),
            new_fulfilled_at=utc(row.new_fulfilled_at),
            reason=row.reason,
            corrected_by=row.corrected_by,
            corrected_at=utc(row.corrected_at),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class _Recording:
    """One transaction's outcomes, all recorded at `now_utc` from `source`."""

    conn: Connection
    now_utc: dt.datetime
    source: str
    recorded_by: str | None
    stores: Stores

    def record(self, items: Sequence[tuple[str, dt.datetime]]) -> list[OutcomeResult]:
        """Each (quote id, fulfilled at) recorded, then its chain's other quotes too."""
        ids = sorted({quote_id for quote_id, _ in items if is_valid_id(quote_id)})
        wanted = quotes.c.id.in_(ids) & in_scope(self.stores)
        found = {row.id: row for row in self._facts(wanted)} if ids else {}
        results = []
        fulfilled_chains: dict[str, dt.datetime] = {}
        for quote_id, fulfilled_at in items:
            quote = found.get(quote_id)
            if quote is None:
                results.append(OutcomeResult(quote_id, "unknown"))
            elif fulfilled_at < quote.ordered_at:
                results.append(
                    OutcomeResult(
                        quote_id,
                        "before_order",
                        deadline_at=quote.deadline_at,
                        ordered_at=quote.ordered_at,
                    )
                )
            elif self._insert(quote, fulfilled_at):
                fulfilled_chains.setdefault(quote.revision_of or quote.id, fulfilled_at)
                results.append(self._recorded(quote, fulfilled_at))
            else:
                results.append(self._earlier(quote, fulfilled_at))
        self._record_for_chains(fulfilled_chains)
        return results

    def _facts(self, condition: Any) -> Sequence[Any]:
        return self.conn.execute(select(*_QUOTE_FACTS).where(condition)).all()

    def _recorded(self, quote: Any, fulfilled_at: dt.datetime) -> OutcomeResult:
        was_late = fulfilled_at > quote.deadline_at
        outcome = StoredOutcome.judged(
            fulfilled_at, quote.deadline_at, was_late, self.now_utc, self.source
        )
        return OutcomeResult(quote.id, "recorded", outcome, quote.deadline_at, quote.ordered_at)

    def _earlier(self, quote: Any, fulfilled_at: dt.datetime) -> OutcomeResult:
        """The outcome the quote already has: the same one (`already_recorded`) or not."""
        existing = self.conn.execute(select(outcomes).where(outcomes.c.quote_id == quote.id)).one()
        stored = StoredOutcome.judged(
            existing.fulfilled_at,
            quote.deadline_at,
            existing.was_late,
            existing.recorded_at,
            existing.source,
        )
        status: OutcomeStatus = (
            "already_recorded" if existing.fulfilled_at == fulfilled_at else "conflict"
        )
        return OutcomeResult(quote.id, status, stored, quote.deadline_at, quote.ordered_at)

    def _record_for_chains(self, fulfilled: Mapping[str, dt.datetime]) -> None:
        """One order, one fulfilment: the original and every revision of a chain get the
        outcome recorded for any of them, each judged against its own deadline."""
        if not fulfilled:
            return
        originals = sorted(fulfilled)
        chains = quotes.c.id.in_(originals) | quotes.c.revision_of.in_(originals)
        for member in self._facts(chains):
            self._insert(member, fulfilled[member.revision_of or member.id])

    def _insert(self, quote: Any, fulfilled_at: dt.datetime) -> bool:
        """Insert a quote's outcome unless it has one; True when it was inserted."""
        inserted = insert_ignore(
            self.conn,
            outcomes,
            {
                "quote_id": quote.id,
                "fulfilled_at": fulfilled_at,
                "was_late": fulfilled_at > quote.deadline_at,
                "recorded_at": self.now_utc,
                "source": self.source,
                "recorded_by": self.recorded_by,
            },
        )
        return bool(inserted)
