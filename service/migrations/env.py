"""Alembic environment of the ledger.

The service passes its own connection (inside a locked transaction: see `Ledger.migrate`);
the `alembic` command line connects to PROMISE_DATABASE_URL, else the URL in alembic.ini.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from service.database import create_ledger_engine
from service.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = os.environ.get("PROMISE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_ledger_engine(str(url))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=os.environ.get("PROMISE_DATABASE_URL") or config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
