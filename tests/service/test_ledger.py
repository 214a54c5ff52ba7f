"""The ledger: schema from the Alembic migrations (and an older ledger upgraded), SQLite set up
for several processes, times in UTC, and no adaptive state stored (it is replayed:
tests/service/test_control.py)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import insert, inspect, select, text

from models.registry import Registry
from service.database import alembic_config
from service.ledger import Ledger
from service.tables import metadata, quote_requests, quotes
from tests.service.conftest import ClientFactory, TrainedBundles, quote_body

UTC = dt.UTC
TABLES = {
    "quote_requests",
    "quotes",
    "outcomes",
    "served_model",
    "contacts",
    "outcome_corrections",
    "staff_sessions",
    "write_probes",
    "bundle_files",
}


def test_the_migrations_make_exactly_the_tables_the_code_uses(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert differences == []
    assert version == "0007"
    assert set(inspect(ledger.engine).get_table_names()) >= TABLES


def test_migrating_again_changes_nothing_and_downgrade_works(ledger: Ledger) -> None:
    ledger.migrate()
    with ledger.engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(ledger.engine).get_table_names())
    ledger.migrate()
    assert set(inspect(ledger.engine).get_table_names()) >= TABLES


def test_workers_starting_together_migrate_once(database_url: str) -> None:
    ledgers = [Ledger.connect(database_url) for _ in range(4)]
    start = threading.Barrier(len(ledgers))
    failures: list[BaseException] = []

    def migrate(ledger: Ledger) -> None:
        start.wait()
        try:
            ledger.migrate()
        except BaseException as err:  # collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=migrate, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ledger in ledgers:
        ledger.close()
    assert failures == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    ledger = Ledger.connect(f"sqlite:///{tmp_path / 'sub' / 'ledger.db'}")
    ledger.migrate()
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 10_000
    ledger.close()


def test_times_come_back_aware_and_in_utc(client: TestClient) -> None:
    local = dt.datetime.now(dt.timezone(dt.timedelta(hours=5, minutes=30))).replace(microsecond=7)
    answer = client.post("/v1/quotes", json={**quote_body(), "ordered_at": local.isoformat()})
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    stored = ledger.quotes.get(answer.json()["quote_id"])
    assert stored.promise.ordered_at == local
    assert stored.promise.ordered_at.tzinfo is UTC
    assert stored.created_at.tzinfo is UTC


def test_served_model_generations(ledger: Ledger) -> None:
    now = dt.datetime.now(UTC)
    assert ledger.served_model.get() is None
    assert ledger.served_model.announce("a", now).generation == 1
    assert ledger.served_model.announce("a", now).generation == 1
    assert ledger.served_model.announce("b", now).generation == 2
    served = ledger.served_model.get()
    assert served is not None and (served.version, served.generation) == ("b", 2)


def test_adaptive_quotes_store_no_state_and_no_step(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    client = make_client()
    answer = client.post("/v1/quotes", json=quote_body()).json()
    response = client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": answer["ordered_at"]}
    )
    assert answer["policy"] == "adaptive" and response.status_code == 201
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    assert "adaptive_state" not in inspect(ledger.engine).get_table_names()
    with ledger.engine.connect() as conn:
        assert conn.execute(select(quotes.c.adaptive_step)).scalar_one() is None


def _migrate_to(ledger: Ledger, revision: str, down: bool = False) -> None:
    with ledger.engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def test_a_ledger_of_the_previous_release_upgrades_and_keeps_its_quotes(
    database_url: str,
) -> None:
    ledger = Ledger.connect(database_url)
    _migrate_to(ledger, "0002")
    now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with ledger.engine.begin() as conn:  # what the previous release wrote
        request_id = conn.execute(
            insert(quote_requests)
            .values(client_id="pos", request_sha256="0" * 64, kind="single", created_at=now)
            .returning(quote_requests.c.id)
        ).scalar_one()
        conn.execute(
            insert(quotes).values(
                id="Q-OLD0-0000-0001",
                request_id=request_id,
                position=0,
                created_at=now,
                model_version="v-adaptive",
                features={"store_id": "MAN"},
                warnings=[],
                ordered_at=now,
                clock_start=now,
                expected_completion=now + dt.timedelta(days=3),
                deadline_at=now + dt.timedelta(days=8),
                promise_local="2026-11-10T00:00:00",
                time_zone="Europe/London",
                unit="day",
                expected_hours=72.0,
                buffer_hours=120.0,
                promise_units=8.0,
                policy="adaptive",
                target_late_rate=0.05,
                level=0.95,
                segment="MAN",
                closed_days_skipped=1,
                exceeds_max_promise=False,
                explanation="We expect 3 days; we promise 8 days.",
                adaptive_step=0.02,
            )
        )
        conn.execute(
            text(
                "INSERT INTO adaptive_state (model_version, segment, alpha, n_updates, "
                "updated_at) VALUES ('v-adaptive', 'MAN', 0.07, 3, :at)"
            ),
            {"at": now},
        )

    ledger.migrate()

    assert "adaptive_state" not in inspect(ledger.engine).get_table_names()
    stored = ledger.quotes.get("Q-OLD0-0000-0001")
    assert (stored.promise.policy, stored.promise.deadline_at, stored.features) == (
        "adaptive",
        now + dt.timedelta(days=8),
        {"store_id": "MAN"},
    )
    decided = ledger.stats.decided_promises(
        "adaptive", ("store_id",), now + dt.timedelta(days=9), 10
    )
    assert decided.labels == [("MAN",)]
    _migrate_to(ledger, "0002", down=True)  # and back: the table returns, empty
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM adaptive_state")).scalar_one() == 0
    ledger.close()
