"""The API refuses what a whole-number feature cannot be, by the staff form's rule
(`models.features.count_problem`): half a frame in stock, -1 items."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ORDER

NONSENSE = [
    ("frame_in_stock", 0.5, "frame_in_stock must be 0 (no) or 1 (yes), not 0.5"),
    ("n_items", -1, "n_items cannot be less than 1"),
    ("n_items", 1.5, "n_items must be a whole number, like 2"),
]


@pytest.mark.parametrize(("field", "value", "message"), NONSENSE)
def test_a_quote_with_a_count_it_cannot_be_is_422(
    client: TestClient, field: str, value: float, message: str
) -> None:
    response = client.post("/v1/quotes", json={"order": {**ORDER, field: value}})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["field"] == f"order.{field}"
    assert answer["message"] == message


@pytest.mark.parametrize(("field", "value", "message"), NONSENSE)
def test_a_batch_with_a_count_it_cannot_be_is_422(
    client: TestClient, field: str, value: float, message: str
) -> None:
    at = dt.datetime.now(dt.UTC).isoformat()
    good = {"order": ORDER, "ordered_at": at}
    body = {"orders": [good, {"order": {**ORDER, field: value}, "ordered_at": at}]}
    response = client.post("/v1/quotes/batch", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["field"]
    assert message in response.text


def test_whole_numbers_are_quoted(client: TestClient) -> None:
    response = client.post("/v1/quotes", json={"order": {**ORDER, "n_items": 2.0}})
    assert response.status_code == 201, response.text
