"""Keeping promises alive over the API: risk of open orders, the call list, contacts,
honest revisions linked to the original, and drift alarms in /v1/performance and /metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ADMIN_KEY, ORDER, STAFF_KEY, ClientFactory, bearer, quote_body

UTC = dt.UTC
# Orders placed long enough ago to be overdue or close to their promise by now.
OLD_ORDERS = {"max_order_age_days": 60.0}


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def quote_placed(client: TestClient, days_ago: float, **changes: Any) -> dict[str, Any]:
    placed = now() - dt.timedelta(days=days_ago)
    body = {**quote_body(**changes), "ordered_at": placed.isoformat()}
    response = client.post("/v1/quotes", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def old_client(make_client: ClientFactory) -> TestClient:
    return make_client(**OLD_ORDERS)


def test_a_fresh_quote_is_at_low_risk_and_needs_no_revision(client: TestClient) -> None:
    quote = client.post("/v1/quotes", json=quote_body()).json()
    risk = client.get(f"/v1/quotes/{quote['quote_id']}/risk").json()
    assert risk["status"] == "open"
    # At the start, the risk is the promise's own miss rate: about the target, 5%.
    assert risk["probability_late"] < 0.15
    assert risk["needs_revision"] is False and risk["suggested_deadline_at"] is None
    assert risk["deadline_at"] == quote["deadline_at"]
    assert risk["contacts"] == [] and risk["revised_by"] is None
    assert "no new date is needed" in risk["explanation"]


def test_an_overdue_open_order_is_certain_to_be_late(old_client: TestClient) -> None:
    quote = quote_placed(old_client, days_ago=20)
    risk = old_client.get(f"/v1/quotes/{quote['quote_id']}/risk").json()
    assert risk["status"] == "overdue"
    assert risk["probability_late"] == 1.0
    assert risk["needs_revision"] is True
    suggested = dt.datetime.fromisoformat(risk["suggested_deadline_at"])
    assert suggested > now() and suggested > dt.datetime.fromisoformat(quote["deadline_at"])
    assert dt.datetime.fromisoformat(risk["expected_completion"]) >= now() - dt.timedelta(minutes=1)


def test_the_risk_grows_as_the_order_stays_open(old_client: TestClient) -> None:
    risks = [
        old_client.get(f"/v1/quotes/{quote_placed(old_client, days)['quote_id']}/risk").json()
        for days in (0.5, 6, 10, 13)
    ]
    probabilities = [r["probability_late"] for r in risks]
    assert probabilities == sorted(probabilities)
    assert probabilities[0] < 0.15 < probabilities[-1]


def test_a_fulfilled_order_has_a_known_answer(client: TestClient) -> None:
    quote = client.post("/v1/quotes", json=quote_body()).json()
    client.post(f"/v1/quotes/{quote['quote_id']}/outcome", json={"fulfilled_at": now().isoformat()})
    risk = client.get(f"/v1/quotes/{quote['quote_id']}/risk").json()
    assert (risk["status"], risk["probability_late"], risk["needs_revision"]) == (
        "fulfilled",
        0.0,
        False,
    )


def test_the_risk_of_an_unknown_quote_is_404(client: TestClient) -> None:
    response = client.get("/v1/quotes/Q-0000-0000-0000/risk")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_the_call_list_holds_open_orders_likely_to_break_soonest_first(
    old_client: TestClient,
) -> None:
    fresh = quote_placed(old_client, days_ago=0.1)
    overdue = quote_placed(old_client, days_ago=20)
    late_soon = quote_placed(old_client, days_ago=16, store_id="LDS")
    done = quote_placed(old_client, days_ago=22)
    old_client.post(
        f"/v1/quotes/{done['quote_id']}/outcome", json={"fulfilled_at": now().isoformat()}
    )
    listed = old_client.get("/v1/at-risk", params={"min_probability": 0.5}).json()
    ids = [order["quote_id"] for order in listed["orders"]]
    assert fresh["quote_id"] not in ids and done["quote_id"] not in ids
    assert set(ids) == {overdue["quote_id"], late_soon["quote_id"]}
    deadlines = [order["deadline_at"] for order in listed["orders"]]
    assert deadlines == sorted(deadlines)
    assert all(order["probability_late"] >= 0.5 for order in listed["orders"])
    only_lds = old_client.get("/v1/at-risk", params={"store": "LDS"}).json()
    assert [o["quote_id"] for o in only_lds["orders"]] == [late_soon["quote_id"]]
    soon = old_client.get("/v1/at-risk", params={"min_probability": 0.0}).json()["orders"]
    assert fresh["quote_id"] not in [o["quote_id"] for o in soon]  # due in more than 7 days
    params = {"min_probability": 0.0, "within": "P30D"}
    everything = old_client.get("/v1/at-risk", params=params).json()
    assert fresh["quote_id"] in [o["quote_id"] for o in everything["orders"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_probability": 1.5}, "min_probability"),
        ({"within": "-P1D"}, "within"),
        ({"within": "P400D"}, "within"),
        ({"within": "soon"}, "within"),
        ({"limit": 0}, "limit"),
    ],
)
def test_call_list_errors_name_the_parameter(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get("/v1/at-risk", params=params)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_a_contact_is_recorded_with_who_and_when(old_client: TestClient) -> None:
    quote = quote_placed(old_client, days_ago=20)
    before = now()
    response = old_client.post(
        f"/v1/quotes/{quote['quote_id']}/contacts", json={"note": "left a voicemail"}
    )
    assert response.status_code == 201, response.text
    contact = response.json()
    assert contact["note"] == "left a voicemail"
    assert contact["contacted_by"] and dt.datetime.fromisoformat(contact["contacted_at"]) >= before
    risk = old_client.get(f"/v1/quotes/{quote['quote_id']}/risk").json()
    assert [c["note"] for c in risk["contacts"]] == ["left a voicemail"]
    listed = old_client.get("/v1/at-risk").json()["orders"]
    assert [c["note"] for c in listed[0]["contacts"]] == ["left a voicemail"]
    assert old_client.post("/v1/quotes/Q-0000-0000-0000/contacts").status_code == 404


def test_a_revision_is_honest_linked_and_never_overwrites(old_client: TestClient) -> None:
    original = quote_placed(old_client, days_ago=20)
    response = old_client.post(
        f"/v1/quotes/{original['quote_id']}/revise", headers={"Idempotency-Key": "rev-1"}
    )
    assert response.status_code == 201, response.text
    revision = response.json()
    assert revision["revision_of"] == original["quote_id"] and revision["revision"] == 1
    assert revision["quote_id"] != original["quote_id"]
    assert dt.datetime.fromisoformat(revision["deadline_at"]) > now()
    assert revision["explanation"].startswith("Revised: the order is still open")
    # The original is kept as it was given.
    assert old_client.get(f"/v1/quotes/{original['quote_id']}").json() == original
    # A retry gets the same revision; a new revision right away is not needed.
    again = old_client.post(
        f"/v1/quotes/{original['quote_id']}/revise", headers={"Idempotency-Key": "rev-1"}
    )
    assert again.json()["quote_id"] == revision["quote_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = old_client.post(f"/v1/quotes/{original['quote_id']}/revise")
    assert fresh.status_code == 409 and fresh.json()["error"] == "no_revision_needed"
    risk = old_client.get(f"/v1/quotes/{original['quote_id']}/risk").json()
    assert risk["revised_by"] == revision["quote_id"]
    # The call list shows the newest promise of the order only.
    listed = old_client.get("/v1/at-risk", params={"min_probability": 0.0}).json()["orders"]
    assert original["quote_id"] not in [o["quote_id"] for o in listed]


def test_an_outcome_settles_the_original_and_its_revisions(old_client: TestClient) -> None:
    original = quote_placed(old_client, days_ago=20)
    revision = old_client.post(f"/v1/quotes/{original['quote_id']}/revise").json()
    fulfilled = now() - dt.timedelta(minutes=5)
    old_client.post(
        f"/v1/quotes/{original['quote_id']}/outcome", json={"fulfilled_at": fulfilled.isoformat()}
    )
    settled = old_client.get(f"/v1/quotes/{revision['quote_id']}").json()["outcome"]
    assert settled["was_late"] is False  # the revised promise was kept...
    assert old_client.get(f"/v1/quotes/{original['quote_id']}").json()["outcome"]["was_late"]
    refused = old_client.post(f"/v1/quotes/{revision['quote_id']}/revise")
    assert refused.status_code == 409 and "fulfilled" in refused.json()["message"]
    report = old_client.get("/v1/performance").json()
    # ...and both promises count: one late, one kept.
    assert (report["overall"]["outcomes"], report["overall"]["late"]) == (2, 1)
    revisions = report["revisions"]
    assert (revisions["revisions"], revisions["with_outcome"], revisions["late"]) == (1, 1, 0)
    assert revisions["median_hours_before_original_promise"] < 0  # revised after it passed


def _batch(client: TestClient, store: str, n: int, days_ago: float) -> list[dict[str, Any]]:
    at = (now() - dt.timedelta(days=days_ago)).isoformat()
    body = {"orders": [{**quote_body(store_id=store), "ordered_at": at} for _ in range(n)]}
    response = client.post("/v1/quotes/batch", json=body)
    assert response.status_code == 201, response.text
    return list(response.json()["quotes"])


def _drift(client: TestClient) -> dict[str, Any]:
    rows = client.get("/v1/performance").json()["drift"]["segments"]
    assert len(rows) == 1
    return dict(rows[0])


def test_a_drift_alarm_flags_promises_breaking(old_client: TestClient) -> None:
    quotes = _batch(old_client, "MAN", 30, days_ago=30)
    assert _drift(old_client)["status"] == "above band"  # all due and still open: broken
    for quote in quotes:  # all in fact ready on time: the alarm clears
        fulfilled = dt.datetime.fromisoformat(quote["expected_completion"])
        old_client.post(
            f"/v1/quotes/{quote['quote_id']}/outcome", json={"fulfilled_at": fulfilled.isoformat()}
        )
    assert _drift(old_client)["status"] == "within band"  # 0 of 30: too few to say "below"
    _batch(old_client, "MAN", 20, days_ago=30)
    row = _drift(old_client)
    assert (row["decided"], row["late"], row["status"]) == (50, 20, "above band")
    assert row["alarm"] and "breaking" in row["advice"]
    assert row["band"] == [0.025, 0.1] and row["late_rate_interval"][0] > 0.1
    metrics = old_client.get("/metrics", headers=bearer(ADMIN_KEY)).text
    flagged = [
        line
        for line in metrics.splitlines()
        if line.startswith("promise_drift_alarm{") and 'direction="above"' in line
    ]
    assert len(flagged) == 1 and flagged[0].endswith(" 1.0")


def test_a_drift_alarm_says_promises_could_be_shorter(old_client: TestClient) -> None:
    for quote in _batch(old_client, "LDS", 160, days_ago=30):
        fulfilled = dt.datetime.fromisoformat(quote["expected_completion"])
        old_client.post(
            f"/v1/quotes/{quote['quote_id']}/outcome", json={"fulfilled_at": fulfilled.isoformat()}
        )
    row = _drift(old_client)
    assert (row["status"], row["alarm"]) == ("below band", True)
    assert "could be shorter" in row["advice"]
    report = old_client.get("/v1/performance").json()
    assert report["drift"]["alarms"] == 1


def test_too_few_promises_never_alarm(old_client: TestClient) -> None:
    _batch(old_client, "BRS", 10, days_ago=30)
    row = _drift(old_client)
    assert (row["decided"], row["late"], row["status"], row["alarm"]) == (
        10,
        10,
        "too few decided",
        False,
    )


def test_promises_not_yet_due_are_not_counted(client: TestClient) -> None:
    client.post("/v1/quotes", json=quote_body())
    assert client.get("/v1/performance").json()["drift"]["segments"] == []


def test_the_staff_key_may_use_the_call_list(make_client: ClientFactory) -> None:
    staff = make_client(key=STAFF_KEY, **OLD_ORDERS)
    assert staff.get("/v1/at-risk").status_code == 200
    admin_only = staff.get("/v1/at-risk", headers=bearer("admin-key-0123456789abcdef"))
    assert admin_only.status_code == 403
    assert ORDER["store_id"] == "MAN"
