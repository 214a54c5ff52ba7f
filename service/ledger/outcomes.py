"""Outcomes: when an order was really fulfilled, recorded once per quote and for its whole chain.

An outcome is written at most once (`INSERT ... ON CONFLICT DO NOTHING`): the same one sent
again is `already_recorded`, a different one a `conflict`. One order has one fulfilment, so the
outcome recorded for any quote of a chain is recorded for the original and every revision too,
each judged against its own deadline. The adaptive policy's state is replayed from outcomes
(`service.control`): nothing else is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from models.errors import InputError
from service.database import insert_ignore, write_transaction
from service.errors import Conflict
from service.ledger.quotes import unknown_quote
from service.ledger.records import OutcomeResult, OutcomeStatus, StoredOutcome
from service.ledger.rows import is_valid_id
from service.tables import outcomes, quotes

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
        self, quote_id: str, fulfilled_at: dt.datetime, now_utc: dt.datetime, source: str = "api"
    ) -> tuple[OutcomeResult, bool]:
        """Record one outcome; returns it and whether it is new.

        Raises `NotFound` for an unknown quote, `InputError` when fulfilled before the order,
        `Conflict` when a different outcome was recorded already."""
        [result] = self.record_many([(quote_id, fulfilled_at)], now_utc, source)
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
                "once"
            )
        return result, result.status == "recorded"

    def record_many(
        self, items: Sequence[tuple[str, dt.datetime]], now_utc: dt.datetime, source: str
    ) -> list[OutcomeResult]:
        """Record outcomes (quote id, fulfilled at), in transactions of up to 500; each
        result says whether it was recorded now, already, conflicts, or names no quote."""
        results: list[OutcomeResult] = []
        for start in range(0, len(items), OUTCOME_CHUNK):
            with write_transaction(self.engine) as conn:
                chunk = items[start : start + OUTCOME_CHUNK]
                results.extend(_Recording(conn, now_utc, source).record(chunk))
        return results


@dataclass(frozen=True, slots=True)
class _Recording:
    """One transaction's outcomes, all recorded at `now_utc` from `source`."""

    conn: Connection
    now_utc: dt.datetime
    source: str

    def record(self, items: Sequence[tuple[str, dt.datetime]]) -> list[OutcomeResult]:
        """Each (quote id, fulfilled at) recorded, then its chain's other quotes too."""
        ids = sorted({quote_id for quote_id, _ in items if is_valid_id(quote_id)})
        found = {row.id: row for row in self._facts(quotes.c.id.in_(ids))} if ids else {}
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
            },
        )
        return bool(inserted)
