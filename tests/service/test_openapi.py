"""The OpenAPI document is typed by the served model (issue 20): a client generated from it
sends exactly the orders the model takes, calls operations by readable names, knows which key
each needs and which error codes each answer may carry."""

from __future__ import annotations

import re
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from models.features import TIME_FEATURES
from tests.service.conftest import (
    ADMIN_KEY,
    ClientFactory,
    SettingsFactory,
    bearer,
    promote_other_schema,
)


def _document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def test_the_order_schema_is_the_served_models(client: TestClient) -> None:
    document = _document(client)
    engine = client.app.state.bundles.snapshot().bundle.engine  # type: ignore[attr-defined]
    order = document["components"]["schemas"]["Order"]
    schema = engine.schema
    assert set(order["properties"]) == set(schema.feature_names) == set(order["required"])
    assert not set(order["properties"]) & set(TIME_FEATURES)  # derived: never an input
    assert order["additionalProperties"] is False
    for cat in schema.categorical:
        assert order["properties"][cat.name]["enum"] == [*sorted(cat.known), None]
    for num in schema.numeric:
        assert "Trained on" in order["properties"][num.name]["description"]
    request = document["components"]["schemas"]["QuoteRequest"]["properties"]["order"]
    assert request["$ref"] == "#/components/schemas/Order"
    version = client.get("/v1/model").json()["version"]
    assert document["info"]["version"] == f"{installed_version('promise-engine')}+model.{version}"
    # The schema's own example is an order the service quotes.
    quoted = client.post("/v1/quotes", json={"order": order["example"]})
    assert quoted.status_code == 201, quoted.text


def test_operations_have_readable_ids_roles_and_error_codes(client: TestClient) -> None:
    operations = [
        (path, method, operation)
        for path, item in _document(client)["paths"].items()
        for method, operation in item.items()
    ]
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", name) for name in ids), ids
    by_id = {operation["operationId"]: operation for _, _, operation in operations}
    assert by_id["createQuote"]["x-roles"] == ["pos", "staff"]
    assert by_id["reloadModel"]["x-roles"] == ["admin"]
    assert "Needs a admin key" not in by_id["reloadModel"]["description"]
    assert "x-roles" not in by_id["healthz"]
    for path, _, operation in operations:
        if path.startswith("/v1/"):
            assert operation["x-roles"], path
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["x-error-codes"], (path, status)
    created = by_id["createQuote"]["responses"]["201"]
    assert "Idempotent-Replayed" in created["headers"]
    assert "Retry-After" in by_id["createQuote"]["responses"]["503"]["headers"]


def test_the_document_follows_the_served_model(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    other_schema: Path,
) -> None:
    client = make_client(make_settings())
    before = _document(client)
    assert "coating" in before["components"]["schemas"]["Order"]["properties"]
    version = promote_other_schema(other_schema, registry_root)
    forced = client.post("/v1/model/reload", params={"force": True}, headers=bearer(ADMIN_KEY))
    assert forced.status_code == 200, forced.text
    after = _document(client)
    assert after["info"]["version"].endswith(f"+model.{version}")
    assert "coating" not in after["components"]["schemas"]["Order"]["properties"]
