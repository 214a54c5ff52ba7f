"""The Python client against a real server (issue 20): quotes, a batch, an idempotent retry
across a lost connection, a look-up, outcomes, and one exception per error code."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.client import (
    Conflict,
    Forbidden,
    InvalidInput,
    NoRevisionNeeded,
    NotFound,
    PromiseClient,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from tests.service.conftest import ADMIN_KEY, ORDER, POS_KEY, STAFF_KEY, TrainedBundles
from tests.service.proxy import Forwarder
from tests.service.servers import free_port, running_process, running_server

UTC = dt.UTC


@pytest.fixture(scope="module")
def server(trained: TrainedBundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("client")
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
        "PROMISE_REGISTRY": str(trained.root),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_ADMIN_KEY": ADMIN_KEY,
        "PROMISE_MAX_BODY_BYTES": "4096",
    }
    command = [sys.executable, "-m", "promise_cli", "serve", "--port", str(port)]
    with running_server(command, env, port, folder / "server.log") as base:
        yield base


def test_quotes_outcomes_and_look_ups(server: str) -> None:
    with PromiseClient(server, key=POS_KEY) as promise:
        quote = promise.create_quote(ORDER, reference="PO-1")
        assert quote["reference"] == "PO-1" and quote["quote_id"].startswith("Q-")
        assert promise.get_quote(quote["quote_id"]) == quote
        again = promise.create_quote(ORDER, idempotency_key="till-7-order-1")
        assert promise.create_quote(ORDER, idempotency_key="till-7-order-1") == again
        batch = promise.create_quotes([ORDER, {"order": ORDER, "reference": "PO-2"}])
        assert [q["reference"] for q in batch] == [None, "PO-2"]
        ordered_at = dt.datetime.fromisoformat(quote["ordered_at"])
        outcome = promise.record_outcome(quote["quote_id"], ordered_at + dt.timedelta(seconds=1))
        assert outcome["outcome"]["was_late"] is False
        corrected = promise.correct_outcome(
            quote["quote_id"], ordered_at + dt.timedelta(seconds=2), "typed the wrong second"
        )
        assert len(corrected["corrections"]) == 1
        assert promise.get_outcome(quote["quote_id"])["corrections"] == corrected["corrections"]
        assert promise.get_risk(batch[0]["quote_id"])["quote_id"] == batch[0]["quote_id"]
        assert "orders" in promise.at_risk(min_probability=0.0, within=dt.timedelta(days=30))
        assert promise.model()["version"] == quote["model_version"]
        assert promise.performance()["overall"]["quotes"] >= 4


def test_each_error_code_is_its_own_exception(server: str) -> None:
    with PromiseClient(server, key=POS_KEY) as promise:
        quote = promise.create_quote(ORDER)
        with pytest.raises(NotFound):
            promise.get_quote("Q-0000-0000-0000")
        with pytest.raises(InvalidInput) as invalid:
            promise.create_quote({**ORDER, "lens_type": "monocle"})
        assert invalid.value.field == "order.lens_type" and invalid.value.status == 422
        with pytest.raises(NoRevisionNeeded):
            promise.revise(quote["quote_id"])
        ordered_at = dt.datetime.fromisoformat(quote["ordered_at"])
        promise.record_outcome(quote["quote_id"], ordered_at + dt.timedelta(seconds=1))
        with pytest.raises(Conflict) as conflict:
            promise.record_outcome(quote["quote_id"], ordered_at + dt.timedelta(seconds=3))
        assert conflict.value.code == "conflict"
        with pytest.raises(TooLarge):
            promise.create_quote({**ORDER}, reference="x" * 500 + "y" * 5000)
    with PromiseClient(server, key="not-a-key-0123456789") as stranger, pytest.raises(Unauthorized):
        stranger.get_quote(quote["quote_id"])
    with PromiseClient(server, key=ADMIN_KEY) as admin, pytest.raises(Forbidden):
        admin.create_quote(ORDER)


def test_a_lost_connection_is_retried_with_the_same_key(server: str) -> None:
    port = free_port()
    target = server.removeprefix("http://").split(":")
    forwarder = Forwarder(port, (target[0], int(target[1])))

    def come_back() -> None:
        time.sleep(0.8)
        forwarder.start()

    threading.Thread(target=come_back, daemon=True).start()
    with PromiseClient(
        f"http://127.0.0.1:{port}", key=POS_KEY, retries=6, backoff_seconds=0.3
    ) as promise:
        first = promise.create_quote(ORDER, idempotency_key="lost-answer-1")
    forwarder.stop()
    with PromiseClient(server, key=POS_KEY) as direct:
        assert direct.create_quote(ORDER, idempotency_key="lost-answer-1") == first


def test_503_is_retried_then_raised(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "PROMISE_REGISTRY": str(tmp_path / "empty"),  # nothing to serve: every quote is 503
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_RETRY_AFTER_SECONDS": "1",
    }
    command = [sys.executable, "-m", "promise_cli", "serve", "--port", str(port)]
    log = tmp_path / "server.log"
    with (
        running_process(command, env, port, log, ready=False) as (base, _),
        PromiseClient(base, key=POS_KEY, retries=1) as promise,
        pytest.raises(Unavailable) as unavailable,
    ):
        promise.create_quote(ORDER)
    assert unavailable.value.status == 503
