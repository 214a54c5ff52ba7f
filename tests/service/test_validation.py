"""Every bad input is a 4xx naming the field and saying why; the lenient cases are warnings."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from models.features import FeatureSchema
from tests.service.conftest import ORDER, ClientFactory

UTC = dt.UTC


def _schema(client: TestClient) -> FeatureSchema:
    schema: FeatureSchema = client.app.state.bundles.snapshot().bundle.engine.schema  # type: ignore[attr-defined]
    return schema


def _ago(**delta: float) -> str:
    return (dt.datetime.now(UTC) - dt.timedelta(**delta)).isoformat()


def _order(**changes: Any) -> dict[str, Any]:
    order = {**ORDER, **changes}
    return {name: value for name, value in order.items() if value is not ...}


BAD_QUOTES: dict[str, tuple[Any, str | None, str]] = {
    "unknown feature": ({"order": _order(colour="red")}, "order.colour", "unknown feature"),
    "missing feature": ({"order": _order(coating=...)}, "order.coating", "is missing"),
    "text for a number": (
        {"order": _order(n_items="two")},
        "order.n_items",
        "must be a number, got str",
    ),
    "true for a number": (
        {"order": _order(n_items=True)},
        "order.n_items",
        "must be a number, got bool",
    ),
    "object for a category": (
        {"order": _order(store_id={"id": "MAN"})},
        "order.store_id",
        "must be text, got dict",
    ),
    "list for a category": (
        {"order": _order(lens_type=["bifocal"])},
        "order.lens_type",
        "must be text, got list",
    ),
    "unseen category": (
        {"order": _order(store_id="GLA")},
        "order.store_id",
        "'GLA' was never seen in training; known: BHM, BRS",
    ),
    "far outside the range": (
        {"order": _order(sphere_power=1e6)},
        "order.sphere_power",
        "far outside the training range",
    ),
    "huge integer": ({"order": _order(n_items=10**400)}, "order.n_items", "far too large"),
    "order is not an object": ({"order": ["MAN"]}, "order", "valid dictionary"),
    "order is missing": ({"reference": "x"}, "order", "required"),
    "extra top-level field": ({"order": ORDER, "colour": "red"}, "colour", "Extra inputs"),
    "time without a zone": (
        {"order": ORDER, "ordered_at": "2026-11-20T10:00:00"},
        "ordered_at",
        "needs a time zone",
    ),
    "time in the future": (
        {"order": ORDER, "ordered_at": "2099-01-01T00:00:00Z"},
        "ordered_at",
        "is in the future",
    ),
    "time long ago": (
        {"order": ORDER, "ordered_at": _ago(days=30)},
        "ordered_at",
        "more than 7 days ago",
    ),
    "not a time": ({"order": ORDER, "ordered_at": "next tuesday"}, "ordered_at", "datetime"),
    "reference too long": (
        {"order": ORDER, "reference": "x" * 201},
        "reference",
        "at most 200 characters",
    ),
    "NUL in a reference": ({"order": ORDER, "reference": "a\x00b"}, "reference", "NUL"),
    "NUL in a feature name": ({"order": {**ORDER, "a\x00": 1}}, "order", "NUL"),
    "body is a list": ([ORDER], None, "valid dictionary"),
}


def test_each_bad_quote_request_is_422_naming_the_field(client: TestClient) -> None:
    for case, (body, field, words) in BAD_QUOTES.items():
        response = client.post("/v1/quotes", json=body)

        assert response.status_code == 422, (case, response.text)
        answer = response.json()
        assert answer["error"] == "invalid_input", case
        assert answer["field"] == field, (case, answer)
        assert words in answer["message"], (case, answer)
        assert answer["errors"][0]["field"] == field, case
    assert client.get("/v1/performance").json()["overall"]["quotes"] == 0


def test_non_finite_numbers_are_422(client: TestClient) -> None:
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        text = json.dumps({"order": ORDER}).replace(
            '"sphere_power": 1.5', f'"sphere_power": {literal}'
        )
        response = client.post(
            "/v1/quotes", content=text, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, literal
        assert response.json()["field"] == "order.sphere_power", literal
        assert "finite" in response.json()["message"], literal


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/quotes", content=b'{"order": {', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["message"]


def test_a_key_named_twice_is_refused_not_halved(client: TestClient) -> None:
    # json.loads would keep the last one: quote B for a body that also says A.
    order = json.dumps(ORDER)
    bodies = {
        "order": f'{{"order": {order}, "order": {order}}}',
        "store_id": '{"order": ' + order[:-1] + ', "store_id": "LDS"}}',
        "reference": f'{{"order": {order}, "reference": "A", "reference": "B"}}',
    }
    for key, body in bodies.items():
        for path in ("/v1/quotes", "/v1/quotes/batch"):
            sent = body if path == "/v1/quotes" else f'{{"orders": [{body}]}}'
            response = client.post(
                path, content=sent.encode(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (path, key)
            assert f"duplicate key {key!r}" in response.json()["message"], (path, key)
    # The same bodies with each key once are quoted.
    once = f'{{"order": {order}, "reference": "A"}}'
    response = client.post(
        "/v1/quotes", content=once.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/quotes", content=b"store=MAN", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422


def test_a_numeric_null_is_accepted_as_missing_with_a_warning(client: TestClient) -> None:
    response = client.post("/v1/quotes", json={"order": _order(sphere_power=None)})
    assert response.status_code == 201
    assert response.json()["warnings"] == ["sphere_power is missing; the quote is less certain"]


def test_a_category_null_is_accepted_as_missing_with_a_warning(client: TestClient) -> None:
    response = client.post("/v1/quotes", json={"order": _order(coating=None)})
    assert response.status_code == 201
    assert "coating is missing" in response.json()["warnings"][0]


def test_a_value_just_outside_the_range_is_a_warning(client: TestClient) -> None:
    [power] = [num for num in _schema(client).numeric if num.name == "sphere_power"]
    response = client.post("/v1/quotes", json={"order": _order(sphere_power=power.high + 0.5)})
    assert response.status_code == 201
    assert "outside the training range" in response.json()["warnings"][0]


def test_unseen_categories_can_be_accepted_with_a_warning(make_client: ClientFactory) -> None:
    client = make_client(unknown_categories="warn")
    response = client.post("/v1/quotes", json={"order": _order(store_id="GLA")})
    assert response.status_code == 201
    [warning] = response.json()["warnings"]
    assert "'GLA' was never seen in training" in warning
    assert warning.endswith("treated as missing")
    assert response.json()["segment"] == "all orders"  # its store is unknown: the global buffer


def test_a_small_clock_skew_is_allowed(client: TestClient) -> None:
    ahead = (dt.datetime.now(UTC) + dt.timedelta(minutes=2)).isoformat()
    assert client.post("/v1/quotes", json={"order": ORDER, "ordered_at": ahead}).status_code == 201


def test_a_time_in_another_zone_is_kept_as_the_same_instant(client: TestClient) -> None:
    local = dt.datetime.now(dt.timezone(dt.timedelta(hours=-5))).replace(microsecond=0)
    response = client.post("/v1/quotes", json={"order": ORDER, "ordered_at": local.isoformat()})
    assert dt.datetime.fromisoformat(response.json()["ordered_at"]) == local


def test_a_hostile_reference_is_stored_and_returned_intact(client: TestClient) -> None:
    reference = "<script>alert(1)</script>'; DROP TABLE quotes; -- \u202e\U0001f600"
    answer = client.post("/v1/quotes", json={"order": ORDER, "reference": reference}).json()
    assert answer["reference"] == reference
    assert client.get(f"/v1/quotes/{answer['quote_id']}").json()["reference"] == reference


BAD_KEYS = {"too long": "k" * 201, "a space": "two words", "empty": ""}


def test_a_bad_idempotency_key_is_422(client: TestClient) -> None:
    for case, key in BAD_KEYS.items():
        response = client.post(
            "/v1/quotes", json={"order": ORDER}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 422, case
        assert response.json()["field"] == "Idempotency-Key", case


def test_an_empty_batch_is_422(client: TestClient) -> None:
    response = client.post("/v1/quotes/batch", json={"orders": []})
    assert response.status_code == 422
    assert response.json()["field"] == "orders"


def test_a_batch_over_the_limit_is_422(make_client: ClientFactory) -> None:
    client = make_client(max_batch=2)
    response = client.post("/v1/quotes/batch", json={"orders": [{"order": ORDER}] * 3})
    assert response.status_code == 422
    assert response.json()["message"] == "at most 2 orders per batch; got 3"


def test_a_batch_with_a_bad_time_stores_nothing(client: TestClient) -> None:
    orders = [{"order": ORDER}, {"order": ORDER, "ordered_at": "2026-01-01T00:00:00"}]

    response = client.post("/v1/quotes/batch", json={"orders": orders})

    assert response.status_code == 422
    assert response.json()["field"] == "orders[1].ordered_at"
    assert client.get("/v1/performance").json()["overall"]["quotes"] == 0


def test_a_batch_with_bad_features_lists_every_bad_order(client: TestClient) -> None:
    orders = [
        {"order": ORDER},
        {"order": _order(lens_type="monocle")},
        {"order": _order(n_items="3")},
    ]
    response = client.post("/v1/quotes/batch", json={"orders": orders})
    answer = response.json()
    assert response.status_code == 422
    assert answer["field"] == "orders[1].order.lens_type"
    assert [e["field"] for e in answer["errors"]] == [
        "orders[1].order.lens_type",
        "orders[2].order.n_items",
    ]
    assert "(and 1 more)" in answer["message"]


def test_a_declared_oversized_body_is_413_before_parsing(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=2048)
    response = client.post(
        "/v1/quotes",
        content=b"{" + b" " * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_a_streamed_oversized_body_is_413(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"order": {}, "reference": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(
        "/v1/quotes", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_an_unknown_route_and_a_wrong_method_are_json_errors(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    wrong = client.delete("/v1/quotes")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_a_number_too_long_to_read_is_400(client: TestClient) -> None:
    text = '{"order": {"n_items": ' + "9" * 5000 + "}}"
    response = client.post("/v1/quotes", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"] == "There was an error parsing the body"
