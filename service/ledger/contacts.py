"""Staff contacts: the calls to a customer about an order at risk, kept per chain of promises.

A contact is recorded against the chain's original quote, so a call made about a revision and
one made about its original are listed together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from service.database import write_transaction
from service.ledger.quotes import QuoteBook
from service.ledger.records import Contact
from service.ledger.rows import is_valid_id, utc
from service.settings import Stores
from service.tables import contacts

# Contacts are read for at most this many chains per query.
IDS_PER_QUERY = 500


class ContactBook:
    """The contacts staff recorded; each method is one transaction."""

    def __init__(self, engine: Engine, quotes: QuoteBook) -> None:
        self.engine = engine
        self.quotes = quotes

    def record(
        self,
        quote_id: str,
        contacted_by: str,
        note: str | None,
        now_utc: dt.datetime,
        stores: Stores = None,
    ) -> Contact:
        """Record that staff contacted the customer of `quote_id`'s order; `NotFound` (also
        for a quote of a store outside `stores`)."""
        original = self.quotes.get(quote_id, stores).original_id
        contact = Contact(original, contacted_by, now_utc, note)
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(contacts).values(
                    quote_id=original, contacted_by=contacted_by, contacted_at=now_utc, note=note
                )
            )
        return contact

    def of_chains(self, quote_ids: Sequence[str]) -> dict[str, list[Contact]]:
        """The contacts recorded for each of these original quote ids, oldest first."""
        ids = sorted({i for i in quote_ids if is_valid_id(i)})
        found: dict[str, list[Contact]] = {}
        if not ids:
            return found
        with self.engine.connect() as conn:
            for start in range(0, len(ids), IDS_PER_QUERY):
                rows = conn.execute(
                    select(contacts)
                    .where(contacts.c.quote_id.in_(ids[start : start + IDS_PER_QUERY]))
                    .order_by(contacts.c.contacted_at, contacts.c.id)
                )
                for row in rows:
                    found.setdefault(row.quote_id, []).append(
                        Contact(row.quote_id, row.contacted_by, utc(row.contacted_at), row.note)
                    )
        return found
