"""The staff call list (/at-risk) and the drift section of the performance page."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.registry import Registry
from tests.service.conftest import (
    ORDER,
    POS_KEY,
    STAFF_KEY,
    ClientFactory,
    TrainedBundles,
    bearer,
)

HTML = {"accept": "text/html"}
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def staff(make_client: ClientFactory) -> TestClient:
    return make_client(key=STAFF_KEY, max_order_age_days=60.0)


def _quote(client: TestClient, days_ago: float, **extra: Any) -> dict[str, Any]:
    placed = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    body = {"order": ORDER, "ordered_at": placed.isoformat(), **extra}
    response = client.post("/v1/quotes", json=body, headers=bearer(POS_KEY))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _row(page: str, quote_id: str) -> str:
    found = re.search(rf'<tr id="row-{quote_id}".*?</tr>', page, re.S)
    assert found, f"no row for {quote_id}"
    return found.group(0)


def test_the_call_list_shows_orders_at_risk_and_not_the_others(staff: TestClient) -> None:
    overdue = _quote(staff, 20, reference="Mrs Patel")
    fresh = _quote(staff, 0.1)
    page = staff.get("/at-risk", headers=HTML)
    assert page.status_code == 200
    row = _row(page.text, overdue["quote_id"])
    assert "Mrs Patel" in row and "100%" in row and "passed" in row and "not yet" in row
    assert "Give new date" in row
    assert f"row-{fresh['quote_id']}" not in page.text
    other_store = staff.get("/at-risk", params={"store": "NCL"}, headers=HTML)
    assert 'id="no-orders"' in other_store.text and "at NCL" in other_store.text


def test_marking_contacted_is_kept_with_who_and_when(staff: TestClient) -> None:
    quote = _quote(staff, 20)
    back = "/at-risk?days=7&percent=50"
    posted = staff.post(
        f"/at-risk/{quote['quote_id']}/contacted",
        data={"note": SCRIPT, "back": back},
        headers=HTML,
        follow_redirects=False,
    )
    assert posted.status_code == 303 and posted.headers["location"] == back
    page = staff.get(back, headers=HTML).text
    row = _row(page, quote["quote_id"])
    assert "staff-" in row and "not yet" not in row
    assert SCRIPT not in page
    risk = staff.get(f"/v1/quotes/{quote['quote_id']}/risk", headers=bearer(POS_KEY)).json()
    [contact] = risk["contacts"]
    assert contact["note"] == SCRIPT and contact["contacted_by"].startswith("staff-")


def test_a_contact_may_not_go_back_to_another_site(staff: TestClient) -> None:
    quote = _quote(staff, 20)
    posted = staff.post(
        f"/at-risk/{quote['quote_id']}/contacted",
        data={"back": "//evil.test/x"},
        headers=HTML,
        follow_redirects=False,
    )
    assert posted.headers["location"] == "/"
    cross = staff.post(
        f"/at-risk/{quote['quote_id']}/contacted",
        headers={**HTML, "Origin": "https://evil.test"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    unknown = staff.post("/at-risk/Q-0000-0000-0000/contacted", headers=HTML)
    assert unknown.status_code == 404


def test_giving_a_new_date_shows_the_revised_slip(staff: TestClient) -> None:
    quote = _quote(staff, 20)
    posted = staff.post(
        f"/at-risk/{quote['quote_id']}/revise",
        data={"form_token": "tok-1234567890"},
        headers=HTML,
        follow_redirects=False,
    )
    assert posted.status_code == 303
    slip = staff.get(posted.headers["location"], headers=HTML).text
    assert "Revised: the order is still open" in html.unescape(slip)
    again = staff.post(
        f"/at-risk/{quote['quote_id']}/revise",
        data={"form_token": "tok-1234567890"},
        headers=HTML,
        follow_redirects=False,
    )
    assert again.headers["location"] == posted.headers["location"]  # a double click: one


def test_the_performance_page_shows_drift_alarms(staff: TestClient) -> None:
    placed = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
    orders = [{"order": ORDER, "ordered_at": placed} for _ in range(30)]
    staff.post("/v1/quotes/batch", json={"orders": orders}, headers=bearer(POS_KEY))
    page = html.unescape(staff.get("/performance", headers=HTML).text)
    assert "<title>Performance · Promise</title>" in page
    assert 'id="drift"' in page and "1 segment flagged" in page
    assert re.search(r'<tr class="above-band">', page)
    assert "Promises are breaking" in page
    assert "0 promises revised" in page


def test_the_performance_page_shows_where_the_adaptive_buffer_stands(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    staff = make_client(key=STAFF_KEY, max_order_age_days=60.0, control_refresh_seconds=0.0)
    placed = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
    orders = [{"order": ORDER, "ordered_at": placed} for _ in range(30)]
    staff.post("/v1/quotes/batch", json={"orders": orders}, headers=bearer(POS_KEY))

    page = html.unescape(staff.get("/performance", headers=HTML).text)

    [drift] = staff.get("/v1/performance").json()["drift"]["segments"]
    assert drift["policy"] == "adaptive" and drift["adaptive_offset_hours"] > 0
    shown = f"{drift['adaptive_offset_hours']:+.1f} h, {100 * drift['adaptive_level']:.1f}% on time"
    assert '<th scope="col">Adaptive buffer</th>' in page and shown in page
