"""Staff sessions live in the ledger: sign-out, idleness, age and a removed key end them at once,
on every worker; a replayed cookie opens nothing and its old CSRF token quotes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.errors import AccessDenied
from service.keyring import KeyRing
from service.ledger import Ledger
from service.sessions import COOKIE, Sessions
from service.settings import HashedKey
from service.tables import quotes, staff_sessions
from tests.service.conftest import ORDER, STAFF_KEY, ClientFactory, SettingsFactory
from tests.service.proxy import Forwarder
from tests.service.servers import free_port, running_server

HTML = {"accept": "text/html"}
SECRET = "session-secret-for-two-workers"
PROMISE = Path(sys.executable).parent / "promise"
ANN_KEY = "ann-lee-staff-key-0123456789"
BOB_KEY = "bob-ray-staff-key-0123456789"
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _form(**extra: str) -> dict[str, str]:
    return {**{f"feature:{k}": str(v) for k, v in ORDER.items()}, **extra}


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def _sign_in(client: TestClient | httpx.Client, key: str = STAFF_KEY) -> str:
    """Sign in; the session cookie's value."""
    response = client.post(
        "/signin", data={"key": key, "next": "/"}, headers=HTML, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return response.cookies[COOKIE]


def _browser(make_client: ClientFactory, cookie: str | None = None) -> TestClient:
    client = make_client(key=None, session_secret=SECRET)
    if cookie is not None:
        client.cookies.set(COOKIE, cookie)
    return client


def _quote_count(url: str) -> int:
    ledger = Ledger.connect(url)
    with ledger.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(quotes)).scalar_one()
    ledger.close()
    return int(count)


def _ended(url: str) -> list[str | None]:
    """Each session's ended reason, oldest first (None while open)."""
    ledger = Ledger.connect(url)
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(staff_sessions.c.ended_reason).order_by(staff_sessions.c.started_at)
        ).all()
    ledger.close()
    return [row.ended_reason for row in rows]


def _assert_refused(client: TestClient | httpx.Client, csrf: str) -> None:
    """A page is the sign-in page (401), a JSON caller gets 401, a quote post is refused."""
    page = client.get("/", headers=HTML)
    assert page.status_code == 401 and 'action="/signin"' in page.text
    api_style = client.get("/performance")
    assert api_style.status_code == 401 and api_style.json()["error"] == "unauthorized"
    post = client.post("/quotes", data=_form(csrf_token=csrf), headers=HTML, follow_redirects=False)
    assert post.status_code == 401 and 'action="/signin"' in post.text


def test_a_cookie_replayed_after_sign_out_is_refused_on_both_workers(
    make_client: ClientFactory, database_url: str
) -> None:
    first, second = _browser(make_client), _browser(make_client)
    cookie = _sign_in(first)
    csrf = _csrf(first.get("/", headers=HTML).text)
    second.cookies.set(COOKIE, cookie)
    # The other worker honours the session while it is open ...
    made = second.post("/quotes", data=_form(csrf_token=csrf), headers=HTML, follow_redirects=False)
    assert made.status_code == 303
    quoted = _quote_count(database_url)

    out = first.post("/signout", data={"csrf_token": csrf}, headers=HTML, follow_redirects=False)
    assert out.status_code == 303

    # ... and refuses it, as the first does, the moment it is signed out.
    replayed = _browser(make_client, cookie)
    for client in (replayed, second):
        _assert_refused(client, csrf)
    assert _quote_count(database_url) == quoted
    assert _ended(database_url) == ["signed_out"]


def test_a_forged_cookie_or_a_stranger_s_token_opens_nothing(
    make_client: ClientFactory, database_url: str
) -> None:
    client = _browser(make_client)
    cookie = _sign_in(client)
    signer = client.app.state.sessions._signer  # type: ignore[attr-defined]
    # A well-signed cookie whose token the ledger never issued (a guess) is refused.
    _assert_refused(_browser(make_client, signer.dumps({"t": "guessed-token"})), "x")
    _assert_refused(_browser(make_client, cookie[:-3] + "AAA"), "x")
    assert _ended(database_url) == [None]


def _book(make_settings: SettingsFactory, **overrides: float) -> tuple[Sessions, Ledger, KeyRing]:
    settings = make_settings(**overrides)
    ledger = Ledger.from_settings(settings)
    ledger.migrate()
    return Sessions(settings, ledger), ledger, KeyRing(settings.hashed_keys)


def _refused() -> pytest.RaisesExc[AccessDenied]:
    return pytest.raises(AccessDenied, match="sign in again")


def _staff(keyring: KeyRing) -> HashedKey:
    key = keyring.identify(STAFF_KEY)
    assert key is not None
    return key


def test_an_idle_session_ends_and_use_keeps_it_open(make_settings: SettingsFactory) -> None:
    sessions, ledger, keyring = _book(make_settings, session_idle_minutes=10.0)
    token, session = sessions.open(_staff(keyring), T0)
    minute = dt.timedelta(minutes=1)

    for step in range(1, 6):  # seen every 9 minutes: never 10 idle
        assert sessions.resume(token, keyring, T0 + 9 * step * minute).key == session.key
    with _refused():
        sessions.resume(token, keyring, T0 + 55 * minute)
    stored = ledger.sessions.get(session.token_sha256)
    assert stored is not None and stored.ended_reason == "idle"
    assert stored.ended_at == T0 + 55 * minute
    with _refused():  # ended for good, even at a time it would not have been idle
        sessions.resume(token, keyring, T0 + 46 * minute)
    ledger.close()


def test_a_session_ends_at_its_lifetime_however_busy(make_settings: SettingsFactory) -> None:
    sessions, ledger, keyring = _book(
        make_settings, session_idle_minutes=30.0, session_lifetime_hours=2.0
    )
    token, session = sessions.open(_staff(keyring), T0)
    for minutes in range(20, 120, 20):
        sessions.resume(token, keyring, T0 + dt.timedelta(minutes=minutes))
    with _refused():
        sessions.resume(token, keyring, T0 + dt.timedelta(minutes=120))
    stored = ledger.sessions.get(session.token_sha256)
    assert stored is not None and stored.ended_reason == "expired"
    ledger.close()


def test_last_seen_is_written_at_most_once_a_minute(make_settings: SettingsFactory) -> None:
    sessions, ledger, keyring = _book(make_settings)
    token, session = sessions.open(_staff(keyring), T0)

    def last_seen() -> dt.datetime:
        stored = ledger.sessions.get(session.token_sha256)
        assert stored is not None
        return stored.last_seen_at

    for seconds in (1, 20, 59):
        sessions.resume(token, keyring, T0 + dt.timedelta(seconds=seconds))
        assert last_seen() == T0
    sessions.resume(token, keyring, T0 + dt.timedelta(seconds=61))
    assert last_seen() == T0 + dt.timedelta(seconds=61)
    sessions.resume(token, keyring, T0 + dt.timedelta(seconds=100))
    assert last_seen() == T0 + dt.timedelta(seconds=61)
    ledger.close()


def test_a_session_whose_key_is_gone_ends_as_key_removed(make_settings: SettingsFactory) -> None:
    sessions, ledger, keyring = _book(make_settings)
    token, session = sessions.open(_staff(keyring), T0)
    rotated = KeyRing(make_settings(staff_key="a-new-staff-key-0123456789").hashed_keys)
    with _refused():
        sessions.resume(token, rotated, T0 + dt.timedelta(seconds=5))
    stored = ledger.sessions.get(session.token_sha256)
    assert stored is not None and stored.ended_reason == "key_removed"
    with _refused():  # the old keyring cannot revive it
        sessions.resume(token, keyring, T0 + dt.timedelta(seconds=6))
    ledger.close()


def test_the_app_ends_an_idle_session_and_one_past_its_lifetime(
    make_client: ClientFactory, database_url: str
) -> None:
    # Tiny settings and short waits: only "refused after the wait" is asserted, which a slow
    # machine cannot make false (the clock-driven tests above check the boundaries).
    idle = make_client(key=None, session_idle_minutes=0.01)  # 0.6 s
    old = make_client(key=None, session_lifetime_hours=0.0002)  # 0.72 s
    cookies = [_sign_in(client) for client in (idle, old)]
    time.sleep(1.0)
    for client, cookie in zip((idle, old), cookies, strict=True):
        client.cookies.set(COOKIE, cookie)  # replayed, whatever the cookie's Max-Age said
        _assert_refused(client, "any")  # the session is checked before the form's token
    assert sorted(r or "" for r in _ended(database_url)) == ["expired", "idle"]


def test_a_session_check_while_the_ledger_is_away_answers_503(
    make_client: ClientFactory, tmp_path: Path, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a SQLite fault")
    mount = tmp_path / "mount"
    client = make_client(key=None, database_url=f"sqlite:///{mount / 'ledger.db'}")
    _sign_in(client)
    assert client.get("/", headers=HTML).status_code == 200

    # The ledger's folder goes away (a lost mount): new connections cannot open it.
    mount.rename(tmp_path / "away")
    mount.write_text("not a folder")
    client.app.state.ledger.engine.dispose()  # type: ignore[attr-defined]
    page = client.get("/", headers=HTML)
    api_style = client.get("/performance")
    assert page.status_code == 503 and "Not available" in page.text
    assert api_style.status_code == 503 and api_style.json()["error"] == "unavailable"

    mount.unlink()
    (tmp_path / "away").rename(mount)
    assert client.get("/", headers=HTML).status_code == 200  # the session survived


def test_a_session_check_while_postgres_is_down_answers_503(
    make_client: ClientFactory, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL fault")
    url = make_url(database_url)
    forwarder = Forwarder(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    switched = url.set(host="127.0.0.1", port=forwarder.port)
    forwarder.start()
    try:
        client = make_client(key=None, database_url=switched.render_as_string(False))
        _sign_in(client)
        assert client.get("/", headers=HTML).status_code == 200
        forwarder.stop()
        assert client.get("/", headers=HTML).status_code == 503
        assert client.get("/performance").json()["error"] == "unavailable"
        forwarder.start()
        assert client.get("/", headers=HTML).status_code == 200
    finally:
        forwarder.stop()


def test_two_real_servers_refuse_a_signed_out_or_removed_session_at_once(
    database_url: str, registry_root: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys"
    lines = {
        "ann": f"staff {_sha256(ANN_KEY)} Ann Lee\n",
        "bob": f"staff {_sha256(BOB_KEY)} Bob Ray stores=LDS\n",
    }
    keys_file.write_text(lines["ann"] + lines["bob"], encoding="utf-8")
    env = {
        "PROMISE_DATABASE_URL": database_url,
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_KEYS_FILE": str(keys_file),
        "PROMISE_SESSION_SECRET": SECRET,
        "PROMISE_MODEL_CHECK_SECONDS": "0",
    }
    ports = free_port(), free_port()
    commands = [
        [str(PROMISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        for port in ports
    ]
    with (
        running_server(commands[0], env, ports[0], tmp_path / "a.log") as base_a,
        running_server(commands[1], env, ports[1], tmp_path / "b.log") as base_b,
        httpx.Client(base_url=base_a, timeout=60.0) as a,
        httpx.Client(base_url=base_b, timeout=60.0) as b,
    ):
        ann, bob = _sign_in(a, ANN_KEY), _sign_in(b, BOB_KEY)
        csrf = {}
        for name, cookie in (("ann", ann), ("bob", bob)):
            for base in (base_a, base_b):  # each session works on both servers
                with _client(base, cookie) as client:
                    page = client.get("/", headers=HTML)
                assert page.status_code == 200
                csrf[name] = _csrf(page.text)

        # Ann signs out on A: B refuses her cookie at once.
        with _client(base_a, ann) as client:
            out = client.post(
                "/signout", data={"csrf_token": csrf["ann"]}, headers=HTML, follow_redirects=False
            )
        assert out.status_code == 303
        # Bob's line is removed (the file replaced in one step): both refuse him, unrestarted.
        replacement = tmp_path / "keys.new"
        replacement.write_text(lines["ann"], encoding="utf-8")
        replacement.replace(keys_file)
        time.sleep(1.5)  # the keyring looks at the file at most once a second

        for name, cookie in (("ann", ann), ("bob", bob)):
            for base in (base_a, base_b):
                with _client(base, cookie) as client:
                    _assert_refused(client, csrf[name])
        assert sorted(r or "" for r in _ended(database_url)) == ["key_removed", "signed_out"]


def _client(base: str, cookie: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=60.0, cookies={COOKIE: cookie})
