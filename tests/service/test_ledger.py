"""The ledger: schema from the Alembic migrations, SQLite set up for several processes, times
in UTC, and the adaptive policy's state kept and shared through it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from models.policies import AdaptiveState, update_adaptive
from models.registry import Registry
from service.database import alembic_config
from service.ledger import Ledger
from service.tables import adaptive_state, metadata, quotes
from tests.service.conftest import (
    ADMIN_KEY,
    ClientFactory,
    TrainedBundles,
    bearer,
    quote_body,
)

UTC = dt.UTC
TABLES = {"quote_requests", "quotes", "outcomes", "adaptive_state", "served_model"}


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger = Ledger.connect(database_url)
    ledger.migrate()
    yield ledger
    ledger.close()


def test_the_migrations_make_exactly_the_tables_the_code_uses(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert differences == []
    assert version == "0002"
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
    stored = ledger.get_quote(answer.json()["quote_id"])
    assert stored.ordered_at == local
    assert stored.ordered_at.tzinfo is UTC
    assert stored.created_at.tzinfo is UTC


def test_served_model_generations(ledger: Ledger) -> None:
    now = dt.datetime.now(UTC)
    assert ledger.served_model() is None
    assert ledger.announce_model("a", now).generation == 1
    assert ledger.announce_model("a", now).generation == 1
    assert ledger.announce_model("b", now).generation == 2
    served = ledger.served_model()
    assert served is not None and (served.version, served.generation) == ("b", 2)


@pytest.fixture
def adaptive_client(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> TestClient:
    Registry(registry_root).promote(trained.adaptive)
    return make_client(max_order_age_days=90)


def _late_outcome(client: TestClient) -> dict[str, object]:
    ordered_at = dt.datetime.now(UTC) - dt.timedelta(days=60)
    answer = client.post(
        "/v1/quotes", json={**quote_body(), "ordered_at": ordered_at.isoformat()}
    ).json()
    late = dt.datetime.fromisoformat(answer["deadline_at"]) + dt.timedelta(hours=2)
    response = client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": late.isoformat()}
    )
    assert response.json()["outcome"]["was_late"] is True
    return dict(answer)


def test_late_outcomes_of_adaptive_quotes_raise_the_level(
    adaptive_client: TestClient, trained: TrainedBundles
) -> None:
    client = adaptive_client
    first = _late_outcome(client)
    for _ in range(3):
        _late_outcome(client)
    later = client.post("/v1/quotes", json=quote_body()).json()

    segment = str(first["segment"])
    # The step the bundle was trained with (the spec's default may change).
    engine = client.app.state.bundles.snapshot().bundle.engine  # type: ignore[attr-defined]
    step = engine.policy.cfg.adaptive_step
    expected = AdaptiveState()
    for _ in range(4):
        expected = update_adaptive(expected, segment, True, 0.05, step)
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    state = ledger.adaptive_state(trained.adaptive)
    assert state == expected
    assert first["level"] == pytest.approx(0.95)
    assert later["level"] == pytest.approx(1 - expected.alphas[segment])
    assert later["level"] > 0.95
    assert later["buffer_hours"] >= first["buffer_hours"]


def test_the_adaptive_state_is_shared_by_workers(
    adaptive_client: TestClient, make_client: ClientFactory
) -> None:
    other_worker = make_client(max_order_age_days=90)
    _late_outcome(adaptive_client)
    assert other_worker.post("/v1/quotes", json=quote_body()).json()["level"] > 0.95


def test_conformal_outcomes_leave_no_adaptive_state(client: TestClient) -> None:
    answer = client.post("/v1/quotes", json=quote_body()).json()
    client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": answer["ordered_at"]}
    )
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    with ledger.engine.connect() as conn:
        assert conn.execute(select(adaptive_state)).all() == []
        assert conn.execute(select(quotes.c.adaptive_step)).scalar_one() is None


def test_an_outcome_recorded_on_the_old_model_still_updates_its_state(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    client = make_client(max_order_age_days=90)
    ordered_at = dt.datetime.now(UTC) - dt.timedelta(days=60)
    answer = client.post(
        "/v1/quotes", json={**quote_body(), "ordered_at": ordered_at.isoformat()}
    ).json()
    Registry(registry_root).promote(trained.conformal)
    assert client.post("/v1/model/reload", headers=bearer(ADMIN_KEY)).status_code == 200
    client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": answer["ordered_at"]}
    )
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    assert ledger.adaptive_state(trained.adaptive).n_updates == 1
