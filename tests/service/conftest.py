"""Service test fixtures: real trained bundles (once per session), a ledger per test on SQLite
and, when PROMISE_TEST_DATABASE_URL is set, on PostgreSQL (a fresh schema per test), and
TestClients of `create_app(Settings(...))` that raise on any server error."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from threadpoolctl import threadpool_limits

from models.buffers import SegmentBuffers
from models.registry import Registry
from service.app import create_app
from service.ledger import Ledger
from service.settings import Settings
from training.pipeline import train_bundle
from training.sample_data import write_sample_data

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "data" / "optical.toml"
PG_ENV = "PROMISE_TEST_DATABASE_URL"

POS_KEY = "pos-key-0123456789abcdef"
POS_KEY_2 = "pos-key-two-0123456789abcdef"
STAFF_KEY = "staff-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
LOOPBACK = ("127.0.0.1", 50000)
LOCAL_URL = "http://localhost"
ORDER: dict[str, Any] = {
    "store_id": "MAN",
    "lens_type": "single_vision",
    "coating": "none",
    "frame_in_stock": 1,
    "n_items": 1,
    "sphere_power": 1.5,
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def backdated_batch(
    client: TestClient, store: str, n: int, days_ago: float
) -> list[dict[str, Any]]:
    """`n` quotes of ORDER at `store`, placed `days_ago` days ago, in one batch (the client's
    service must allow back-dating that far: `max_order_age_days`)."""
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()
    body = {"orders": [{"order": {**ORDER, "store_id": store}, "ordered_at": at}] * n}
    response = client.post("/v1/quotes/batch", json=body, headers=bearer(POS_KEY))
    assert response.status_code == 201, response.text
    return list(response.json()["quotes"])


@dataclass(frozen=True)
class TrainedBundles:
    """A registry holding a conformal bundle (promoted) and an adaptive one."""

    root: Path
    conformal: str
    adaptive: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundles:
    folder = tmp_path_factory.mktemp("service-sample")
    write_sample_data(folder, n_orders=8000, seed=3)
    shutil.copy(SPEC, folder / "optical.toml")
    registry = Registry(folder / "bundles")
    now = dt.datetime.now(dt.UTC)
    # One thread: OpenMP spinning on a busy 2-core machine makes training crawl.
    with threadpool_limits(1):
        conformal = train_bundle(folder / "optical.toml", registry, now=now, policy="conformal")
        adaptive = train_bundle(
            folder / "optical.toml", registry, now=now + dt.timedelta(seconds=1), policy="adaptive"
        )
    registry.promote(conformal.version)
    return TrainedBundles(folder / "bundles", conformal.version, adaptive.version)


@pytest.fixture(scope="session")
def other_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one bundle trained without the `coating` feature: a model that
    takes other orders than the `trained` ones."""
    folder = tmp_path_factory.mktemp("other-schema")
    write_sample_data(folder, n_orders=3000, seed=5)
    spec = SPEC.read_text(encoding="utf-8").replace(
        'categorical = ["store_id", "lens_type", "coating"]',
        'categorical = ["store_id", "lens_type"]',
    )
    assert 'categorical = ["store_id", "lens_type"]\n' in spec
    (folder / "optical.toml").write_text(spec, encoding="utf-8")
    with threadpool_limits(1):
        train_bundle(folder / "optical.toml", Registry(folder / "bundles"), dt.datetime.now(dt.UTC))
    return folder / "bundles"


def promote_other_schema(other_schema: Path, registry_root: Path) -> str:
    """Copy the other-schema bundle into `registry_root` and promote it (forced, as an
    operator who insisted would); returns its version."""
    [version] = [p.name for p in other_schema.iterdir() if p.is_dir()]
    shutil.copytree(other_schema / version, registry_root / version)
    Registry(registry_root).promote(version, force=True)
    return version


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test, never from the developer's PROMISE_* variables."""
    for name in list(os.environ):
        if name.startswith("PROMISE_") and name != PG_ENV:
            monkeypatch.delenv(name)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.fixture
def registry_root(trained: TrainedBundles, tmp_path: Path) -> Path:
    """A copy of the trained registry that this test may promote in or damage."""
    root = tmp_path / "bundles"
    shutil.copytree(trained.root, root)
    return root


LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/"
LOCAL_TEST_DATABASE = "promise_test"


@functools.cache
def find_postgres() -> tuple[str | None, str]:
    """The PostgreSQL the tests use and where it came from: PROMISE_TEST_DATABASE_URL when set,
    else the local server on 127.0.0.1:5432 (its `promise_test` database, created when
    missing); (None, why) when there is none."""
    url = os.environ.get(PG_ENV)
    if url:
        return url, f"{PG_ENV}"
    admin = create_engine(
        LOCAL_POSTGRES + "postgres",
        connect_args={"connect_timeout": 2},
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": LOCAL_TEST_DATABASE},
            ).first()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{LOCAL_TEST_DATABASE}"'))
    except SQLAlchemyError as err:
        return None, (
            f"no PostgreSQL answers on 127.0.0.1:5432 ({type(err).__name__}) and {PG_ENV} is "
            "not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    finally:
        admin.dispose()
    return LOCAL_POSTGRES + LOCAL_TEST_DATABASE, "the local server on 127.0.0.1:5432"


def postgres_url() -> str:
    url, why = find_postgres()
    if url is None:
        pytest.skip(f"PostgreSQL tests skipped: {why}")
    return url


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    schema = f"promise_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with fresh_schema(postgres_url()) as url:
        yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """This test's ledger, migrated, on SQLite and on PostgreSQL."""
    ledger = Ledger.connect(database_url)
    ledger.migrate()
    yield ledger
    ledger.close()


SettingsFactory = Callable[..., Settings]
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_settings(database_url: str, registry_root: Path) -> SettingsFactory:
    """Settings with every role's key, this test's ledger and registry, and `overrides`."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "registry": registry_root,
            "api_keys": (POS_KEY, POS_KEY_2),
            "staff_key": STAFF_KEY,
            "admin_key": ADMIN_KEY,
            "model_check_seconds": 0.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    """Started TestClients (a point-of-sale key by default); closed at the end of the test."""
    started: list[TestClient] = []

    def make(
        settings: Settings | None = None,
        key: str | None = POS_KEY,
        client: tuple[str, int] = LOOPBACK,
        **overrides: Any,
    ) -> TestClient:
        app = create_app(settings or make_settings(**overrides))
        # Host `localhost`: open mode answers nothing else (`service.auth.LoopbackOnly`).
        test_client = TestClient(
            app, base_url=LOCAL_URL, client=client, headers=bearer(key) if key else None
        )
        test_client.__enter__()
        started.append(test_client)
        return test_client

    yield make
    for test_client in started:
        test_client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    """A client of a fresh service with keys configured, speaking with a point-of-sale key."""
    return make_client()


def quote_body(**order_changes: Any) -> dict[str, Any]:
    return {"order": {**ORDER, **order_changes}}


def segment_of(client: TestClient, store_id: str) -> str:
    """The calibrated segment that serves a store in the client's bundle (its own, or global:
    which stores get their own depends on the sample, so tests ask the model)."""
    engine = client.app.state.bundles.snapshot().bundle.engine  # type: ignore[attr-defined]
    rule = engine.buffer_rule
    assert isinstance(rule, SegmentBuffers)
    key: str = rule.resolve((store_id,)).key
    return key
