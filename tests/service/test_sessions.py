"""Staff sign in once: a signed, HttpOnly, SameSite=Strict cookie naming a session the ledger
keeps, and a CSRF token on every form post; no HTTP Basic prompt. (Revocation across workers:
test_session_revocation.py; named accounts and the keys file: test_staff_accounts.py.)"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.sessions import COOKIE
from tests.service.conftest import ADMIN_KEY, ORDER, POS_KEY, STAFF_KEY, ClientFactory

HTML = {"accept": "text/html"}
SCRIPT = "<script>alert('x')</script>"


def _form(**extra: str) -> dict[str, str]:
    return {**{f"feature:{k}": str(v) for k, v in ORDER.items()}, **extra}


def _sign_in(client: TestClient, key: str = STAFF_KEY, next_path: str = "/") -> object:
    return client.post(
        "/signin", data={"key": key, "next": next_path}, headers=HTML, follow_redirects=False
    )


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
def browser(make_client: ClientFactory) -> TestClient:
    """A client that sends no key: a browser."""
    return make_client(key=None)


def test_a_page_without_a_session_is_the_sign_in_page(browser: TestClient) -> None:
    response = browser.get("/performance", headers=HTML)
    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers
    assert 'action="/signin"' in response.text and 'value="/performance"' in response.text


def test_signing_in_sets_a_hardened_session_cookie(browser: TestClient) -> None:
    response = _sign_in(browser, next_path="/performance")

    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/performance"  # type: ignore[attr-defined]
    cookie = response.headers["set-cookie"]  # type: ignore[attr-defined]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert STAFF_KEY not in cookie
    assert browser.get("/performance", headers=HTML).status_code == 200


@pytest.mark.parametrize("key", ["not-a-key-0123456789", POS_KEY, ADMIN_KEY, ""])
def test_only_a_staff_key_signs_in(browser: TestClient, key: str) -> None:
    response = _sign_in(browser, key)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert "set-cookie" not in response.headers  # type: ignore[attr-defined]
    assert browser.get("/", headers=HTML).status_code == 401


@pytest.mark.parametrize("target", ["//evil.test/", "https://evil.test/", "evil", "/\\evil.test"])
def test_sign_in_never_redirects_off_site(browser: TestClient, target: str) -> None:
    assert _sign_in(browser, next_path=target).headers["location"] == "/"  # type: ignore[attr-defined]


def test_a_form_post_needs_the_session_s_csrf_token(browser: TestClient) -> None:
    _sign_in(browser)
    token = _csrf(browser.get("/", headers=HTML).text)

    missing = browser.post("/quotes", data=_form(), headers=HTML, follow_redirects=False)
    wrong = browser.post(
        "/quotes", data=_form(csrf_token="x" * 32), headers=HTML, follow_redirects=False
    )
    right = browser.post(
        "/quotes", data=_form(csrf_token=token), headers=HTML, follow_redirects=False
    )

    assert missing.status_code == wrong.status_code == 403
    assert right.status_code == 303 and right.headers["location"].startswith("/quotes/Q-")


def test_a_forged_or_revoked_session_is_refused(make_client: ClientFactory) -> None:
    forger = make_client(key=None)
    forger.cookies.set(COOKIE, "eyJrIjoic3RhZmYtMDAwMDAwMDAwMCJ9.forged.sig")
    assert forger.get("/", headers=HTML).status_code == 401
    secret = "session-secret-" * 3
    first = make_client(key=None, session_secret=secret)
    _sign_in(first)
    cookie = first.cookies[COOKIE]
    # Another worker with the same secret and keys accepts the session ...
    same = make_client(key=None, session_secret=secret)
    same.cookies.set(COOKIE, cookie)
    assert same.get("/", headers=HTML).status_code == 200
    # ... one whose staff key was replaced does not: the session's key is gone.
    revoked = make_client(key=None, session_secret=secret, staff_key="another-staff-0123456789")
    revoked.cookies.set(COOKIE, cookie)
    assert revoked.get("/", headers=HTML).status_code == 401


def test_signing_out_ends_the_session(browser: TestClient) -> None:
    _sign_in(browser)
    token = _csrf(browser.get("/", headers=HTML).text)
    assert browser.post("/signout", data={}, headers=HTML).status_code == 403  # no token
    cookie = browser.cookies[COOKIE]
    out = browser.post("/signout", data={"csrf_token": token}, headers=HTML, follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    browser.cookies.clear()
    assert browser.get("/", headers=HTML).status_code == 401
    browser.cookies.set(COOKIE, cookie)  # the old cookie, replayed, opens nothing
    assert browser.get("/", headers=HTML).status_code == 401
    replayed = browser.post("/quotes", data=_form(csrf_token=token), headers=HTML)
    assert replayed.status_code == 401


def test_each_session_has_its_own_csrf_token(make_client: ClientFactory) -> None:
    first, second = make_client(key=None), make_client(key=None)
    _sign_in(first)
    _sign_in(second)
    token = _csrf(first.get("/", headers=HTML).text)
    assert token != _csrf(second.get("/", headers=HTML).text)
    assert token == _csrf(first.get("/performance", headers=HTML).text)  # stable per session
    stolen = second.post("/quotes", data=_form(csrf_token=token), headers=HTML)
    assert stolen.status_code == 403


def test_markup_typed_at_sign_in_and_in_the_form_comes_back_escaped(browser: TestClient) -> None:
    refused = _sign_in(browser, key=SCRIPT, next_path=f"/{SCRIPT}")
    _sign_in(browser)
    token = _csrf(browser.get("/", headers=HTML).text)
    hostile = {f"feature:{name}": SCRIPT for name in ORDER}
    shown = browser.post(
        "/quotes",
        data={**hostile, "reference": SCRIPT, "form_token": SCRIPT, "csrf_token": token},
        headers=HTML,
    )
    stored = browser.post("/quotes", data=_form(reference=SCRIPT, csrf_token=token), headers=HTML)
    for response in (refused, shown, stored):
        assert "<script>" not in response.text  # type: ignore[attr-defined]
    assert "&lt;script&gt;" in shown.text and "&lt;script&gt;" in stored.text


def test_form_posts_need_a_staff_caller(browser: TestClient) -> None:
    for path in ("/quotes", "/signout"):
        assert browser.post(path, data=_form(), headers=HTML).status_code == 401
        pos = browser.post(path, data=_form(), headers={**HTML, "X-API-Key": POS_KEY})
        assert pos.status_code == 403
