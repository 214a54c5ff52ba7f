"""Paging the API's lists (issue 20): a `total` counted for the caller's stores, a keyset
`next_cursor` that quotes stored meanwhile do not shift, cursors of another key, list or query
refused (422 on `cursor`), and the look-up by the shop's own reference, on SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import (
    ADMIN_KEY,
    POS_KEY_2,
    ClientFactory,
    SettingsFactory,
    bearer,
    quote_body,
)

UTC = dt.UTC
EVERYTHING: dict[str, Any] = {"min_probability": 0.0, "within": "P60D"}


def _placed(client: TestClient, days_ago: float, **changes: Any) -> dict[str, Any]:
    at = dt.datetime.now(UTC) - dt.timedelta(days=days_ago)
    body = {**quote_body(**changes), "ordered_at": at.isoformat()}
    response = client.post("/v1/quotes", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _pages(client: TestClient, path: str, items: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, following `next_cursor` (the filters only on the first page)."""
    pages = [client.get(path, params=params).json()]
    while pages[-1]["next_cursor"] is not None:
        answer = client.get(
            path, params={"cursor": pages[-1]["next_cursor"], "limit": params["limit"]}
        )
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        assert len(pages) < 50
    assert all(page["count"] == len(page[items]) for page in pages)
    return pages


@pytest.fixture
def old_client(make_client: ClientFactory) -> TestClient:
    return make_client(max_order_age_days=60.0)


def test_the_call_list_pages_to_the_end_with_its_total(old_client: TestClient) -> None:
    ids = {_placed(old_client, days_ago=10 + i / 2)["quote_id"] for i in range(7)}
    whole = old_client.get("/v1/at-risk", params={**EVERYTHING, "limit": 1000}).json()
    assert whole["total"] == whole["count"] == 7 and whole["next_cursor"] is None
    pages = _pages(old_client, "/v1/at-risk", "orders", **EVERYTHING, limit=3)
    assert [page["count"] for page in pages] == [3, 3, 1]
    assert {page["total"] for page in pages} == {7}
    assert len({page["at"] for page in pages}) == 1  # every page judged at one moment
    paged = [order for page in pages for order in page["orders"]]
    assert [o["quote_id"] for o in paged] == [o["quote_id"] for o in whole["orders"]]
    assert {o["quote_id"] for o in paged} == ids


def test_quotes_stored_meanwhile_do_not_shift_the_next_page(old_client: TestClient) -> None:
    for days in (10, 11, 12, 13):
        _placed(old_client, days_ago=days)
    first = old_client.get("/v1/at-risk", params={**EVERYTHING, "limit": 2}).json()
    # Two orders that sort before the cursor (older, so due sooner), one after it.
    sooner = [_placed(old_client, days_ago=14)["quote_id"], _placed(old_client, 15)["quote_id"]]
    later = _placed(old_client, days_ago=0.5)["quote_id"]
    rest = old_client.get(
        "/v1/at-risk", params={"cursor": first["next_cursor"], "limit": 1000}
    ).json()
    seen = [o["quote_id"] for o in first["orders"]]
    after = [o["quote_id"] for o in rest["orders"]]
    assert not set(seen) & set(after)  # an offset would repeat the first page's last two
    assert not set(sooner) & set(after)
    assert later in after and len(after) == 3
    assert rest["total"] == 7


def test_a_cursor_alone_keeps_the_lists_filters(old_client: TestClient) -> None:
    for days in (10, 11, 12):
        _placed(old_client, days_ago=days)
    _placed(old_client, days_ago=0.5)  # low risk: listed only with min_probability 0
    first = old_client.get("/v1/at-risk", params={**EVERYTHING, "limit": 2}).json()
    rest = old_client.get("/v1/at-risk", params={"cursor": first["next_cursor"]}).json()
    assert (rest["min_probability"], rest["within_hours"]) == (0.0, 60 * 24.0)
    assert rest["count"] == 2 and first["total"] == rest["total"] == 4
    same = old_client.get("/v1/at-risk", params={**EVERYTHING, "cursor": first["next_cursor"]})
    assert same.json()["orders"] == rest["orders"]


def _cursor_of(body: dict[str, Any]) -> str:
    text = json.dumps(body, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("cursor", "says"),
    [
        ("not a cursor", "cannot be read"),
        ("eyJ2IjoxfQ", "another list"),  # {"v":1}
        (_cursor_of({"v": 2, "list": "at-risk"}), "cannot be read"),
        ("x" * 4001, "at most 4000"),
    ],
)
def test_a_bad_cursor_is_refused_saying_so(old_client: TestClient, cursor: str, says: str) -> None:
    for path in ("/v1/at-risk", "/v1/quotes"):
        answer = old_client.get(path, params={"cursor": cursor})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "cursor" and says in answer.json()["message"]


def test_a_cursor_of_another_key_list_or_query_is_refused(old_client: TestClient) -> None:
    for days in (10, 11, 12):
        _placed(old_client, days_ago=days, store_id="LDS")
        _placed(old_client, days_ago=days)
        old_client.post("/v1/quotes", json={**quote_body(), "reference": "PO-9"})
    cursor = old_client.get("/v1/at-risk", params={**EVERYTHING, "limit": 1}).json()["next_cursor"]
    other_key = old_client.get("/v1/at-risk", params={"cursor": cursor}, headers=bearer(POS_KEY_2))
    assert other_key.status_code == 422 and "another API key" in other_key.json()["message"]
    other_list = old_client.get("/v1/quotes", params={"cursor": cursor})
    assert other_list.status_code == 422 and "another list" in other_list.json()["message"]
    for changed in ({"store": "LDS"}, {"min_probability": 0.5}, {"within": "P7D"}):
        refused = old_client.get("/v1/at-risk", params={"cursor": cursor, **changed})
        assert refused.status_code == 422, changed
        assert refused.json()["field"] == "cursor" and "other filters" in refused.json()["message"]
    by_reference = old_client.get("/v1/quotes", params={"reference": "PO-9", "limit": 1}).json()
    elsewhere = old_client.get(
        "/v1/quotes", params={"cursor": by_reference["next_cursor"], "reference": "PO-8"}
    )
    assert elsewhere.status_code == 422 and "another reference" in elsewhere.json()["message"]


def test_quotes_are_found_by_the_shops_reference_newest_first(old_client: TestClient) -> None:
    first = old_client.post("/v1/quotes", json={**quote_body(), "reference": "PO-7"}).json()
    batch = old_client.post(
        "/v1/quotes/batch",
        json={"orders": [{**quote_body(), "reference": r} for r in ("PO-7", "PO-70", "PO-7")]},
    ).json()["quotes"]
    overdue = _placed(old_client, days_ago=20)
    old_client.post("/v1/quotes", json={**quote_body(), "reference": "po-7"})
    whole = old_client.get("/v1/quotes", params={"reference": "PO-7"}).json()
    assert (whole["reference"], whole["total"], whole["count"]) == ("PO-7", 3, 3)
    assert whole["next_cursor"] is None
    ids = [q["quote_id"] for q in whole["quotes"]]
    assert set(ids) == {first["quote_id"], batch[0]["quote_id"], batch[2]["quote_id"]}
    assert ids[-1] == first["quote_id"]  # the oldest last
    stamps = [q["created_at"] for q in whole["quotes"]]
    assert stamps == sorted(stamps, reverse=True)
    assert whole["quotes"][-1] == old_client.get(f"/v1/quotes/{first['quote_id']}").json()
    pages = _pages(old_client, "/v1/quotes", "quotes", reference="PO-7", limit=2)
    assert [q["quote_id"] for page in pages for q in page["quotes"]] == ids
    assert [page["count"] for page in pages] == [2, 1] and {p["total"] for p in pages} == {3}
    none = old_client.get("/v1/quotes", params={"reference": "PO-404"}).json()
    assert (none["total"], none["count"], none["quotes"], none["next_cursor"]) == (0, 0, [], None)
    assert overdue["reference"] is None


def test_a_revision_is_found_by_its_orders_reference(old_client: TestClient) -> None:
    at = (dt.datetime.now(UTC) - dt.timedelta(days=20)).isoformat()
    body = {**quote_body(), "ordered_at": at, "reference": "PO-REV"}
    original = old_client.post("/v1/quotes", json=body).json()
    revision = old_client.post(f"/v1/quotes/{original['quote_id']}/revise").json()
    found = old_client.get("/v1/quotes", params={"reference": "PO-REV"}).json()["quotes"]
    assert [q["quote_id"] for q in found] == [revision["quote_id"], original["quote_id"]]
    assert found[0]["revision_of"] == original["quote_id"]


def test_looking_up_needs_a_reference(old_client: TestClient) -> None:
    for params in ({}, {"reference": ""}, {"reference": "x" * 201}):
        answer = old_client.get("/v1/quotes", params=params)
        assert answer.status_code == 422 and answer.json()["field"] == "reference", params


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


LDS_TILL = "till-leeds-0123456789abcdef"
MAN_TILL = "till-manchester-0123456789abcdef"
HEAD_OFFICE = "head-office-0123456789abcdef"


@pytest.fixture
def tills(
    make_settings: SettingsFactory, make_client: ClientFactory, tmp_path: Path
) -> Callable[[str], TestClient]:
    keys = tmp_path / "keys"
    keys.write_text(
        f"pos {_sha256(LDS_TILL)} Leeds till stores=LDS\n"
        f"pos {_sha256(MAN_TILL)} Manchester till stores=MAN\n"
        f"pos {_sha256(HEAD_OFFICE)} head office\n"
        f"admin {_sha256(ADMIN_KEY)} ops\n",
        encoding="utf-8",
    )
    settings = make_settings(
        api_keys=(), staff_key=None, admin_key=None, keys_file=keys, max_order_age_days=60.0
    )
    first = make_client(settings, key=None)

    def client_for(key: str) -> TestClient:
        return TestClient(first.app, base_url=str(first.base_url), headers=bearer(key))

    return client_for


def test_totals_and_look_ups_are_the_callers_stores_only(
    tills: Callable[[str], TestClient],
) -> None:
    leeds, manchester, head_office = tills(LDS_TILL), tills(MAN_TILL), tills(HEAD_OFFICE)
    for days in (10, 11, 12):
        _placed(leeds, days_ago=days, store_id="LDS")
    _placed(manchester, days_ago=10, store_id="MAN")
    shared = {**quote_body(store_id="LDS"), "reference": "SHARED-1"}
    assert leeds.post("/v1/quotes", json=shared).status_code == 201
    listed = {
        name: client.get("/v1/at-risk", params={**EVERYTHING, "limit": 1}).json()["total"]
        for name, client in (("LDS", leeds), ("MAN", manchester), ("all", head_office))
    }
    assert listed == {"LDS": 4, "MAN": 1, "all": 5}
    mine = leeds.get("/v1/quotes", params={"reference": "SHARED-1"}).json()
    assert mine["total"] == 1
    # Another store's reference answers exactly as no match at all.
    theirs = manchester.get("/v1/quotes", params={"reference": "SHARED-1"})
    nothing = manchester.get("/v1/quotes", params={"reference": "NO-SUCH-1"})
    assert theirs.status_code == nothing.status_code == 200
    assert {**theirs.json(), "reference": None} == {**nothing.json(), "reference": None}
    assert head_office.get("/v1/quotes", params={"reference": "SHARED-1"}).json()["total"] == 1
    # A page of the Leeds list read with the Manchester key is refused, not answered.
    cursor = leeds.get("/v1/at-risk", params={**EVERYTHING, "limit": 1}).json()["next_cursor"]
    assert manchester.get("/v1/at-risk", params={"cursor": cursor}).status_code == 422


@pytest.mark.parametrize(
    ("within", "hours"), [("P7D", 168.0), ("PT12H", 12.0), ("P1W", 168.0), ("P1DT6H", 30.0)]
)
def test_within_takes_iso_8601_durations(client: TestClient, within: str, hours: float) -> None:
    answer = client.get("/v1/at-risk", params={"within": within})
    assert answer.status_code == 200, answer.text
    assert answer.json()["within_hours"] == hours


@pytest.mark.parametrize(
    ("within", "says"),
    [
        ("604800", "604800 seconds is P7D"),
        ("7d", "ISO 8601 duration"),
        ("P1M", "ISO 8601 duration"),
        ("P0D", "positive"),
        ("P367D", "at most 366 days"),
        ("\u00b2", "ISO 8601 duration"),  # a digit to str.isdigit, not to int()
        ("P\u0663D", "ISO 8601 duration"),  # an Arabic-Indic 3: not 0-9
    ],
)
def test_within_refuses_other_formats_saying_what_it_takes(
    client: TestClient, within: str, says: str
) -> None:
    answer = client.get("/v1/at-risk", params={"within": within})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "within" and says in answer.json()["message"]


def _decoded(cursor: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return body


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"at": "2020-01-01T00:00:00+00:00"}, "start again without one"),
        ({"at": "2999-01-01T00:00:00+00:00"}, "cannot be read"),
        ({"at": "0001-01-01T00:00:00+01:00"}, "cannot be read"),
        ({"at": None}, "cannot be read"),
        (
            {"query": {"min_probability": 7, "within_seconds": 60.0, "store": None}},
            "cannot be read",
        ),
        (
            {"query": {"min_probability": 0, "within_seconds": 1e300, "store": None}},
            "cannot be read",
        ),
        ({"query": {"min_probability": 0, "within_seconds": 60.0, "store": "M\x00N"}}, "cannot"),
        ({"after": ["2026-01-01T00:00:00+00:00", "NaN", "Q-1"]}, "cannot be read"),
        ({"after": ["2026-01-01T00:00:00+00:00", 0.5, "Q-\x00"]}, "cannot be read"),
        ({"after": ["yesterday", 0.5, "Q-1"]}, "cannot be read"),
        ({"after": []}, "cannot be read"),
        (
            {"query": {"min_probability": 0, "within_seconds": 10**400, "store": None}},
            "cannot be read",
        ),  # an integer too big for a float
        ({"after": ["2026-01-01T00:00:00+00:00", 10**400, "Q-1"]}, "cannot be read"),
        ({"list": "\ud800"}, "pages another list"),  # not storable, never echoed
    ],
)
def test_a_forged_call_list_cursor_is_refused_never_a_server_error(
    old_client: TestClient, change: dict[str, Any], says: str
) -> None:
    for days in (10, 11):
        _placed(old_client, days_ago=days)
    cursor = old_client.get("/v1/at-risk", params={**EVERYTHING, "limit": 1}).json()["next_cursor"]
    forged = {**_decoded(cursor), **change}
    if forged["after"] and forged["after"][1] == "NaN":
        forged["after"][1] = float("nan")
    text = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    answer = old_client.get("/v1/at-risk", params={"cursor": text})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "cursor" and says in answer.json()["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"after": ["2026-01-01T00:00:00+00:00", "Q-\x00"]},
        {"after": [3, "Q-1"]},
        {"query": {"reference": 7}},
        {"query": {"reference": "P\x00"}},
    ],
)
def test_a_forged_look_up_cursor_is_refused(old_client: TestClient, change: dict[str, Any]) -> None:
    for _ in range(2):
        old_client.post("/v1/quotes", json={**quote_body(), "reference": "PO-F"})
    cursor = old_client.get("/v1/quotes", params={"reference": "PO-F", "limit": 1}).json()[
        "next_cursor"
    ]
    text = _cursor_of({**_decoded(cursor), **change})
    answer = old_client.get("/v1/quotes", params={"cursor": text})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] in ("cursor", "reference")


def test_a_cursor_nested_too_deep_to_read_is_refused(client: TestClient) -> None:
    text = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")
    for path in ("/v1/at-risk", "/v1/quotes"):
        answer = client.get(path, params={"cursor": text})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "cursor"


def test_text_the_ledger_cannot_hold_is_refused(client: TestClient) -> None:
    answer = client.get("/v1/quotes", params={"reference": "PO-\x00"})
    assert answer.status_code == 422 and answer.json()["field"] == "reference"
    answer = client.get("/v1/at-risk", params={"store": "M\x00N"})  # a 500 on PostgreSQL
    assert answer.status_code == 422 and answer.json()["field"] == "store"


def test_the_longest_reference_pages_too(client: TestClient) -> None:
    reference = "\U0001f453" * 200  # 200 characters of 4 bytes each in UTF-8
    for _ in range(2):
        assert client.post("/v1/quotes", json={**quote_body(), "reference": reference}).is_success
    first = client.get("/v1/quotes", params={"reference": reference, "limit": 1}).json()
    rest = client.get("/v1/quotes", params={"cursor": first["next_cursor"]})
    assert rest.status_code == 200, rest.text
    assert rest.json()["count"] == 1 and rest.json()["reference"] == reference
