"""Failed keys are throttled per client address: after the allowed failures in a window every
key from that address, a correct one too, is answered 429 with Retry-After (HTML on the
sign-in page), logged once; other addresses are unaffected; memory stays bounded."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from service.throttle import AuthThrottle, client_address
from tests.service.conftest import (
    LOCAL_URL,
    POS_KEY,
    STAFF_KEY,
    ClientFactory,
    bearer,
    quote_body,
)

WRONG = bearer("wrong-key-0123456789abcdef")
THROTTLED = {"auth_failures_allowed": 3, "auth_failure_window_seconds": 600.0}


def _fail(client: TestClient, times: int) -> None:
    for _ in range(times):
        response = client.get("/v1/model", headers=WRONG)
        assert response.status_code == 401, response.text


def test_too_many_wrong_keys_are_answered_429_with_retry_after(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(**THROTTLED)
    _fail(client, 3)
    with caplog.at_level(logging.WARNING, logger="service.throttle"):
        refused = client.get("/v1/model", headers=WRONG)
        correct = client.post("/v1/quotes", json=quote_body(), headers=bearer(POS_KEY))
        header = client.get("/v1/model", headers={"X-API-Key": POS_KEY})

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert refused.json()["error"] == "too_many_requests"
    assert "too many failed keys from this address" in refused.json()["message"]
    # A correct key is refused too: a guesser would otherwise learn which guess was right.
    assert correct.status_code == 429 and header.status_code == 429
    throttled = [r for r in caplog.records if r.getMessage() == "auth.throttled"]
    assert len(throttled) == 1  # once per address and window, however many refusals
    assert throttled[0].client == "127.0.0.1"  # type: ignore[attr-defined]
    # No key at all is not an attempt: still the plain 401 that says how to send one.
    assert client.get("/v1/model", headers={"Authorization": ""}).status_code == 401


def test_other_addresses_and_forwarded_headers(make_client: ClientFactory) -> None:
    client = make_client(**THROTTLED)
    _fail(client, 3)
    # The direct peer counts, never a header the client writes itself.
    forwarded = client.get("/v1/model", headers={**WRONG, "X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 429
    other = TestClient(client.app, base_url=LOCAL_URL, client=("127.0.0.2", 40000))
    assert other.get("/v1/model", headers=bearer(POS_KEY)).status_code == 200
    assert other.get("/v1/model", headers=WRONG).status_code == 401


def test_the_window_ends_and_keys_work_again(make_client: ClientFactory) -> None:
    client = make_client(auth_failures_allowed=2, auth_failure_window_seconds=1.0)
    _fail(client, 2)
    refused = client.get("/v1/model", headers=bearer(POS_KEY))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    time.sleep(1.1)  # waiting out the window, not measuring anything
    assert client.get("/v1/model", headers=bearer(POS_KEY)).status_code == 200
    _fail(client, 2)  # a fresh window counts from zero


def test_the_sign_in_form_is_throttled_with_an_html_page(make_client: ClientFactory) -> None:
    client = make_client(key=None, auth_failures_allowed=2)
    html = {"Accept": "text/html"}

    def sign_in(key: str) -> int:
        response = client.post("/signin", data={"key": key, "next": "/"}, headers=html)
        return response.status_code

    assert sign_in("") == 401  # a blank form is not a guess
    assert sign_in("not-the-staff-key-0123456789") == 401
    assert sign_in(POS_KEY) == 401  # a real key, but not a staff key: a failed sign-in
    refused = client.post(
        "/signin", data={"key": STAFF_KEY, "next": "/"}, headers=html, follow_redirects=False
    )
    assert refused.status_code == 429
    assert "text/html" in refused.headers["content-type"]
    assert "too many failed keys from this address" in refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "promise_session" not in refused.cookies  # no session started
    # The same address is throttled on the API too: one count per address.
    assert client.get("/v1/model", headers=bearer(POS_KEY)).status_code == 429


def test_a_correct_key_before_the_limit_is_served_and_not_counted(
    make_client: ClientFactory,
) -> None:
    client = make_client(**THROTTLED)
    _fail(client, 2)
    for _ in range(5):
        assert client.get("/v1/model", headers=bearer(POS_KEY)).status_code == 200
    _fail(client, 1)
    assert client.get("/v1/model", headers=bearer(POS_KEY)).status_code == 429


def test_the_tracked_addresses_are_bounded() -> None:
    throttle = AuthThrottle(allowed=1, window_seconds=600.0, max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.tracked() == 100
    assert throttle.retry_after("10.0.3.231") is not None  # the newest are kept
    assert throttle.retry_after("10.0.0.0") is None  # the oldest were evicted


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = AuthThrottle(allowed=2, window_seconds=600.0)
    throttle.failed("2001:db8:1:2::1")
    throttle.failed("2001:db8:1:2:ffff::9")
    assert throttle.retry_after("2001:db8:1:2::77") is not None
    assert throttle.retry_after("2001:db8:1:3::1") is None
    assert client_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_address(None) == "local"
