"""Honest readiness: `/readyz` says whether the ledger accepts writes, not whether it answers a
SELECT. A SQLite ledger on a small tmpfs that fills up, and a PostgreSQL database made
read-only: quotes answer 503 saying what is wrong, `/readyz` is 503 with the reason, and both
recover when writes work again. (A tmpfs cannot be remounted read-only while SQLite holds its
files open for writing: SQLite's read-only error is classified from a real one instead.)"""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from service.database import create_ledger_engine, write_transaction
from service.health import WriteHealth, classify
from service.tables import write_probes
from tests.service.conftest import ADMIN_KEY, ClientFactory, bearer, postgres_url, quote_body

# Fills up after the ledger's schema and a few quotes, small enough to fill at once.
DISK_SIZE = "4m"


def _mount(folder: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *options, str(folder)], capture_output=True, check=False)


@pytest.fixture
def small_disk(database_url: str, tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted for this test (SQLite only; needs root)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a full disk under a SQLite ledger")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = _mount(folder, "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        try:
            while True:
                handle.write(b"\0" * 512)  # the last partial block
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def _quote_until_refused(client: TestClient, tries: int = 50) -> tuple[httpx.Response, list[str]]:
    """Quote until one is refused; the refusal and the ids of the quotes answered before it
    (a write may still fit in space SQLite already holds)."""
    answered: list[str] = []
    for _ in range(tries):
        response = client.post("/v1/quotes", json=quote_body())
        if response.status_code != 201:
            return response, answered
        answered.append(response.json()["quote_id"])
    raise AssertionError(f"{tries} quotes were all stored")


def _assert_refused(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["error"] == "unavailable"
    assert reason in body["message"] and "nothing was stored" in body["message"]


def _assert_not_ready(client: TestClient, reason: str) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert ready.json()["ready"] is False
    assert ready.json()["ledger"] == f"not writable: {reason}"


def _assert_ready(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ledger"] == "ok"


def test_a_full_disk_makes_quotes_and_readiness_say_so_until_space_returns(
    small_disk: Path, make_client: ClientFactory
) -> None:
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    client = make_client(database_url=url, readiness_probe_seconds=0.0)
    _assert_ready(client)
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201

    filler = _fill(small_disk)
    refused, answered = _quote_until_refused(client)

    _assert_refused(refused, "the disk is full")
    _assert_refused(
        client.post("/v1/quotes/batch", json={"orders": [quote_body()]}), "disk is full"
    )
    _assert_not_ready(client, "the disk is full")  # a SELECT still works: the probe writes
    assert client.get("/healthz").status_code == 200
    scraped = client.get("/metrics", headers=bearer(ADMIN_KEY)).text
    assert 'promise_ledger_writable{failure="disk_full"} 0.0' in scraped
    for quote_id in answered:  # every quote answered was stored
        assert client.get(f"/v1/quotes/{quote_id}").status_code == 200

    filler.unlink()
    _assert_ready(client)  # the probe's write works again
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201
    scraped = client.get("/metrics", headers=bearer(ADMIN_KEY)).text
    assert 'promise_ledger_writable{failure=""} 1.0' in scraped


def test_the_latest_failed_write_is_reported_between_probes(
    small_disk: Path, make_client: ClientFactory
) -> None:
    # Probes far apart: readiness reports the outcome of the requests' own writes.
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    client = make_client(database_url=url, readiness_probe_seconds=3600.0)
    _assert_ready(client)
    filler = _fill(small_disk)
    refused, _ = _quote_until_refused(client)
    _assert_refused(refused, "the disk is full")
    _assert_not_ready(client, "the disk is full")

    filler.unlink()
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201
    _assert_ready(client)  # the quote's write was the latest


@pytest.fixture
def dedicated_postgres(database_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own (made read-only by the test, which a schema cannot
    be), dropped afterwards."""
    if database_url.startswith("sqlite"):
        pytest.skip("a read-only PostgreSQL database")
    base = make_url(postgres_url())
    name = f"promise_ro_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _set_read_only(url: str, read_only: bool) -> None:
    """Make the database read-only (or writable) for new sessions, and end the open ones, as
    a fail-over to a standby does; the service's pool reconnects."""
    name = make_url(url).database
    admin = create_engine(make_url(postgres_url()), isolation_level="AUTOCOMMIT")
    setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" {setting}'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_a_read_only_postgres_database_is_named(
    dedicated_postgres: str, make_client: ClientFactory
) -> None:
    client = make_client(database_url=dedicated_postgres, readiness_probe_seconds=0.0)
    _assert_ready(client)
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201

    _set_read_only(dedicated_postgres, True)
    _assert_refused(client.post("/v1/quotes", json=quote_body()), "the database is read-only")
    _assert_not_ready(client, "the database is read-only")
    assert client.get("/v1/performance").status_code == 200  # reads still work

    _set_read_only(dedicated_postgres, False)
    _assert_ready(client)
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201


def test_failures_are_classified_from_the_real_driver_errors(tmp_path: Path) -> None:
    full = sqlite3.connect(tmp_path / "full.db")
    full.execute("CREATE TABLE t (x)")
    full.execute("PRAGMA max_page_count = 2")  # SQLite itself reports SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError) as disk_full:
        full.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,)] * 10)
    full.close()
    read_only = sqlite3.connect(f"file:{tmp_path / 'full.db'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as refused:
        read_only.execute("INSERT INTO t VALUES (1)")
    read_only.close()
    locked_path = tmp_path / "locked.db"
    holder = sqlite3.connect(locked_path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(locked_path, timeout=0.01)
    with pytest.raises(sqlite3.OperationalError) as busy:
        waiter.execute("INSERT INTO t VALUES (1)")
    holder.close()
    waiter.close()

    assert classify(disk_full.value) == "disk_full"
    assert classify(refused.value) == "read_only"
    assert classify(busy.value) == "busy"
    assert classify(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == "disk_full"
    assert classify(OSError(errno.EROFS, os.strerror(errno.EROFS))) == "read_only"
    assert classify(OSError(errno.ENOENT, "gone")) is None
    with pytest.raises(sqlite3.IntegrityError) as constraint:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE u (x PRIMARY KEY)")
        db.executemany("INSERT INTO u VALUES (?)", [(1,), (1,)])
    assert classify(constraint.value) is None  # the storage is not to blame


def test_a_constraint_inside_a_write_leaves_the_state_as_it_was(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'w.db'}")
    table = Table("w", MetaData(), Column("x", Integer, primary_key=True))
    table.metadata.create_all(engine)
    health = WriteHealth.of(engine)
    assert health.latest() is None
    with write_transaction(engine) as conn:
        conn.execute(insert(table).values(x=1))
    first = health.latest()
    assert first is not None and first.is_ok
    with pytest.raises(IntegrityError), write_transaction(engine) as conn:
        conn.execute(insert(table).values(x=1))
    assert health.latest() is first
    engine.dispose()


def test_readiness_probes_with_a_real_write_of_this_worker_row(make_client: ClientFactory) -> None:
    client = make_client(readiness_probe_seconds=0.0)
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    with ledger.engine.begin() as conn:
        conn.execute(insert(write_probes).values(worker="gone:1", probed_at=long_ago))
    _assert_ready(client)
    _assert_ready(client)
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(write_probes.c.worker, write_probes.c.probed_at)).all()
    assert [worker for worker, _ in rows] == [f"{socket.gethostname()}:{os.getpid()}"]
    assert rows[0][1] > long_ago  # written now; the row of a worker gone for a day is deleted
