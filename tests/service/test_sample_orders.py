"""Sample open orders for a fresh install, through the real API of a real server: marked as
samples, on the call list, and stored once however often they are seeded in a day."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.client import PromiseClient
from service.sample_orders import SAMPLE_ORDERS, seed_sample_orders
from tests.service.app_server import server_env
from tests.service.conftest import POS_KEY, STAFF_KEY
from tests.service.servers import free_port, running_server


@pytest.fixture
def base_url(registry_root: Path, tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn on a free port with the trained sample bundle, the API's default
    seven-day back-dating limit, a point-of-sale and a staff key."""
    port = free_port()
    env = server_env(tmp_path, registry_root)
    command = [
        sys.executable,
        *("-m", "uvicorn", "--factory", "service.app:create_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
    ]
    with running_server(command, env, port, tmp_path / "server.log") as base:
        yield base


def _sample_quotes(client: PromiseClient) -> list[dict[str, object]]:
    found = []
    for n in range(1, len(SAMPLE_ORDERS) + 1):
        page = client.find_quotes(f"SAMPLE-{n}")
        found.extend(page["quotes"])
    return found


def test_sample_orders_are_stored_once_and_marked_as_samples(base_url: str) -> None:
    assert seed_sample_orders(base_url, POS_KEY) == len(SAMPLE_ORDERS)
    assert seed_sample_orders(base_url, POS_KEY) == len(SAMPLE_ORDERS)  # `make run` twice
    with PromiseClient(base_url, POS_KEY) as client:
        quotes = _sample_quotes(client)
    assert len(quotes) == len(SAMPLE_ORDERS)  # one quote per sample order, not two
    now = dt.datetime.now(dt.UTC)
    for quote in quotes:
        placed = dt.datetime.fromisoformat(str(quote["ordered_at"]))
        assert now - dt.timedelta(days=7) < placed < now


def test_the_call_list_shows_the_sample_orders(base_url: str) -> None:
    seed_sample_orders(base_url, POS_KEY)
    with PromiseClient(base_url, POS_KEY) as client:
        listing = client.at_risk(min_probability=0.1, within=dt.timedelta(days=7))
    listed = {order["reference"]: order for order in listing["orders"]}
    samples = {ref for ref in listed if str(ref).startswith("SAMPLE-")}
    assert len(samples) >= 3, listed.keys()
    assert any(listed[ref]["status"] == "overdue" for ref in samples)  # past its promise
    assert any(listed[ref]["status"] == "open" for ref in samples)  # at risk, not yet late
    with httpx.Client(base_url=base_url, follow_redirects=True) as staff:
        signed_in = staff.post("/signin", data={"key": STAFF_KEY, "next": "/at-risk?percent=10"})
        assert signed_in.status_code == 200, signed_in.text[:300]
        assert "Sample customer" in signed_in.text and "01632 960" in signed_in.text


def test_a_service_that_never_gets_ready_is_reported(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TimeoutError, match="/readyz did not answer 200 within 1 s"):
        seed_sample_orders(f"http://127.0.0.1:{port}", POS_KEY, ready_limit_seconds=1.0)


def test_serve_seed_sample_quotes_them_once_it_answers(registry_root: Path, tmp_path: Path) -> None:
    """`promise serve --seed-sample` (what `make run` runs) seeds through its own API, with the
    key PROMISE_SEED_KEY names."""
    port = free_port()
    env = {**server_env(tmp_path, registry_root), "PROMISE_SEED_KEY": POS_KEY}
    command = [
        *(sys.executable, "-m", "promise_cli", "serve", "--seed-sample"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
    ]
    log = tmp_path / "server.log"
    with running_server(command, env, port, log) as base, PromiseClient(base, POS_KEY) as client:
        found: list[dict[str, object]] = []
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
        while len(found) < len(SAMPLE_ORDERS) and dt.datetime.now(dt.UTC) < deadline:
            found = _sample_quotes(client)
            time.sleep(0.2)
        assert len(found) == len(SAMPLE_ORDERS), log.read_text()[-2000:]
        assert {quote["reference"] for quote in found} == {
            f"SAMPLE-{n}" for n in range(1, len(SAMPLE_ORDERS) + 1)
        }
