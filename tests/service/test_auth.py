"""Who may call what: every endpoint's rule (401 without a key, 403 with the wrong role),
open mode on loopback only, and keys that are validated and never logged."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from service.keyring import KeyRing
from service.settings import ApiKey, Settings
from tests.service.conftest import (
    ADMIN_KEY,
    ORDER,
    POS_KEY,
    STAFF_KEY,
    ClientFactory,
    SettingsFactory,
    bearer,
)

KEYS = {"pos": POS_KEY, "staff": STAFF_KEY, "admin": ADMIN_KEY}
QUOTE = {"order": ORDER}
# Orders placed 20 days ago are accepted (and overdue, so their promise may be revised).
OLD_ORDERS = {"max_order_age_days": 60.0}

# (method, path, json body, roles allowed); "{id}" is an existing quote's id, "{overdue}" a new
# overdue quote's for each call: a revision answers 201 only while the promise no longer keeps
# the target (409 `no_revision_needed` for a fresh quote or one just revised).
RULES: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/v1/quotes", QUOTE, {"pos", "staff"}),
    ("POST", "/v1/quotes/batch", {"orders": [QUOTE]}, {"pos", "staff"}),
    ("GET", "/v1/quotes/{id}", None, {"pos", "staff"}),
    ("POST", "/v1/quotes/{id}/outcome", {"fulfilled_at": "{now}"}, {"pos", "staff"}),
    ("GET", "/v1/quotes/{id}/risk", None, {"pos", "staff"}),
    ("GET", "/v1/at-risk", None, {"pos", "staff"}),
    ("POST", "/v1/quotes/{overdue}/revise", None, {"pos", "staff"}),
    ("POST", "/v1/quotes/{id}/contacts", {"note": "left a voicemail"}, {"pos", "staff"}),
    ("GET", "/v1/performance", None, {"pos", "staff", "admin"}),
    ("GET", "/v1/model", None, {"pos", "staff", "admin"}),
    ("POST", "/v1/model/reload", None, {"admin"}),
    ("GET", "/", None, {"staff"}),
    ("GET", "/quotes/{id}", None, {"staff"}),
    ("GET", "/lookup?quote_id={id}", None, {"staff"}),
    ("GET", "/performance", None, {"staff"}),
    ("GET", "/metrics", None, {"admin"}),  # and the metrics role: test_metrics_access.py
]
OPEN_PATHS = ["/healthz", "/readyz", "/openapi.json", "/docs", "/static/style.css"]


def _send(
    client: TestClient, method: str, path: str, body: Any, quote_id: str, headers: dict[str, str]
) -> int:
    path = path.replace("{id}", quote_id)
    if "{overdue}" in path:
        path = path.replace("{overdue}", _overdue_quote(client))
    if isinstance(body, dict) and body.get("fulfilled_at") == "{now}":
        body = {
            "fulfilled_at": client.get(f"/v1/quotes/{quote_id}", headers=bearer(POS_KEY)).json()[
                "ordered_at"
            ]
        }
    response = client.request(method, path, json=body, headers=headers, follow_redirects=False)
    return response.status_code


def _overdue_quote(client: TestClient) -> str:
    ordered_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    body = {**QUOTE, "ordered_at": ordered_at.isoformat()}
    response = client.post("/v1/quotes", json=body, headers=bearer(POS_KEY))
    assert response.status_code == 201, response.text
    quote_id: str = response.json()["quote_id"]
    return quote_id


@pytest.fixture
def keyless(make_client: ClientFactory) -> tuple[TestClient, str]:
    client = make_client(key=None, **OLD_ORDERS)
    quote_id = client.post("/v1/quotes", json=QUOTE, headers=bearer(POS_KEY)).json()["quote_id"]
    return client, quote_id


def test_each_endpoint_admits_its_roles_only(keyless: tuple[TestClient, str]) -> None:
    client, quote_id = keyless
    for method, path, body, allowed in RULES:
        where = f"{method} {path}"
        assert _send(client, method, path, body, quote_id, {}) == 401, where
        assert _send(client, method, path, body, quote_id, bearer("not-a-key-0123456789")) == 401
        for role, key in KEYS.items():
            status = _send(client, method, path, body, quote_id, bearer(key))
            if role in allowed:
                assert status < 400, (where, role, status)
            else:
                assert status == 403, (where, role, status)


def test_operations_endpoints_are_open(keyless: tuple[TestClient, str]) -> None:
    client, _ = keyless
    for path in OPEN_PATHS:
        assert client.get(path).status_code == 200, path


def test_a_key_may_come_in_x_api_key(keyless: tuple[TestClient, str]) -> None:
    client, _ = keyless
    assert client.post("/v1/quotes", json=QUOTE, headers={"X-API-Key": POS_KEY}).status_code == 201


def test_two_different_keys_are_refused(keyless: tuple[TestClient, str]) -> None:
    client, _ = keyless
    both = client.get("/v1/model", headers={**bearer(POS_KEY), "X-API-Key": "x" * 20})
    same = client.get("/v1/model", headers={**bearer(POS_KEY), "X-API-Key": POS_KEY})
    assert both.status_code == 401 and "two different keys" in both.json()["message"]
    assert same.status_code == 200


def test_the_answers_say_what_is_wrong(keyless: tuple[TestClient, str]) -> None:
    client, _ = keyless
    missing = client.post("/v1/quotes", json=QUOTE)
    wrong_role = client.post("/v1/model/reload", headers=bearer(POS_KEY))
    assert missing.json()["error"] == "unauthorized"
    assert "Authorization: Bearer KEY" in missing.json()["message"]
    assert "WWW-Authenticate" not in missing.headers
    assert wrong_role.json() == {
        "error": "forbidden",
        "message": "a pos key cannot do this; it needs a admin key",
        "field": None,
        "errors": [{"field": None, "message": "a pos key cannot do this; it needs a admin key"}],
    }


def test_the_web_form_asks_staff_to_sign_in(keyless: tuple[TestClient, str]) -> None:
    client, _ = keyless
    asked = client.get("/", headers={"accept": "text/html"})
    basic = base64.b64encode(f"staff:{STAFF_KEY}".encode()).decode()
    assert asked.status_code == 401
    assert "WWW-Authenticate" not in asked.headers  # no Basic prompt a browser would replay
    assert "text/html" in asked.headers["content-type"] and 'action="/signin"' in asked.text
    assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 401


def test_open_mode_serves_loopback_without_keys(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.app"):
        client = make_client(key=None, api_keys=(), staff_key=None, admin_key=None)
    assert [r.getMessage() for r in caplog.records] == ["auth.open_mode"]
    assert "NO API KEYS CONFIGURED" in caplog.records[0].detail  # type: ignore[attr-defined]
    assert client.post("/v1/quotes", json=QUOTE).status_code == 201
    assert client.post("/v1/model/reload").status_code == 200
    assert client.get("/").status_code == 200


def test_open_mode_refuses_clients_not_on_loopback(make_client: ClientFactory) -> None:
    client = make_client(
        key=None, client=("192.0.2.7", 40000), api_keys=(), staff_key=None, admin_key=None
    )
    for path in ("/v1/model", "/healthz", "/"):
        response = client.get(path)
        assert response.status_code == 403
        assert "loopback clients only" in response.json()["message"]


OPEN = {"api_keys": (), "staff_key": None, "admin_key": None}


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "10.0.0.7", "localhost.evil"]
)
def test_open_mode_answers_no_other_host_name(make_client: ClientFactory, host: str) -> None:
    # A page whose DNS name is rebound to 127.0.0.1 reaches a loopback socket, but its
    # requests name its own host: refused, reads and writes alike.
    client = make_client(key=None, **OPEN)
    for method, path in (("GET", "/v1/model"), ("GET", "/"), ("POST", "/v1/model/reload")):
        response = client.request(method, path, headers={"Host": host})
        assert response.status_code == 403, (method, path, host)
        assert f"Host {host!r} is not localhost" in response.json()["message"]
    for local in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/v1/model", headers={"Host": local}).status_code == 200, local


def test_open_mode_refuses_writes_from_another_site(make_client: ClientFactory) -> None:
    client = make_client(key=None, **OPEN)
    quote_id = client.post("/v1/quotes", json=QUOTE).json()["quote_id"]
    contact = {"note": "Left voicemail"}
    cross_site = (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "cross-site"},
    )
    for headers in cross_site:
        for path, body in (
            ("/v1/model/reload", None),
            (f"/v1/quotes/{quote_id}/contacts", contact),
            ("/v1/quotes", QUOTE),
        ):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 403, (path, headers)
            assert "a write from another site" in response.json()["message"]
        # Reading is harmless (a page cannot see the answer): served.
        assert client.get(f"/v1/quotes/{quote_id}", headers=headers).status_code == 200
    # The same writes from this machine's own pages, or from no browser at all, are served.
    for headers in (
        {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://127.0.0.1:8000"},
        {"Sec-Fetch-Site": "none"},
        {},
    ):
        assert client.post("/v1/model/reload", headers=headers).status_code == 200, headers
    assert client.post(f"/v1/quotes/{quote_id}/contacts", json=contact).status_code == 201
    # Only that one contact was recorded: none of the refused ones reached the ledger.
    contacts = client.get(f"/v1/quotes/{quote_id}/risk").json()["contacts"]
    assert [c["note"] for c in contacts] == ["Left voicemail"]


def test_ipv6_loopback_counts_as_loopback(make_client: ClientFactory) -> None:
    client = make_client(
        key=None, client=("::1", 40000), api_keys=(), staff_key=None, admin_key=None
    )
    assert client.get("/v1/model").status_code == 200


def test_keys_are_never_logged(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client = make_client(key=None)
        for key in (*KEYS.values(), "wrong-key-0123456789abcdef"):
            client.post("/v1/quotes", json=QUOTE, headers=bearer(key))
            client.post("/v1/model/reload", headers={"X-API-Key": key})
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records
    for key in (*KEYS.values(), "wrong-key-0123456789abcdef"):
        assert key not in logged


def test_the_key_ring_finds_each_role_and_nothing_else() -> None:
    ring = KeyRing([ApiKey(SecretStr(POS_KEY), "pos"), ApiKey(SecretStr(ADMIN_KEY), "admin")])
    found = ring.identify(POS_KEY)
    assert found is not None and found.role == "pos"
    assert found.key_id.startswith("pos-") and POS_KEY not in found.key_id
    assert ring.identify(POS_KEY[:-1]) is None
    assert ring.identify("") is None
    assert ring.identify("\udcff") is None


def test_settings_refuse_weak_or_shared_keys(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make_settings(api_keys=("short",))
    with pytest.raises(ValidationError, match="each key must be different"):
        make_settings(admin_key=POS_KEY)
    with pytest.raises(ValidationError, match="sqlite:///"):
        make_settings(database_url="mysql://db/promise")
    with pytest.raises(ValidationError, match="in-memory"):
        make_settings(database_url="sqlite:///:memory:")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMISE_API_KEYS", f" {POS_KEY} , {POS_KEY}-second ,")
    monkeypatch.setenv("PROMISE_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("PROMISE_DATABASE_URL", "postgresql://postgres@db/promise")
    monkeypatch.setenv("PROMISE_MAX_BATCH", "20")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == [POS_KEY, f"{POS_KEY}-second"]
    assert settings.database_url == "postgresql+psycopg://postgres@db/promise"
    assert settings.max_batch == 20
    assert settings.staff_key is None and not settings.is_open
    assert POS_KEY not in repr(settings)


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def test_hashed_keys_from_a_file_admit_their_roles_only(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(
        "# role sha256 name\n\n"
        + "".join(f"{role} {_sha256(key)} {role} desk one\n" for role, key in KEYS.items()),
        encoding="utf-8",
    )
    client = make_client(
        key=None, api_keys=(), staff_key=None, admin_key=None, keys_file=keys_file, **OLD_ORDERS
    )
    assert not client.app.state.settings.is_open  # type: ignore[attr-defined]
    assert all(key not in keys_file.read_text() for key in KEYS.values())
    quote_id = client.post("/v1/quotes", json=QUOTE, headers=bearer(POS_KEY)).json()["quote_id"]
    for method, path, body, allowed in RULES:
        where = f"{method} {path}"
        assert _send(client, method, path, body, quote_id, {}) == 401, where
        assert _send(client, method, path, body, quote_id, bearer("not-a-key-0123456789")) == 401
        for role, key in KEYS.items():
            status = _send(client, method, path, body, quote_id, bearer(key))
            assert (status < 400) if role in allowed else (status == 403), (where, role, status)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pos abc desk", "line 2: the second field must be the key's sha256"),
        (f"boss {'a' * 64} desk", "line 2: the role must be one of pos, staff, admin, metrics"),
        (f"pos {'a' * 64}", "line 2: expected 'ROLE SHA256-HEX NAME [stores=A,B]'"),
        (f"pos {'a' * 64} till stores=", "line 2: stores= takes store names separated by"),
        (f"pos {'a' * 64} till stores=LDS,,MAN", "line 2: stores= takes store names"),
        (f"pos {'a' * 64} stores=LDS", "line 2: the key needs a NAME before its stores="),
        (f"pos {_sha256(POS_KEY)} again", "each key must be different"),
    ],
)
def test_a_bad_keys_file_is_refused_naming_the_line(
    make_settings: SettingsFactory, tmp_path: Path, line: str, message: str
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# keys\n{line}\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=re.escape(message)):
        make_settings(keys_file=keys_file)
    with pytest.raises(ValidationError, match="cannot read the keys file"):
        make_settings(keys_file=tmp_path / "missing")
