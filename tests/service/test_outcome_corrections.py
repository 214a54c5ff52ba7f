"""A mistaken outcome can be corrected (issue 16): `PUT /v1/quotes/{id}/outcome` with a reason
keeps the old and the new value, who, when and why; the live late rate, the drift window and
the adaptive replay's promises count the corrected value."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from service.ledger import Ledger
from tests.service.conftest import ClientFactory, quote_body

UTC = dt.UTC


def _old_quote(client: TestClient) -> dict[str, Any]:
    """A quote of an order placed 40 days ago: its deadline has passed."""
    placed = dt.datetime.now(UTC) - dt.timedelta(days=40)
    answer = client.post("/v1/quotes", json={**quote_body(), "ordered_at": placed.isoformat()})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert dt.datetime.fromisoformat(body["deadline_at"]) < dt.datetime.now(UTC)
    return body


def _late_counts(client: TestClient) -> tuple[int, int]:
    overall = client.get("/v1/performance").json()["overall"]
    return overall["outcomes"], overall["late"]


def test_a_corrected_outcome_is_counted_and_its_history_kept(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_order_age_days=60.0)
    quote = _old_quote(client)
    quote_id = quote["quote_id"]
    ordered_at = dt.datetime.fromisoformat(quote["ordered_at"])
    wrong = dt.datetime.now(UTC) - dt.timedelta(minutes=1)  # after the deadline: late
    right = ordered_at + dt.timedelta(hours=2)
    path = f"/v1/quotes/{quote_id}/outcome"
    assert client.post(path, json={"fulfilled_at": wrong.isoformat()}).status_code == 201
    assert _late_counts(client) == (1, 1)

    reason = "the till recorded the collection instead of the day it was ready"
    answer = client.put(path, json={"fulfilled_at": right.isoformat(), "reason": reason})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"]["was_late"] is False
    assert dt.datetime.fromisoformat(body["outcome"]["fulfilled_at"]) == right
    [correction] = body["corrections"]
    assert dt.datetime.fromisoformat(correction["old_fulfilled_at"]) == wrong
    assert dt.datetime.fromisoformat(correction["new_fulfilled_at"]) == right
    assert correction["reason"] == reason
    assert correction["corrected_by"].startswith("pos-")  # the environment key's id
    assert _late_counts(client) == (1, 0)

    # The drift window and the adaptive replay read the corrected value too.
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    now = dt.datetime.now(UTC)
    [window] = ledger.stats.decided_in_window(now, 60.0)
    assert (window.decided, window.late) == (1, 0)
    decided = ledger.stats.decided_promises(quote["policy"], ("store_id",), now, 10)
    assert decided.late.tolist() == [False]

    # Sending the corrected time again changes nothing; the history reads back.
    again = client.put(path, json={"fulfilled_at": right.isoformat(), "reason": "retry"})
    assert again.status_code == 200 and len(again.json()["corrections"]) == 1
    read = client.get(path)
    assert read.status_code == 200 and read.json()["corrections"] == body["corrections"]
    # The first, wrong outcome is now a conflict that points at the correction.
    conflict = client.post(path, json={"fulfilled_at": wrong.isoformat()})
    assert conflict.status_code == 409 and "PUT" in conflict.json()["message"]


def test_a_correction_needs_a_reason_an_outcome_and_a_possible_time(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_order_age_days=60.0)
    quote = _old_quote(client)
    path = f"/v1/quotes/{quote['quote_id']}/outcome"
    ordered_at = dt.datetime.fromisoformat(quote["ordered_at"])
    on_time = (ordered_at + dt.timedelta(hours=2)).isoformat()

    none_yet = client.put(path, json={"fulfilled_at": on_time, "reason": "typo"})
    assert none_yet.status_code == 409 and "POST" in none_yet.json()["message"]
    assert client.get(path).status_code == 409
    assert client.post(path, json={"fulfilled_at": on_time}).status_code == 201

    no_reason = client.put(path, json={"fulfilled_at": on_time})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    blank = client.put(path, json={"fulfilled_at": on_time, "reason": "    "})
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    future = (dt.datetime.now(UTC) + dt.timedelta(days=2)).isoformat()
    ahead = client.put(path, json={"fulfilled_at": future, "reason": "typo"})
    assert ahead.status_code == 422 and "future" in ahead.json()["message"]
    early = (ordered_at - dt.timedelta(hours=1)).isoformat()
    before = client.put(path, json={"fulfilled_at": early, "reason": "typo"})
    assert before.status_code == 422 and "before the order" in before.json()["message"]
    unknown = client.put(
        "/v1/quotes/Q-0000-0000-0000/outcome", json={"fulfilled_at": on_time, "reason": "typo"}
    )
    assert unknown.status_code == 404
    assert client.get(path).json()["corrections"] == []
