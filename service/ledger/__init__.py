"""The ledger: every quote given, its outcome, staff contacts and the model being served.

SQLAlchemy Core over SQLite (a file, WAL mode, several processes) or PostgreSQL; the tables are
in `service.tables`, engines and migrations in `service.database`. `Ledger` is the facade: its
schema, and one part per concern, each method of a part one transaction:

    quotes        requests and their quotes, idempotency, revisions, open orders (`quotes`)
    outcomes      outcomes, recorded once and for a whole chain (`outcomes`)
    contacts      staff calls about orders at risk (`contacts`)
    sessions      signed-in staff sessions, ended at sign-out (`staff_sessions`)
    stats         late rates, the drift window, the adaptive replay's promises (`stats`)
    served_model  the version the workers should serve (`served_model`)

On PostgreSQL unique constraints and `FOR UPDATE` row locks keep concurrent workers from
writing twice, on SQLite the write lock taken up front does.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.engine import Engine

from service.database import create_ledger_engine, migrate_schema
from service.ledger.contacts import ContactBook
from service.ledger.outcomes import OutcomeBook
from service.ledger.quotes import QuoteBook
from service.ledger.served_model import ServedModelRow
from service.ledger.sessions import SessionBook
from service.ledger.stats import LedgerStats
from service.settings import Settings

log = logging.getLogger(__name__)


class Ledger:
    """The quote ledger behind one SQLAlchemy engine, in parts."""

    def __init__(self, engine: Engine, store_field: str = "store_id") -> None:
        self.engine = engine
        self.store_field = store_field  # which feature names the store (migration r0004)
        self.is_migrated = False
        self.quotes = QuoteBook(engine)
        self.outcomes = OutcomeBook(engine)
        self.contacts = ContactBook(engine, self.quotes)
        self.stats = LedgerStats(engine)
        self.served_model = ServedModelRow(engine)
        self.sessions = SessionBook(engine)

    @classmethod
    def connect(
        cls,
        url: str,
        busy_timeout_ms: int = 10_000,
        connect_timeout_seconds: int = 5,
        store_field: str = "store_id",
    ) -> Ledger:
        """A ledger for `url` (sqlite:///FILE or postgresql+psycopg://...); no query is run."""
        engine = create_ledger_engine(url, busy_timeout_ms, connect_timeout_seconds)
        return cls(engine, store_field)

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """The ledger `settings` name, with their timeouts; no query is run."""
        return cls.connect(
            settings.database_url,
            settings.sqlite_busy_timeout_ms,
            settings.database_connect_timeout_seconds,
            settings.store_field,
        )

    def close(self) -> None:
        """Write what is queued for the group commit, then close the engine's connections."""
        self.quotes.committer.close()
        self.engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (`service.database.migrate_schema`: one
        read, without Alembic, when it is there already); safe when workers start together.
        Raises `SettingsError` for a ledger migrated by a newer release."""
        migrate_schema(self.engine, self.store_field)
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
