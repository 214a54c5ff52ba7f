"""`promise serve --workers 2`: two processes sharing one ledger, under concurrent requests."""

from __future__ import annotations

import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

from models.errors import SettingsError
from models.registry import Registry
from service import server
from service.ledger import Ledger
from service.metrics import MULTIPROCESS_ENV
from service.tables import quote_requests, quotes
from tests.service.conftest import (
    ADMIN_KEY,
    POS_KEY,
    STAFF_KEY,
    TrainedBundles,
    bearer,
    quote_body,
)
from tests.service.servers import free_port, running_server, wait_until

PROMISE = Path(sys.executable).parent / "promise"
CLIENTS = 16


def _counts(url: str) -> tuple[int, int]:
    ledger = Ledger.connect(url)
    with ledger.engine.connect() as conn:
        counts = (
            conn.execute(select(func.count()).select_from(quote_requests)).scalar_one(),
            conn.execute(select(func.count()).select_from(quotes)).scalar_one(),
        )
    ledger.close()
    return int(counts[0]), int(counts[1])


def test_two_workers_share_one_ledger(
    database_url: str, registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {
        "PROMISE_DATABASE_URL": database_url,
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_ADMIN_KEY": ADMIN_KEY,
        "PROMISE_MODEL_CHECK_SECONDS": "0",
        MULTIPROCESS_ENV: str(metrics_dir),
    }
    metrics_dir.mkdir()
    command = [str(PROMISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with (
        running_server(command, env, port, tmp_path / "server.log") as base,
        httpx.Client(base_url=base, headers=bearer(POS_KEY), timeout=60.0) as client,
    ):
        # Each worker writes its metrics file once its app is built: wait for both.
        wait_until(lambda: len(list(metrics_dir.glob("counter_*.db"))) >= 2, "two workers")
        start = threading.Barrier(CLIENTS)

        def send(i: int) -> httpx.Response:
            if i < CLIENTS:
                start.wait()
            key = "shared-key" if i % 3 == 0 else f"key-{i}"
            return client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": key})

        with ThreadPoolExecutor(CLIENTS) as pool:
            responses = list(pool.map(send, range(3 * CLIENTS)))

        assert [r.status_code for r in responses] == [201] * len(responses)
        shared = [r.text for i, r in enumerate(responses) if i % 3 == 0]
        assert len(set(shared)) == 1
        distinct = {r.json()["quote_id"] for r in responses}
        assert len(distinct) == 1 + 2 * CLIENTS
        assert _counts(database_url) == (len(distinct), len(distinct))

        # Every worker sees every quote, and the metrics add up both workers.
        for quote_id in distinct:
            assert client.get(f"/v1/quotes/{quote_id}").status_code == 200
        text = client.get("/metrics", headers=bearer(ADMIN_KEY)).text
        given = re.search(r'promise_quotes_total\{kind="single"\} (\d+)', text)
        assert given is not None and int(float(given.group(1))) == len(distinct)

        # A reload on whichever worker answers reaches the other one too.
        Registry(registry_root).promote(trained.adaptive)
        reloaded = client.post("/v1/model/reload", headers=bearer(ADMIN_KEY))
        assert reloaded.status_code == 200
        versions = {client.get("/v1/model").json()["version"] for _ in range(12)}
        assert versions == {trained.adaptive}


def test_the_server_refuses_a_public_address_without_keys() -> None:
    with pytest.raises(SettingsError, match=r"refusing to listen on 0\.0\.0\.0 without API keys"):
        server.run(host="0.0.0.0", port=free_port())


def test_several_workers_get_one_clean_metrics_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.prepare_metrics_folder(1)
    assert MULTIPROCESS_ENV not in os.environ
    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"old")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    server.prepare_metrics_folder(2)
    assert not stale.exists()
