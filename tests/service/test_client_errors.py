"""Every error code the OpenAPI document lists (`x-error-codes`) is provoked against the real
app over HTTP and raises its own exception type in the client (issue 20); and the codes the
document lists are exactly the codes the client maps, each to a class of its status."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete

from models.registry import MODEL_FILE, Registry
from service.client import (
    BY_STATUS,
    ERRORS,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidBundle,
    InvalidInput,
    ModelUnavailable,
    NoRevisionNeeded,
    NotFound,
    PromiseApiError,
    PromiseClient,
    RequestTimeout,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from service.tables import bundle_files
from tests.service.app_server import app_server
from tests.service.conftest import ADMIN_KEY, ORDER, POS_KEY, TrainedBundles

BAD_KEY = "not-a-key-0123456789abcdef"


def _documented_codes(document: dict[str, Any]) -> dict[str, set[int]]:
    """Each `error` code the document lists, with the statuses it is listed under."""
    found: dict[str, set[int]] = {}
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                for code in response.get("x-error-codes", ()):
                    found.setdefault(code, set()).add(int(status))
    return found


def test_the_documented_codes_are_the_clients(client: TestClient) -> None:
    documented = _documented_codes(client.get("/openapi.json").json())
    assert set(documented) == set(ERRORS)
    for code, statuses in documented.items():
        [status] = statuses  # one status per code
        assert issubclass(ERRORS[code], BY_STATUS[status]), code
    kinds = list(ERRORS.values())
    assert len(set(kinds)) == len(kinds)  # each code its own exception type


class Trickle(httpx.SyncByteStream):
    """A body sent one byte, then the rest after a pause longer than the server waits."""

    def __init__(self, body: bytes, pause_seconds: float) -> None:
        self.body = body
        self.pause_seconds = pause_seconds

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[:1]
        time.sleep(self.pause_seconds)
        yield self.body[1:]


def _trickling(request: httpx.Request) -> None:
    request.stream = Trickle(request.read(), pause_seconds=3.0)


def _raised(
    expected: type[PromiseApiError], call: Callable[[], object], provoked: dict[str, type]
) -> PromiseApiError:
    with pytest.raises(PromiseApiError) as raised:
        call()
    assert type(raised.value) is expected, raised.value
    provoked[raised.value.code] = type(raised.value)
    return raised.value


def _huge_number_body(promise: PromiseClient) -> object:
    """A quote whose order holds a 5000-digit integer (the client side lifts Python's limit
    on writing one; the server's stays: it cannot read the body)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return promise.create_quote({**ORDER, "n_items": 10**5000})
    finally:
        sys.set_int_max_str_digits(limit)


def test_each_documented_error_code_raises_its_own_exception(
    trained: TrainedBundles, tmp_path: Path
) -> None:
    registry = tmp_path / "bundles"
    shutil.copytree(trained.root, registry)
    provoked: dict[str, type] = {}
    env = {"PROMISE_MAX_BODY_BYTES": "8192", "PROMISE_BODY_READ_TIMEOUT_SECONDS": "1"}
    with app_server(tmp_path, registry, env) as base:
        with PromiseClient(base, key=POS_KEY) as promise:
            quote = promise.create_quote(ORDER)
            _raised(NotFound, lambda: promise.get_quote("Q-0000-0000-0000"), provoked)
            invalid = _raised(
                InvalidInput, lambda: promise.create_quote({**ORDER, "lens_type": "x"}), provoked
            )
            assert invalid.field == "order.lens_type" and invalid.status == 422
            _raised(NoRevisionNeeded, lambda: promise.revise(quote["quote_id"]), provoked)
            ordered_at = dt.datetime.fromisoformat(quote["ordered_at"])
            promise.record_outcome(quote["quote_id"], ordered_at + dt.timedelta(seconds=1))
            again = ordered_at + dt.timedelta(seconds=9)
            _raised(Conflict, lambda: promise.record_outcome(quote["quote_id"], again), provoked)
            big = {"order": ORDER, "reference": "x" * 9000}
            _raised(TooLarge, lambda: promise.create_quotes([big]), provoked)
            _raised(BadRequest, lambda: _huge_number_body(promise), provoked)
            open_quote = promise.create_quote(ORDER)
        slow = httpx.Client(base_url=base, event_hooks={"request": [_trickling]})
        with PromiseClient(key=POS_KEY, http=slow, retries=0) as trickler:
            _raised(RequestTimeout, lambda: trickler.create_quote(ORDER), provoked)
        slow.close()
        with PromiseClient(base, key=BAD_KEY) as stranger:
            _raised(Unauthorized, lambda: stranger.get_quote(quote["quote_id"]), provoked)
        with PromiseClient(base, key=ADMIN_KEY) as admin:
            _raised(Forbidden, lambda: admin.create_quote(ORDER), provoked)
            Registry(registry).promote(trained.adaptive)
            tampered = registry / trained.adaptive / MODEL_FILE
            with tampered.open("ab") as handle:
                handle.write(b"not what the manifest hashed")
            _raised(InvalidBundle, admin.reload_model, provoked)
            shutil.copy(trained.root / trained.adaptive / MODEL_FILE, tampered)  # mended
            assert admin.reload_model()["version"] == trained.adaptive
    # The model that quoted the open order is gone from the registry and the ledger: a new
    # server on the same ledger cannot judge its risk.
    shutil.rmtree(registry / trained.conformal)
    ledger = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with ledger.begin() as conn:
        conn.execute(delete(bundle_files).where(bundle_files.c.version == trained.conformal))
    ledger.dispose()
    with app_server(tmp_path, registry) as base, PromiseClient(base, key=POS_KEY) as promise:
        _raised(ModelUnavailable, lambda: promise.get_risk(open_quote["quote_id"]), provoked)
    # Nothing to serve (a new ledger, an empty registry), and a key throttle of two failures.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PROMISE_AUTH_FAILURES_ALLOWED": "2", "PROMISE_RETRY_AFTER_SECONDS": "1"}
    with app_server(elsewhere, elsewhere / "empty", env, ready=False) as base:
        with PromiseClient(base, key=POS_KEY, retries=0) as promise:
            _raised(Unavailable, lambda: promise.create_quote(ORDER), provoked)
        with PromiseClient(base, key=BAD_KEY, retries=0) as stranger:
            for _ in range(2):
                _raised(Unauthorized, stranger.model, provoked)
            throttled = _raised(TooManyRequests, stranger.model, provoked)
            assert throttled.status == 429
    assert provoked == dict(ERRORS)
