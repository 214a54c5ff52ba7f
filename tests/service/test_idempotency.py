"""Idempotency-Key: a retried request gets the stored quote back, never a second one, also when
the retries arrive at the same time (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.ledger import Ledger
from service.tables import quote_requests, quotes
from tests.service.conftest import ORDER, POS_KEY_2, bearer, quote_body

CONCURRENT = 16


def _counts(client: TestClient) -> tuple[int, int]:
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    with ledger.engine.connect() as conn:
        n_requests = conn.execute(select(func.count()).select_from(quote_requests)).scalar_one()
        n_quotes = conn.execute(select(func.count()).select_from(quotes)).scalar_one()
    return int(n_requests), int(n_quotes)


def _post(client: TestClient, path: str, body: Any, key: str, **headers: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key, **headers})


def test_a_retry_gets_the_same_quote(client: TestClient) -> None:
    first = _post(client, "/v1/quotes", quote_body(), "order-1")
    again = _post(client, "/v1/quotes", quote_body(), "order-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert first.headers["Idempotent-Replayed"] == "false"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _counts(client) == (1, 1)


def test_without_a_key_each_request_is_a_new_quote(client: TestClient) -> None:
    first = client.post("/v1/quotes", json=quote_body()).json()
    second = client.post("/v1/quotes", json=quote_body()).json()
    assert first["quote_id"] != second["quote_id"]
    assert _counts(client) == (2, 2)


def test_a_key_reused_for_another_order_is_409(client: TestClient) -> None:
    _post(client, "/v1/quotes", quote_body(), "order-2")
    other = _post(client, "/v1/quotes", quote_body(store_id="BHM"), "order-2")
    assert other.status_code == 409
    assert (
        "Idempotency-Key 'order-2' was already used for a different request"
        in (other.json()["message"])
    )
    assert _counts(client) == (1, 1)


def test_a_number_spelt_differently_is_the_same_request(client: TestClient) -> None:
    first = _post(client, "/v1/quotes", quote_body(n_items=1, sphere_power=2), "order-num")
    again = _post(client, "/v1/quotes", quote_body(n_items=1.0, sphere_power=2.0), "order-num")
    assert first.status_code == 201 and again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = _post(client, "/v1/quotes", quote_body(n_items=2, sphere_power=2), "order-num")
    assert other.status_code == 409
    assert _counts(client) == (1, 1)


def test_a_key_reused_for_a_batch_is_409(client: TestClient) -> None:
    _post(client, "/v1/quotes", quote_body(), "order-3")
    batch = _post(client, "/v1/quotes/batch", {"orders": [quote_body()]}, "order-3")
    assert batch.status_code == 409


def test_the_same_time_written_differently_is_the_same_request(client: TestClient) -> None:
    utc = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    paris = utc.astimezone(dt.timezone(dt.timedelta(hours=1)))
    first = _post(client, "/v1/quotes", {"order": ORDER, "ordered_at": utc.isoformat()}, "o-4")
    again = _post(client, "/v1/quotes", {"order": ORDER, "ordered_at": paris.isoformat()}, "o-4")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()


def test_keys_belong_to_the_client_that_sent_them(client: TestClient) -> None:
    mine = _post(client, "/v1/quotes", quote_body(), "order-5").json()
    theirs = _post(
        client, "/v1/quotes", quote_body(store_id="BHM"), "order-5", **bearer(POS_KEY_2)
    ).json()
    assert theirs["quote_id"] != mine["quote_id"]
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    assert ledger.quotes.get(theirs["quote_id"]).features["store_id"] == "BHM"


def test_a_retried_batch_gets_the_same_quotes(client: TestClient) -> None:
    body = {"orders": [quote_body(), quote_body(store_id="LDS")]}
    first = _post(client, "/v1/quotes/batch", body, "batch-1")
    again = _post(client, "/v1/quotes/batch", body, "batch-1")
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _counts(client) == (1, 2)


def _together(client: TestClient, calls: int, send: Any) -> list[httpx.Response]:
    start = threading.Barrier(calls)

    def one(i: int) -> httpx.Response:
        start.wait()
        response: httpx.Response = send(i)
        return response

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def test_concurrent_retries_store_exactly_one_quote(client: TestClient) -> None:
    responses = _together(
        client, CONCURRENT, lambda _: _post(client, "/v1/quotes", quote_body(), "same-key")
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert [r.headers["Idempotent-Replayed"] for r in responses].count("false") == 1
    assert _counts(client) == (1, 1)
    quote_id = responses[0].json()["quote_id"]
    assert client.get(f"/v1/quotes/{quote_id}").json() == responses[0].json()


def test_concurrent_retries_of_a_batch_store_it_once(client: TestClient) -> None:
    body = {"orders": [quote_body(), quote_body(store_id="NCL"), quote_body(store_id="LIV")]}
    responses = _together(
        client, CONCURRENT, lambda _: _post(client, "/v1/quotes/batch", body, "same-batch")
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert _counts(client) == (1, 3)


def test_concurrent_requests_with_different_keys_are_all_stored(client: TestClient) -> None:
    responses = _together(
        client, CONCURRENT, lambda i: _post(client, "/v1/quotes", quote_body(), f"key-{i}")
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["quote_id"] for r in responses}) == CONCURRENT
    assert _counts(client) == (CONCURRENT, CONCURRENT)


def test_concurrent_outcomes_for_one_quote_record_it_once(client: TestClient) -> None:
    quote_id = client.post("/v1/quotes", json=quote_body()).json()["quote_id"]
    when = client.get(f"/v1/quotes/{quote_id}").json()["ordered_at"]
    responses = _together(
        client,
        CONCURRENT,
        lambda _: client.post(f"/v1/quotes/{quote_id}/outcome", json={"fulfilled_at": when}),
    )
    assert sorted(r.status_code for r in responses) == [200] * (CONCURRENT - 1) + [201]
    assert len({r.text for r in responses}) == 1
