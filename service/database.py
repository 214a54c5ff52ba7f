"""Engines and migrations for the ledger: SQLite set up for several processes, PostgreSQL with
connection checks, and the Alembic upgrade run under a lock when the schema is behind
(`migrate_schema`; a ledger already migrated is one read, and Alembic is never imported).

On SQLite every write transaction starts with `BEGIN IMMEDIATE`, so writers from all worker
processes queue on the database lock (up to the busy timeout) instead of failing when a read
lock cannot be upgraded; readers never wait (WAL mode). The service's own writers first queue
on a file lock beside the database (`sqlite_writer_lock`), woken by the kernel, not by polling.

Every write goes through `write_transaction`, which reports how it ended to the engine's
`service.health.WriteHealth` (a commit, or a full disk, a read-only database...): readiness says
whether the ledger accepts writes, not merely whether it answers a SELECT.
"""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Double, Table, create_engine, delete, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models.errors import SettingsError
from service.health import WriteHealth
from service.tables import write_probes

if TYPE_CHECKING:
    from alembic.config import Config

WRITE_OPTION = "promise_write"
# A constant for pg_advisory_xact_lock: "PROMISE" in ASCII.
MIGRATION_LOCK_ID = 0x50524F4D495345
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PROBES_KEPT_FOR = dt.timedelta(days=1)


def alembic_config() -> Config:
    """The Alembic configuration of the ledger's migrations (`service/alembic.ini`)."""
    from alembic.config import Config  # Alembic only when a schema changes: see migrate_schema

    config = Config(str(MIGRATIONS.parent / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def code_revisions() -> tuple[str, ...]:
    """The ledger's migrations this code holds, oldest first: from the files' names in
    `migrations/versions` (`r<revision>_<slug>.py`, alembic.ini's `file_template`; a test
    checks that they are Alembic's own list, in one line of history). The last is the head."""
    names = sorted(path.stem for path in (MIGRATIONS / "versions").glob("r*_*.py"))
    return tuple(name[1:].split("_", 1)[0] for name in names)


def schema_revision(conn: Connection) -> str | None:
    """The migration a ledger is at (Alembic's `alembic_version` row), None for a ledger never
    migrated (no such table, or no row: migrated down to nothing)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def migrate_schema(engine: Engine, store_field: str) -> None:
    """Bring the ledger's schema to this code's newest migration, under a lock (a file lock
    beside a SQLite database, an advisory lock on PostgreSQL), so workers starting together
    are safe; raises a SQLAlchemy error when the database cannot be reached.

    A ledger already there costs one read, without importing Alembic (~0.35 s of a worker's
    start: `promise serve` migrates once before it starts the workers). A ledger at a
    migration this code does not know (migrated by a newer release) is refused with
    `SettingsError`: serving it would read tables this code has never seen."""
    known = code_revisions()
    with engine.connect() as conn:
        current = schema_revision(conn)
    if current == known[-1]:
        return
    if current is not None and current not in known:
        raise SettingsError(
            f"the ledger at {engine.url.render_as_string(hide_password=True)} is at migration "
            f"{current}, which this code does not know (its newest is {known[-1]}): a newer "
            "release migrated it; serve it with that release"
        )
    from alembic import command

    with migration_lock(engine), write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config = alembic_config()
        config.attributes["connection"] = conn
        config.attributes["store_field"] = store_field
        command.upgrade(config, "head")


def create_ledger_engine(
    url: str, busy_timeout_ms: int = 10_000, connect_timeout_seconds: int = 5
) -> Engine:
    """An engine set up for several worker processes sharing one database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            # A folder that cannot be made surfaces as an OperationalError on first use (503,
            # not ready), so a service starting while its disk is away still starts.
            with suppress(OSError):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            pool_size=10,
            max_overflow=30,
            pool_timeout=30,
            connect_args={"timeout": busy_timeout_ms / 1000.0, "check_same_thread": False},
        )
        _set_up_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(
        parsed,
        pool_size=10,
        max_overflow=30,
        pool_timeout=30,
        pool_pre_ping=True,
        connect_args={"connect_timeout": connect_timeout_seconds},
    )


def _set_up_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous = FULL")  # a promise given survives a power cut
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front: a deferred transaction that reads and then writes
        # can fail at once with SQLITE_BUSY when another process wrote in between.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction (`BEGIN IMMEDIATE` on SQLite, under `sqlite_writer_lock`),
    committed on success; its outcome goes to the engine's `WriteHealth` (a failure only when
    the storage is to blame)."""
    health = WriteHealth.of(engine)
    try:
        with sqlite_writer_lock(engine), engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn
    except Exception as err:
        health.failed(err)
        raise
    health.succeeded()


@contextmanager
def sqlite_writer_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file, an exclusive `flock` of a file beside it (`DB-write-lock`) for the
    length of a write transaction; nothing on PostgreSQL.

    SQLite admits one writer; a writer that finds the lock taken polls for it, sleeping
    1-100 ms between tries (its busy handler), so under load the wait, not the work, made the
    tail. Writers of every worker process queue on this lock instead: the kernel wakes the
    next one the moment the lock is released, and the busy timeout is left to writers outside
    the service (a `sqlite3` shell). The kernel drops the lock of a process that dies."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    try:
        handle = Path(database).with_name(Path(database).name + "-write-lock").open("a")
    except OSError:
        # The folder is unreachable, so the database is too: the transaction fails next, as an
        # OperationalError that readiness reports.
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # blocks in the kernel, GIL released
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def probe_write(engine: Engine, worker: str) -> None:
    """Write this worker's row of `write_probes` (insert or update): a real write, so a full
    disk or a read-only database fails here as the quotes would; raises a SQLAlchemy error.

    Rows of workers gone for a day are deleted on the way (each restart adds a row)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    now = dt.datetime.now(dt.UTC)
    upsert = dialect.insert(write_probes).values(worker=worker[:200], probed_at=now)
    with write_transaction(engine) as conn:
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[write_probes.c.worker], set_={"probed_at": now}
            )
        )
        conn.execute(delete(write_probes).where(write_probes.c.probed_at < now - PROBES_KEPT_FOR))


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows inserted (0 or 1)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key = next(iter(table.primary_key.columns))
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    # RETURNING, not rowcount: some drivers report -1 for a skipped row.
    return 0 if conn.execute(statement.returning(key)).first() is None else 1


class epoch_seconds(FunctionElement[float]):  # an SQL function, named as one
    """A ledger timestamp as seconds since the epoch (UTC), computed by the database: the
    float `datetime.timestamp()` gives, without building a datetime per row in Python (the
    adaptive policy's replay reads thousands of rows)."""

    type = Double()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT gives an exact numeric; the cast rounds it once, as Python's division does.
    value = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {value}) AS DOUBLE PRECISION)"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # `UTCDateTime` keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds and the
    # microseconds as integers, then one division (julianday would lose ~50 us to rounding).
    value = compiler.process(element.clauses, **kw)
    seconds = f"CAST(strftime('%s', {value}) AS INTEGER)"
    micros = f"CAST(substr({value}, 21, 6) AS INTEGER)"
    return f"(({seconds} * 1000000 + {micros}) / 1000000.0)"


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """A file lock beside a SQLite database (PostgreSQL uses an advisory lock instead)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database:
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + "-migrate-lock")
    try:
        handle = lock_path.open("a")
    except OSError:
        # The folder is unreachable, so the database is too: opening it fails next, as an
        # OperationalError the caller treats as "ledger down" (503, not ready).
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
