"""Staff are named accounts of the keys file, and the keyring follows that file without a restart:
an added key works, a removed or rotated one (and its sessions) is refused at once, a bad edit
changes nothing."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.deps import StaffCaller
from service.keyring import KeyRing
from service.ledger import Ledger
from service.sessions import COOKIE
from service.settings import HashedKey
from service.tables import staff_sessions
from tests.service.conftest import ClientFactory

HTML = {"accept": "text/html"}
ANN_KEY = "ann-lee-staff-key-0123456789"
ANN_NEW_KEY = "ann-lee-rotated-key-0123456789"
BOB_KEY = "bob-ray-staff-key-0123456789"
TILL_KEY = "till-three-pos-key-0123456789"


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


ANN = f"staff {_sha256(ANN_KEY)} Ann Lee stores=LDS"
BOB = f"staff {_sha256(BOB_KEY)} Bob Ray"
TILL = f"pos {_sha256(TILL_KEY)} Till 3 stores=LDS,MAN"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def _write(path: Path, *lines: str) -> None:
    """Replace the keys file in one step, with a new modification time."""
    staged = path.with_name(path.name + ".new")
    staged.write_text("# role sha256 name [stores=]\n" + "".join(f"{x}\n" for x in lines))
    staged.replace(path)


def _named(keyring: KeyRing, key: str) -> tuple[str, str, frozenset[str] | None] | None:
    found = keyring.identify(key)
    return None if found is None else (found.role, found.name, found.stores)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    _write(path, ANN, TILL)
    return path


def test_the_keyring_follows_edits_at_most_once_a_second(keys_file: Path) -> None:
    clock = Clock()
    keyring = KeyRing([], keys_file, check_seconds=1.0, clock=clock)
    assert _named(keyring, ANN_KEY) == ("staff", "Ann Lee", frozenset({"LDS"}))
    assert _named(keyring, TILL_KEY) == ("pos", "Till 3", frozenset({"LDS", "MAN"}))
    ann = keyring.find(f"staff-{_sha256(ANN_KEY)[:10]}", "staff")
    assert ann is not None and ann.name == "Ann Lee"

    _write(keys_file, BOB, TILL)  # Ann leaves, Bob joins
    clock.seconds += 0.5
    assert _named(keyring, ANN_KEY) is not None  # not looked at yet
    clock.seconds += 0.6
    assert _named(keyring, ANN_KEY) is None
    assert keyring.find(ann.key_id, "staff") is None
    assert _named(keyring, BOB_KEY) == ("staff", "Bob Ray", None)

    # A rotation: the same person, a new key; a changed name and scope apply at once.
    _write(keys_file, f"staff {_sha256(ANN_NEW_KEY)} Ann Lee stores=LDS", BOB, TILL)
    _write(keys_file, f"staff {_sha256(ANN_NEW_KEY)} Ann Lee-Smith stores=MAN", BOB, TILL)
    clock.seconds += 1.0
    assert _named(keyring, ANN_KEY) is None
    assert _named(keyring, ANN_NEW_KEY) == ("staff", "Ann Lee-Smith", frozenset({"MAN"}))


@pytest.mark.parametrize(
    ("edit", "logged"),
    [
        (f"staff {_sha256(BOB_KEY)}", "line 2: expected 'ROLE SHA256-HEX NAME"),
        (f"staf {_sha256(BOB_KEY)} Bob Ray", "the role must be one of"),
        ("staff 1234 Bob Ray", "the key's sha256 as 64 lowercase hex"),
        (f"staff {_sha256(BOB_KEY)} Bob Ray stores=", "stores= takes store names"),
        (f"pos {_sha256(ANN_KEY)} Ann again", "appears twice"),
        ("", "missing or empty"),
        (None, "missing or empty"),
    ],
)
def test_a_bad_edit_keeps_the_keys_and_says_why(
    keys_file: Path, caplog: pytest.LogCaptureFixture, edit: str | None, logged: str
) -> None:
    clock = Clock()
    keyring = KeyRing([], keys_file, clock=clock)
    if edit is None:
        keys_file.unlink()
    elif edit == "":
        keys_file.write_bytes(b"")  # a write caught half-way: truncated, not yet written
    else:
        keys_file.write_text(f"{ANN}\n{edit}\n{TILL}\n")
    clock.seconds += 2.0
    with caplog.at_level(logging.ERROR, logger="service.keyring"):
        assert _named(keyring, ANN_KEY) == ("staff", "Ann Lee", frozenset({"LDS"}))
        assert _named(keyring, TILL_KEY) is not None and _named(keyring, BOB_KEY) is None
    [record] = [r for r in caplog.records if r.getMessage() == "auth.keys_file_invalid"]
    assert logged in str(getattr(record, "detail", ""))
    assert ANN_KEY not in caplog.text

    _write(keys_file, BOB)  # the next good edit applies
    clock.seconds += 2.0
    assert _named(keyring, ANN_KEY) is None and _named(keyring, BOB_KEY) is not None


def test_environment_keys_stay_whatever_the_file_says(keys_file: Path) -> None:
    clock = Clock()
    env_staff = HashedKey("staff", _sha256(BOB_KEY), "staff-env")
    keyring = KeyRing([env_staff], keys_file, clock=clock)
    _write(keys_file, "# everyone removed")
    clock.seconds += 2.0
    assert _named(keyring, ANN_KEY) is None and _named(keyring, TILL_KEY) is None
    assert _named(keyring, BOB_KEY) == ("staff", "staff-env", None)


@pytest.fixture
def staff_desk(make_client: ClientFactory, keys_file: Path) -> TestClient:
    """A browser at a service whose keys are all in the keys file, with a page that says who
    the staff caller is."""
    client = make_client(key=None, api_keys=(), staff_key=None, admin_key=None, keys_file=keys_file)

    def whoami(caller: StaffCaller) -> dict[str, Any]:
        return {"name": caller.name, "stores": sorted(caller.stores or ()), "id": caller.client_id}

    cast(FastAPI, client.app).add_api_route("/test/whoami", whoami)
    return client


def _sign_in(client: TestClient, key: str) -> int:
    return client.post(
        "/signin", data={"key": key, "next": "/"}, headers=HTML, follow_redirects=False
    ).status_code


def test_a_signed_in_staff_member_is_their_named_account(staff_desk: TestClient) -> None:
    assert _sign_in(staff_desk, ANN_KEY) == 303
    assert staff_desk.get("/test/whoami").json() == {
        "name": "Ann Lee",
        "stores": ["LDS"],
        "id": f"staff-{_sha256(ANN_KEY)[:10]}",
    }
    staff_desk.cookies.clear()
    header = staff_desk.get("/test/whoami", headers={"X-API-Key": BOB_KEY})
    assert header.status_code == 401  # Bob has no account (yet)
    assert _sign_in(staff_desk, TILL_KEY) == 401  # a till is not staff


def _ended(client: TestClient) -> list[str | None]:
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(staff_sessions.c.ended_reason).order_by(staff_sessions.c.started_at)
        ).all()
    return [row.ended_reason for row in rows]


def test_removing_or_rotating_a_key_ends_its_sessions_without_a_restart(
    staff_desk: TestClient, keys_file: Path
) -> None:
    _write(keys_file, ANN, BOB, TILL)
    time.sleep(1.2)  # the keyring looks at the file at most once a second
    assert _sign_in(staff_desk, ANN_KEY) == 303
    ann = staff_desk.cookies[COOKIE]
    staff_desk.cookies.clear()
    assert _sign_in(staff_desk, BOB_KEY) == 303  # added without a restart
    bob = staff_desk.cookies[COOKIE]
    staff_desk.cookies.clear()

    # Ann's key is rotated, Bob's account removed; a scope change reaches open sessions too.
    _write(keys_file, f"staff {_sha256(ANN_NEW_KEY)} Ann Lee stores=LDS", TILL)
    time.sleep(1.2)
    for cookie in (ann, bob):
        staff_desk.cookies.set(COOKIE, cookie)
        page = staff_desk.get("/", headers=HTML)
        assert page.status_code == 401 and 'action="/signin"' in page.text
        staff_desk.cookies.clear()
    assert _ended(staff_desk) == ["key_removed", "key_removed"]
    assert _sign_in(staff_desk, ANN_KEY) == 401
    assert _sign_in(staff_desk, ANN_NEW_KEY) == 303
    assert staff_desk.get("/test/whoami").json()["name"] == "Ann Lee"


def test_a_bad_edit_leaves_the_service_serving_its_staff(
    staff_desk: TestClient, keys_file: Path
) -> None:
    assert _sign_in(staff_desk, ANN_KEY) == 303
    keys_file.write_text(f"{ANN}\nstaff not-a-hash Bob Ray\n")
    os.utime(keys_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    time.sleep(1.2)
    assert staff_desk.get("/", headers=HTML).status_code == 200
    assert staff_desk.get("/test/whoami").json()["name"] == "Ann Lee"
    assert staff_desk.get("/v1/performance", headers={"X-API-Key": TILL_KEY}).status_code == 200
