"""The /v1 API end to end: quotes, look-ups, outcomes, performance, model, health, metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from service.ledger import Ledger
from tests.service.conftest import (
    ADMIN_KEY,
    ORDER,
    ClientFactory,
    SettingsFactory,
    bearer,
    quote_body,
    segment_of,
)

UTC = dt.UTC


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _quote(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/quotes", json={"order": ORDER, **body})
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_quote_answers_the_promise_and_the_numbers_behind_it(client: TestClient) -> None:
    ordered_at = (_now() - dt.timedelta(hours=1)).replace(microsecond=0)
    answer = _quote(client, ordered_at=ordered_at.isoformat(), reference="PO-17")

    assert answer["quote_id"].startswith("Q-")
    assert answer["reference"] == "PO-17"
    assert answer["unit"] == "day"
    assert answer["promised_by"] is None
    assert dt.date.fromisoformat(answer["promise_date"]) >= ordered_at.date()
    deadline = dt.datetime.fromisoformat(answer["deadline_at"])
    expected = dt.datetime.fromisoformat(answer["expected_completion"])
    assert deadline >= expected >= ordered_at
    assert dt.datetime.fromisoformat(answer["ordered_at"]) == ordered_at
    assert answer["buffer_hours"] >= 0 and answer["expected_hours"] > 0
    assert answer["promise_units"] >= 1
    assert answer["policy"] == "conformal" and answer["target_late_rate"] == 0.05
    assert answer["segment"] == segment_of(client, "MAN")
    assert answer["time_zone"] == "Europe/London"
    assert answer["explanation"].startswith("We expect")
    assert answer["warnings"] == [] and answer["outcome"] is None
    assert answer["model_version"] == client.get("/v1/model").json()["version"]


def test_a_quote_is_stored_before_it_is_answered(client: TestClient) -> None:
    answer = _quote(client)
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]

    stored = ledger.quotes.get(answer["quote_id"])

    assert stored.features == ORDER
    assert stored.promise.deadline_at == dt.datetime.fromisoformat(answer["deadline_at"])
    assert client.get(f"/v1/quotes/{answer['quote_id']}").json() == answer


def test_ordered_at_defaults_to_now(client: TestClient) -> None:
    before = _now()
    answer = _quote(client)
    assert before <= dt.datetime.fromisoformat(answer["ordered_at"]) <= _now()


def test_a_batch_is_quoted_in_order_and_stored_whole(client: TestClient) -> None:
    orders = [quote_body(store_id=store) for store in ("MAN", "BHM", "LDN-OXF")]
    orders[1]["reference"] = "second"

    response = client.post("/v1/quotes/batch", json={"orders": orders})

    assert response.status_code == 201, response.text
    quotes = response.json()["quotes"]
    assert [q["segment"] for q in quotes] == [
        segment_of(client, store) for store in ("MAN", "BHM", "LDN-OXF")
    ]
    assert quotes[1]["reference"] == "second"
    assert len({q["quote_id"] for q in quotes}) == 3
    for quote in quotes:
        assert client.get(f"/v1/quotes/{quote['quote_id']}").json() == quote


def test_a_batch_quotes_like_single_requests(client: TestClient) -> None:
    ordered_at = (_now() - dt.timedelta(minutes=5)).isoformat()
    single = _quote(client, ordered_at=ordered_at)
    batch = client.post(
        "/v1/quotes/batch", json={"orders": [{"order": ORDER, "ordered_at": ordered_at}]}
    )
    [from_batch] = batch.json()["quotes"]
    for name in ("deadline_at", "expected_hours", "buffer_hours", "promise_date", "explanation"):
        assert from_batch[name] == single[name]


def test_an_unknown_quote_id_is_404(client: TestClient) -> None:
    response = client.get("/v1/quotes/Q-NOPE-NOPE-NOPE")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "Q-NOPE-NOPE-NOPE" in response.json()["message"]


def test_hostile_quote_ids_are_404_not_errors(client: TestClient) -> None:
    for quote_id in ("'; DROP TABLE quotes; --", "%00", "x" * 500, "\u202e%00", "%ED%A0%80"):
        response = client.get(f"/v1/quotes/{quote_id}")
        assert response.status_code == 404, quote_id


def test_an_outcome_is_recorded_once(client: TestClient) -> None:
    answer = _quote(client)
    url = f"/v1/quotes/{answer['quote_id']}/outcome"
    fulfilled = _now().isoformat()

    first = client.post(url, json={"fulfilled_at": fulfilled})
    again = client.post(url, json={"fulfilled_at": fulfilled})
    other = client.post(url, json={"fulfilled_at": (_now() + dt.timedelta(seconds=1)).isoformat()})

    assert first.status_code == 201, first.text
    assert first.json()["outcome"]["was_late"] is False
    assert first.json()["outcome"]["late_hours"] == 0
    assert again.status_code == 200 and again.json() == first.json()
    assert other.status_code == 409
    assert "already has an outcome" in other.json()["message"]
    assert (
        client.get(f"/v1/quotes/{answer['quote_id']}").json()["outcome"]
        == (first.json()["outcome"])
    )


def test_a_late_outcome_says_how_late(make_client: ClientFactory) -> None:
    client = make_client(max_order_age_days=90)
    answer = _quote(client, ordered_at=(_now() - dt.timedelta(days=60)).isoformat())
    deadline = dt.datetime.fromisoformat(answer["deadline_at"])
    fulfilled = deadline + dt.timedelta(hours=30)

    response = client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": fulfilled.isoformat()}
    )

    assert response.status_code == 201
    assert response.json()["outcome"]["was_late"] is True
    assert response.json()["outcome"]["late_hours"] == 30


def test_outcome_errors_are_clear(client: TestClient) -> None:
    answer = _quote(client, ordered_at=(_now() - dt.timedelta(hours=2)).isoformat())
    url = f"/v1/quotes/{answer['quote_id']}/outcome"
    cases = {
        "unknown quote": (
            "/v1/quotes/Q-0000-0000-0000/outcome",
            {"fulfilled_at": _now().isoformat()},
            404,
            "no quote",
        ),
        "naive time": (url, {"fulfilled_at": "2026-01-01T10:00:00"}, 422, "time zone"),
        "future": (
            url,
            {"fulfilled_at": (_now() + dt.timedelta(days=2)).isoformat()},
            422,
            "in the future",
        ),
        "before the order": (
            url,
            {"fulfilled_at": (_now() - dt.timedelta(days=1)).isoformat()},
            422,
            "before the order",
        ),
        "missing": (url, {}, 422, "required"),
        "not a time": (url, {"fulfilled_at": "yesterday"}, 422, "datetime"),
    }
    for name, (path, body, status, words) in cases.items():
        response = client.post(path, json=body)
        assert response.status_code == status, name
        assert words in response.json()["message"], (name, response.json())


def test_performance_counts_quotes_outcomes_and_late_ones(make_client: ClientFactory) -> None:
    client = make_client(max_order_age_days=90)
    start = _now()
    late = _quote(client, ordered_at=(_now() - dt.timedelta(days=60)).isoformat())
    on_time = _quote(client, ordered_at=(_now() - dt.timedelta(hours=1)).isoformat())
    _quote(client)  # still open
    late_at = dt.datetime.fromisoformat(late["deadline_at"]) + dt.timedelta(hours=1)
    on_time_at = dt.datetime.fromisoformat(on_time["ordered_at"]) + dt.timedelta(minutes=30)
    for quote, when in ((late, late_at), (on_time, on_time_at)):
        response = client.post(
            f"/v1/quotes/{quote['quote_id']}/outcome", json={"fulfilled_at": when.isoformat()}
        )
        assert response.status_code == 201

    report = client.get("/v1/performance", params={"since": start.isoformat()}).json()

    overall = report["overall"]
    assert (overall["quotes"], overall["outcomes"], overall["late"]) == (3, 2, 1)
    assert overall["late_rate"] == 0.5
    assert overall["target_late_rate"] == 0.05
    assert overall["status"] == "above target"
    low, high = overall["late_rate_interval"]
    assert 0 < low < 0.5 < high < 1
    assert report["segments"] == [{**overall, "segment": late["segment"]}]
    empty = client.get("/v1/performance", params={"until": start.isoformat()}).json()
    assert empty["overall"]["quotes"] == 0
    assert empty["overall"]["status"] == "no outcomes"


def test_performance_window_errors_are_422(client: TestClient) -> None:
    naive = client.get("/v1/performance", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "since"
    reversed_window = client.get(
        "/v1/performance", params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert reversed_window.status_code == 422
    assert "before until" in reversed_window.json()["message"]


def test_model_shows_the_bundle_in_use(client: TestClient) -> None:
    model = client.get("/v1/model").json()
    assert model["policy"] == "conformal"
    assert model["target_late_rate"] == 0.05
    assert model["unit"] == "day"
    assert model["segments_by"] == ["store_id"]
    assert "MAN" in model["feature_schema"]["categorical"]["store_id"]
    assert model["fit"]["n_train"] > 0
    assert isinstance(model["backtest"], dict)


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["ledger"] == "ok"


def test_not_ready_without_a_promoted_model(
    make_client: ClientFactory, make_settings: SettingsFactory, tmp_path: Any
) -> None:
    client = make_client(make_settings(registry=tmp_path / "empty"))

    ready = client.get("/readyz")
    quote = client.post("/v1/quotes", json=quote_body())

    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert ready.json()["ready"] is False
    assert "no model is promoted" in ready.json()["model_error"]
    assert quote.status_code == 503 and quote.headers["Retry-After"] == "5"
    assert quote.json()["error"] == "unavailable"
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_quotes_outcomes_and_the_live_late_rate(client: TestClient) -> None:
    answer = _quote(client)
    client.post(
        f"/v1/quotes/{answer['quote_id']}/outcome", json={"fulfilled_at": _now().isoformat()}
    )
    client.get("/v1/quotes/Q-0000-0000-0000")

    text = client.get("/metrics", headers=bearer(ADMIN_KEY)).text

    assert 'promise_http_requests_total{method="POST",route="/v1/quotes",status="201"} 1.0' in text
    assert 'route="/v1/quotes/{quote_id}",status="404"' in text
    assert "promise_http_request_duration_seconds_bucket" in text
    assert 'promise_quotes_total{kind="single"} 1.0' in text
    assert 'promise_outcomes_total{late="false",source="api"} 1.0' in text
    assert 'promise_live_late_rate{segment="(overall)"} 0.0' in text
    assert f'promise_live_quotes{{segment="{answer["segment"]}"}} 1.0' in text
    assert "promise_ledger_up 1.0" in text
    assert "promise_model_info{" in text


def test_the_openapi_schema_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/quotes",
        "/v1/quotes/batch",
        "/v1/quotes/{quote_id}",
        "/v1/quotes/{quote_id}/outcome",
        "/v1/performance",
        "/v1/model",
        "/v1/model/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    created = paths["/v1/quotes"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith("QuoteResponse")
    assert created["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert "/" not in paths  # the web form is not part of the API
    assert client.get("/docs").status_code == 200
