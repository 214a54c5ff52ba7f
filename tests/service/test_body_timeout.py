"""A request body trickled byte by byte is answered 408 once the read timeout passes, and the
connection is closed; bodies that arrive in time are served as before (a real server)."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.service.conftest import POS_KEY, STAFF_KEY, bearer, quote_body
from tests.service.servers import free_port, running_server

PROMISE = Path(sys.executable).parent / "promise"
TIMEOUT_SECONDS = 1.0
# Bounds on a busy machine, not speed checks: the answer comes long before either.
ANSWER_LIMIT_SECONDS = 60.0
TRICKLE_GAP_SECONDS = 0.25


@pytest.fixture
def server(database_url: str, registry_root: Path, tmp_path: Path) -> Iterator[tuple[str, int]]:
    if not database_url.startswith("sqlite"):
        pytest.skip("reading the body does not depend on the ledger")
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": database_url,
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_BODY_READ_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    }
    command = [str(PROMISE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, env, port, tmp_path / "server.log") as base:
        yield base, port


def _trickle(port: int, head: bytes, body: bytes) -> bytes:
    """Send `head` at once, then `body` a byte at a time, reading between bytes; returns all
    the server sent until it closed the connection."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_LIMIT_SECONDS) as sock:
        sock.sendall(head)
        sock.settimeout(TRICKLE_GAP_SECONDS)
        for index in range(len(body)):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            if chunk is not None:
                received += chunk
                break  # the server answered (or closed) before the body was complete
            try:
                sock.sendall(body[index : index + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(ANSWER_LIMIT_SECONDS)
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break  # closed by the server
            received += chunk
    return received


def _request_head(path: str, length: int, content_type: str, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode("ascii")


def test_a_trickled_body_is_answered_408_and_the_connection_closed(
    server: tuple[str, int],
) -> None:
    base, port = server
    body = json.dumps(quote_body()).encode()
    answer = _trickle(
        port, _request_head("/v1/quotes", len(body), "application/json", POS_KEY), body
    )

    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"connection: close" in head.lower()
    error = json.loads(payload)
    assert error["error"] == "timeout"
    assert error["message"] == "the request body did not arrive within 1 seconds"
    # Nothing was quoted, and the server goes on serving bodies that arrive in time.
    with httpx.Client(base_url=base, headers=bearer(POS_KEY), timeout=60.0) as client:
        assert client.get("/v1/performance").json()["overall"]["quotes"] == 0
        assert client.post("/v1/quotes", json=quote_body()).status_code == 201
        assert client.get("/readyz").status_code == 200


def test_a_trickled_sign_in_form_is_answered_408(server: tuple[str, int]) -> None:
    _, port = server
    body = f"key={STAFF_KEY}&next=%2F".encode()
    head = _request_head("/signin", len(body), "application/x-www-form-urlencoded", STAFF_KEY)
    answer = _trickle(port, head, body)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"set-cookie" not in answer.lower()  # no session started
