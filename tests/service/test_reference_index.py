"""Migration r0007: the look-up by the shop's reference reads an index on quotes (reference,
created_at), made and dropped by Alembic on SQLite and PostgreSQL, as `service.tables` says."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.database import alembic_config
from service.ledger import Ledger
from service.tables import metadata

INDEX = "ix_quotes_reference_created_at"


def _indexes(ledger: Ledger) -> dict[str, list[str | None]]:
    return {
        str(index["name"]): list(index["column_names"])
        for index in inspect(ledger.engine).get_indexes("quotes")
    }


def _move(ledger: Ledger, to: str) -> None:
    with ledger.engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, to)


def test_the_reference_index_is_made_as_the_tables_say(ledger: Ledger) -> None:
    assert _indexes(ledger)[INDEX] == ["reference", "created_at"]
    with ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0007"


def test_the_reference_index_is_dropped_and_made_again(ledger: Ledger) -> None:
    _move(ledger, "0006")
    assert INDEX not in _indexes(ledger)
    ledger.migrate()
    assert _indexes(ledger)[INDEX] == ["reference", "created_at"]
