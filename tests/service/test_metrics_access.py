"""`/metrics` shows per-store figures: with keys configured it needs a metrics or admin key
(401 without one, 403 for any other role); in open mode it stays open to this machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.service.conftest import (
    ADMIN_KEY,
    POS_KEY,
    STAFF_KEY,
    ClientFactory,
    bearer,
    quote_body,
)

METRICS_KEY = "metrics-key-0123456789abcdef"
FILE_METRICS_KEY = "metrics-from-file-0123456789"


def test_metrics_need_a_metrics_or_admin_key(make_client: ClientFactory) -> None:
    client = make_client(key=None, metrics_key=METRICS_KEY)
    assert client.post("/v1/quotes", json=quote_body(), headers=bearer(POS_KEY)).status_code == 201

    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert client.get("/metrics", headers=bearer("not-a-key-0123456789")).status_code == 401
    for key in (POS_KEY, STAFF_KEY):
        refused = client.get("/metrics", headers=bearer(key))
        assert refused.status_code == 403, key
        assert "it needs a metrics or admin key" in refused.json()["message"]
    for key in (METRICS_KEY, ADMIN_KEY):
        scraped = client.get("/metrics", headers=bearer(key))
        assert scraped.status_code == 200, key
        assert 'promise_quotes_total{kind="single"} 1.0' in scraped.text
    # The metrics key reads metrics and nothing else.
    assert client.get("/v1/performance", headers=bearer(METRICS_KEY)).status_code == 403
    assert (
        client.post("/v1/quotes", json=quote_body(), headers=bearer(METRICS_KEY)).status_code == 403
    )
    assert client.get("/", headers=bearer(METRICS_KEY)).status_code == 403


def test_a_metrics_key_may_come_from_the_keys_file(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    digest = hashlib.sha256(FILE_METRICS_KEY.encode()).hexdigest()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"metrics {digest} prometheus\n")
    client = make_client(key=None, keys_file=keys_file)
    assert client.get("/metrics", headers=bearer(FILE_METRICS_KEY)).status_code == 200
    assert client.get("/metrics").status_code == 401


def test_metrics_stay_open_in_open_mode_on_loopback_only(make_client: ClientFactory) -> None:
    open_mode = {"api_keys": (), "staff_key": None, "admin_key": None}
    client = make_client(key=None, **open_mode)
    assert client.get("/metrics").status_code == 200
    remote = make_client(key=None, client=("192.0.2.7", 40000), **open_mode)
    assert remote.get("/metrics").status_code == 403
