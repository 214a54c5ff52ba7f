"""The OpenAPI document says what the lists and limits really are (issue 20): the paged
answers' `total`, `count` and `next_cursor`, the `cursor` parameter and its 422, `within`'s
exact format, `ordered_at`'s limits and the batch size from the settings, the body limits'
and the key throttle's answers, and the model's order fields apart from its derived ones."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from models.features import TIME_FEATURES
from tests.service.conftest import ClientFactory


def _document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }


def test_the_lists_document_their_paging(client: TestClient) -> None:
    document = _document(client)
    schemas = document["components"]["schemas"]
    for name, items in (("AtRiskResponse", "orders"), ("QuoteListResponse", "quotes")):
        properties = schemas[name]["properties"]
        assert {"total", "count", "next_cursor", items} <= set(properties), name
        assert "every page" in properties["total"]["description"]
        assert "this page" in properties["count"]["description"]
        assert "cursor" in properties["next_cursor"]["description"]
    operations = _operations(document)
    assert document["paths"]["/v1/quotes"]["get"]["operationId"] == "findQuotes"
    assert operations["findQuotes"]["x-roles"] == ["pos", "staff"]
    for name in ("findQuotes", "getAtRisk"):
        parameters = {p["name"]: p for p in operations[name]["parameters"]}
        assert "next_cursor" in parameters["cursor"]["description"]
        assert "`cursor`" in operations[name]["responses"]["422"]["description"]
    reference = {p["name"]: p for p in operations["findQuotes"]["parameters"]}["reference"]
    assert "reference" in reference["description"]


def test_within_documents_the_format_it_takes(client: TestClient) -> None:
    operation = _operations(_document(client))["getAtRisk"]
    within = {p["name"]: p for p in operation["parameters"]}["within"]
    assert within["schema"]["format"] == "duration"
    pattern = re.compile(within["schema"]["pattern"])
    for taken in ("P7D", "PT12H", "P1W", "P1DT6H30M"):
        assert pattern.match(taken), taken
        assert client.get("/v1/at-risk", params={"within": taken}).status_code == 200
    for refused in ("604800", "7d", "P1M", "PT", "P"):
        assert not pattern.match(refused), refused
        assert client.get("/v1/at-risk", params={"within": refused}).status_code == 422


def test_the_limits_are_the_services_own(make_client: ClientFactory) -> None:
    client = make_client(max_order_age_days=3.5, clock_skew_seconds=90, max_batch=40)
    schemas = _document(client)["components"]["schemas"]
    ordered_at = schemas["QuoteRequest"]["properties"]["ordered_at"]["description"]
    assert "more than 3.5 days ago" in ordered_at and "more than 90 seconds ahead" in ordered_at
    assert schemas["BatchQuoteRequest"]["properties"]["orders"]["maxItems"] == 40


def test_body_limits_and_the_key_throttle_are_documented(client: TestClient) -> None:
    for name, operation in _operations(_document(client)).items():
        responses = operation["responses"]
        if "requestBody" in operation:
            for status, code in (("400", "bad_request"), ("408", "timeout"), ("413", "too_large")):
                assert responses[status]["x-error-codes"] == [code], (name, status)
        if operation.get("x-roles"):
            assert responses["429"]["x-error-codes"] == ["too_many_requests"], name
            assert "Retry-After" in responses["429"]["headers"], name
        else:
            assert "429" not in responses, name


def test_the_model_names_the_fields_an_order_sends(client: TestClient) -> None:
    model = client.get("/v1/model").json()
    engine = client.app.state.bundles.snapshot().bundle.engine  # type: ignore[attr-defined]
    assert model["order_fields"] == list(engine.schema.feature_names)
    assert set(model["derived_fields"]) == set(model["feature_schema"]["columns"]) - set(
        model["order_fields"]
    )
    assert set(model["derived_fields"]) <= set(TIME_FEATURES) and model["derived_fields"]
