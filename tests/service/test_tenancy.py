"""Each store sees only its own promises (issue 16): two tills scoped to one store each, a
head-office key for all, and staff accounts scoped like the tills, on SQLite and PostgreSQL.

Another store's quote answers exactly as an unknown id does on every route (no existence
oracle); quoting for another store is 403 naming it; the call list, the performance report
and the staff pages count the caller's stores only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ADMIN_KEY, ORDER, ClientFactory, SettingsFactory, bearer

LDS_TILL = "till-leeds-0123456789abcdef"
MAN_TILL = "till-manchester-0123456789abcdef"
HEAD_OFFICE = "head-office-0123456789abcdef"
ANN = "staff-ann-lee-0123456789abcdef"
BOB = "staff-bob-roe-0123456789abcdef"
UNKNOWN_ID = "Q-0000-0000-0000"
AT_RISK_ALL = {"min_probability": 0.0, "within": "P60D"}


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def service(
    make_settings: SettingsFactory, make_client: ClientFactory, tmp_path: Path
) -> Callable[[str], TestClient]:
    """A client per key of one service whose keys file scopes the tills and the staff."""
    keys = tmp_path / "keys"
    keys.write_text(
        "\n".join(
            [
                f"pos {_sha256(LDS_TILL)} Leeds till stores=LDS",
                f"pos {_sha256(MAN_TILL)} Manchester till stores=MAN",
                f"pos {_sha256(HEAD_OFFICE)} head office",
                f"staff {_sha256(ANN)} Ann Lee stores=LDS",
                f"staff {_sha256(BOB)} Bob Roe stores=MAN",
                f"admin {_sha256(ADMIN_KEY)} ops",
            ]
        ),
        encoding="utf-8",
    )
    settings = make_settings(api_keys=(), staff_key=None, admin_key=None, keys_file=keys)
    first = make_client(settings, key=None)

    def client_for(key: str) -> TestClient:
        return TestClient(first.app, base_url=str(first.base_url), headers=bearer(key))

    return client_for


def _quote(client: TestClient, store: str, reference: str | None = None) -> dict[str, Any]:
    answer = client.post(
        "/v1/quotes", json={"order": {**ORDER, "store_id": store}, "reference": reference}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _fulfilled_at(quote: dict[str, Any]) -> str:
    placed = dt.datetime.fromisoformat(quote["ordered_at"])
    return (placed + dt.timedelta(minutes=5)).isoformat()


def _same_as_unknown(answer: Any, unknown: Any, quote_id: str) -> None:
    """Another tenant's quote looks exactly like an id that was never given."""
    assert answer.status_code == unknown.status_code == 404
    assert answer.text == unknown.text.replace(UNKNOWN_ID, quote_id)


API_ROUTES: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("GET", "/v1/quotes/{id}", lambda q: None),
    ("GET", "/v1/quotes/{id}/risk", lambda q: None),
    ("GET", "/v1/quotes/{id}/outcome", lambda q: None),
    ("POST", "/v1/quotes/{id}/outcome", lambda q: {"fulfilled_at": _fulfilled_at(q)}),
    (
        "PUT",
        "/v1/quotes/{id}/outcome",
        lambda q: {"fulfilled_at": _fulfilled_at(q), "reason": "wrong day"},
    ),
    ("POST", "/v1/quotes/{id}/contacts", lambda q: {"note": "called"}),
    ("POST", "/v1/quotes/{id}/revise", lambda q: None),
]


def _send(client: TestClient, method: str, path: str, body: Any) -> Any:
    return client.request(method, path, json=body)


def test_another_stores_quote_is_not_found_on_every_route(
    service: Callable[[str], TestClient],
) -> None:
    leeds, manchester = service(LDS_TILL), service(MAN_TILL)
    theirs = _quote(leeds, "LDS", reference="Mrs Smith, 07700 900123")
    for method, template, body in API_ROUTES:
        path = template.format(id=theirs["quote_id"])
        answer = _send(manchester, method, path, body(theirs))
        unknown = _send(manchester, method, template.format(id=UNKNOWN_ID), body(theirs))
        _same_as_unknown(answer, unknown, theirs["quote_id"])
        assert "Mrs Smith" not in answer.text, (method, template)
    # Nothing the other till tried was stored: Leeds records its real outcome first time.
    recorded = leeds.post(
        f"/v1/quotes/{theirs['quote_id']}/outcome", json={"fulfilled_at": _fulfilled_at(theirs)}
    )
    assert recorded.status_code == 201, recorded.text
    risk = leeds.get(f"/v1/quotes/{theirs['quote_id']}/risk").json()
    assert risk["contacts"] == []


def test_within_a_store_every_route_works(service: Callable[[str], TestClient]) -> None:
    leeds, head_office = service(LDS_TILL), service(HEAD_OFFICE)
    ours = _quote(leeds, "LDS", reference="Mr Jones")
    assert leeds.get(f"/v1/quotes/{ours['quote_id']}").json()["reference"] == "Mr Jones"
    assert leeds.get(f"/v1/quotes/{ours['quote_id']}/risk").status_code == 200
    contact = leeds.post(f"/v1/quotes/{ours['quote_id']}/contacts", json={"note": "called"})
    assert contact.status_code == 201 and contact.json()["contacted_by"] == "Leeds till"
    # A fresh promise still keeps the target: the revision is refused on its merits, not 404.
    revise = leeds.post(f"/v1/quotes/{ours['quote_id']}/revise")
    assert revise.status_code == 409 and revise.json()["error"] == "no_revision_needed"
    outcome = {"fulfilled_at": _fulfilled_at(ours)}
    assert leeds.post(f"/v1/quotes/{ours['quote_id']}/outcome", json=outcome).status_code == 201
    # Head office acts for every store.
    assert head_office.get(f"/v1/quotes/{ours['quote_id']}").status_code == 200


def test_quoting_for_a_store_outside_the_scope_is_403_naming_it(
    service: Callable[[str], TestClient],
) -> None:
    leeds, head_office = service(LDS_TILL), service(HEAD_OFFICE)
    single = leeds.post("/v1/quotes", json={"order": {**ORDER, "store_id": "MAN"}})
    assert single.status_code == 403
    assert "'MAN'" in single.json()["message"] and "LDS" in single.json()["message"]
    batch = leeds.post(
        "/v1/quotes/batch",
        json={"orders": [{"order": {**ORDER, "store_id": s}} for s in ("LDS", "MAN")]},
    )
    assert batch.status_code == 403 and "'MAN'" in batch.json()["message"]
    no_store = leeds.post("/v1/quotes", json={"order": {**ORDER, "store_id": None}})
    assert no_store.status_code == 403 and "names no store" in no_store.json()["message"]
    # Nothing of the refused requests was stored.
    listed = head_office.get("/v1/at-risk", params=AT_RISK_ALL).json()
    assert listed["count"] == 0
    assert head_office.post("/v1/quotes", json={"order": {**ORDER, "store_id": "MAN"}}).is_success


def test_the_call_list_and_performance_show_the_callers_stores_only(
    service: Callable[[str], TestClient],
) -> None:
    leeds, manchester, head_office = service(LDS_TILL), service(MAN_TILL), service(HEAD_OFFICE)
    in_leeds = [_quote(leeds, "LDS", reference=f"Leeds {i}")["quote_id"] for i in range(2)]
    in_manchester = _quote(manchester, "MAN", reference="Manchester 0")["quote_id"]

    def listed(client: TestClient, **params: Any) -> set[str]:
        answer = client.get("/v1/at-risk", params={**AT_RISK_ALL, **params})
        assert answer.status_code == 200, answer.text
        return {order["quote_id"] for order in answer.json()["orders"]}

    assert listed(leeds) == set(in_leeds)
    assert listed(manchester) == {in_manchester}
    assert listed(manchester, store="LDS") == set()  # asking for another store shows nothing
    assert listed(head_office) == {*in_leeds, in_manchester}
    assert listed(head_office, store="MAN") == {in_manchester}

    def quotes_counted(client: TestClient) -> int:
        answer = client.get("/v1/performance")
        assert answer.status_code == 200, answer.text
        count: int = answer.json()["overall"]["quotes"]
        return count

    assert (quotes_counted(leeds), quotes_counted(manchester), quotes_counted(head_office)) == (
        2,
        1,
        3,
    )


def test_staff_pages_show_the_staff_members_stores_only(
    service: Callable[[str], TestClient],
) -> None:
    leeds, manchester = service(LDS_TILL), service(MAN_TILL)
    ann, bob = service(ANN), service(BOB)
    ours = _quote(leeds, "LDS", reference="Mrs Smith")["quote_id"]
    theirs = _quote(manchester, "MAN", reference="Mr Brown")["quote_id"]

    page = ann.get(f"/quotes/{ours}")
    assert page.status_code == 200 and "Mrs Smith" in page.text
    hidden = ann.get(f"/quotes/{theirs}")
    assert hidden.status_code == 404 and "Mr Brown" not in hidden.text
    assert hidden.text == ann.get(f"/quotes/{UNKNOWN_ID}").text.replace(UNKNOWN_ID, theirs)

    call_list = ann.get("/at-risk", params={"days": 60, "percent": 0})
    assert call_list.status_code == 200
    assert ours in call_list.text and theirs not in call_list.text
    assert theirs in bob.get("/at-risk", params={"days": 60, "percent": 0}).text

    performance = ann.get("/performance")
    assert performance.status_code == 200
    overall = re.search(
        r'class="[^"]*overall">\s*<th scope="row">[^<]*</th>\s*<td>(\d+)</td>', performance.text
    )
    assert overall is not None and overall.group(1) == "1"

    for path in (f"/at-risk/{theirs}/contacted", f"/at-risk/{theirs}/revise"):
        assert ann.post(path, data={"note": "called", "back": "/at-risk"}).status_code == 404
    contacted = ann.post(
        f"/at-risk/{ours}/contacted", data={"back": "/at-risk"}, follow_redirects=False
    )
    assert contacted.status_code == 303
    contacts = leeds.get(f"/v1/quotes/{ours}/risk").json()["contacts"]
    assert [c["contacted_by"] for c in contacts] == ["Ann Lee"]
    assert bob.get(f"/v1/quotes/{theirs}/risk").json()["contacts"] == []

    form = {f"feature:{name}": str(value) for name, value in ORDER.items()}
    refused = ann.post("/quotes", data={**form, "feature:store_id": "MAN"})
    assert refused.status_code == 403 and "'MAN'" in refused.text
    made = ann.post("/quotes", data={**form, "feature:store_id": "LDS"}, follow_redirects=False)
    assert made.status_code == 303
