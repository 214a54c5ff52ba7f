"""The ledger going away: a service started while its database is down starts not ready and
recovers by itself; while the database is unreachable `/readyz` and quotes answer 503 with
Retry-After and nothing is answered that was not stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.ledger import Ledger
from service.tables import quotes
from tests.service.conftest import ClientFactory, SettingsFactory, quote_body
from tests.service.proxy import Forwarder
from tests.service.servers import free_port


def _quote_count(url: str) -> int:
    ledger = Ledger.connect(url)
    try:
        with ledger.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(quotes)).scalar_one())
    finally:
        ledger.close()


def _assert_unavailable(client: TestClient, key: str = "down-1") -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert ready.json()["ledger"].startswith("unreachable")
    for response in (
        client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": key}),
        client.post("/v1/quotes/batch", json={"orders": [quote_body()]}),
        client.get("/v1/performance"),
    ):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"] == "unavailable"


def _assert_serving(client: TestClient, url: str, key: str = "down-1") -> None:
    assert client.get("/readyz").status_code == 200  # migrates a ledger first seen now
    before = _quote_count(url)
    answered = client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": key})
    # The attempt made while the ledger was down stored nothing: this is the first quote.
    assert answered.status_code == 201 and answered.headers["Idempotent-Replayed"] == "false"
    assert _quote_count(url) == before + 1
    assert client.get(f"/v1/quotes/{answered.json()['quote_id']}").status_code == 200


@pytest.fixture
def sqlite_url(database_url: str) -> str:
    if not database_url.startswith("sqlite"):
        pytest.skip("a SQLite fault")
    return database_url


def test_a_service_started_without_its_sqlite_file_recovers(
    sqlite_url: str, make_client: ClientFactory, tmp_path: Path
) -> None:
    # The ledger's folder is a plain file: SQLite cannot open the database (as a lost mount).
    blocker = tmp_path / "mount"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker / 'ledger.db'}"
    client = make_client(database_url=url)  # starts instead of failing

    _assert_unavailable(client)

    blocker.unlink()
    blocker.mkdir()  # the mount is back
    _assert_serving(client, url)


def test_a_locked_sqlite_ledger_answers_503_and_stores_nothing(
    sqlite_url: str, make_client: ClientFactory
) -> None:
    client = make_client(sqlite_busy_timeout_ms=100)
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201
    before = _quote_count(sqlite_url)
    # Another process holds the write lock for longer than the busy timeout.
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": "k"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert _quote_count(sqlite_url) == before  # nothing was answered that was not stored
    retried = client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": "k"})
    assert retried.status_code == 201 and retried.headers["Idempotent-Replayed"] == "false"
    assert _quote_count(sqlite_url) == before + 1


@pytest.fixture
def postgres_behind_a_switch(database_url: str) -> Iterator[tuple[str, Forwarder]]:
    """The test's PostgreSQL schema reached through a loopback forwarder, initially off."""
    if database_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL fault")
    url = make_url(database_url)
    forwarder = Forwarder(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    switched = url.set(host="127.0.0.1", port=forwarder.port)
    try:
        yield switched.render_as_string(hide_password=False), forwarder
    finally:
        forwarder.stop()


def test_postgres_down_at_start_and_mid_run_recovers_by_itself(
    postgres_behind_a_switch: tuple[str, Forwarder],
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    database_url: str,
) -> None:
    url, forwarder = postgres_behind_a_switch
    client = make_client(make_settings(database_url=url, database_connect_timeout_seconds=1))

    _assert_unavailable(client)  # the port is closed: the service started anyway

    forwarder.start()
    _assert_serving(client, database_url)

    forwarder.stop()  # PostgreSQL stops: open connections break, new ones are refused
    before = _quote_count(database_url)
    _assert_unavailable(client, "down-2")
    assert _quote_count(database_url) == before

    forwarder = Forwarder(forwarder.port, forwarder.target)
    forwarder.start()
    try:
        _assert_serving(client, database_url, "down-2")
    finally:
        forwarder.stop()
