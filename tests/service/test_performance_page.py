"""The performance page explains its verdicts: beside each store's late count, how many of those
are open orders past their deadline ("late, no outcome recorded"), as the drift window counts
them (`LedgerStats.decided_in_window`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import POS_KEY, STAFF_KEY, ClientFactory, backdated_batch, bearer

HTML = {"accept": "text/html"}


@pytest.fixture
def staff(make_client: ClientFactory) -> TestClient:
    return make_client(key=STAFF_KEY, max_order_age_days=60.0, alarm_min_decided=5)


def _fulfil(client: TestClient, quote: dict[str, Any], late: bool) -> None:
    deadline = dt.datetime.fromisoformat(quote["deadline_at"])
    at = (
        deadline + dt.timedelta(hours=1)
        if late
        else dt.datetime.fromisoformat(quote["expected_completion"])
    )
    response = client.post(
        f"/v1/quotes/{quote['quote_id']}/outcome",
        json={"fulfilled_at": at.isoformat()},
        headers=bearer(POS_KEY),
    )
    assert response.status_code in (200, 201), response.text


def _verdict_cells(page: str, segment: str) -> dict[str, str]:
    table = re.search(r'<table class="performance verdicts cards".*?</table>', page, re.S)
    assert table, "no verdict table"
    row = re.search(
        rf'<tr[^>]*>\s*<th scope="row">{re.escape(segment)}</th>(.*?)</tr>', table[0], re.S
    )
    assert row, f"no verdict for {segment}"
    return {
        label: value.strip()
        for label, value in re.findall(r'data-label="([^"]+)">(.*?)</td>', row[1], re.S)
    }


def test_late_with_no_outcome_recorded_is_counted_beside_the_late_rate(
    staff: TestClient,
) -> None:
    quotes = backdated_batch(staff, "NCL", 9, days_ago=30)  # every deadline has passed
    for quote in quotes[:5]:
        _fulfil(staff, quote, late=False)
    _fulfil(staff, quotes[5], late=True)  # late, with its outcome
    # quotes[6:]: three still open past their deadline.
    page = staff.get("/performance", params={"days": 60}, headers=HTML).text
    segment = quotes[0]["segment"]
    cells = _verdict_cells(page, segment)
    assert cells["Due"] == "9"
    assert cells["Late"] == "4"
    assert cells["Late, no outcome recorded"] == "3"
    overall = _verdict_cells(page, "all quotes")
    assert overall["Late, no outcome recorded"] == "3"
    assert "Late, no outcome recorded</th>" in page


def test_a_store_with_every_outcome_recorded_shows_none_missing(staff: TestClient) -> None:
    quotes = backdated_batch(staff, "NCL", 6, days_ago=30)
    for quote in quotes:
        _fulfil(staff, quote, late=True)
    page = staff.get("/performance", params={"days": 60}, headers=HTML).text
    cells = _verdict_cells(page, quotes[0]["segment"])
    assert (cells["Late"], cells["Late, no outcome recorded"]) == ("6", "0")
