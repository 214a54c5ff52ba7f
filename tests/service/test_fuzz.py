"""The API against its own OpenAPI schema: generated requests never get a 5xx and every answer
matches what the schema documents; every documented status can really be produced.

The long run (1,000 requests per operation) is `make fuzz` (`python -m tests.service.fuzz`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from models.registry import MODEL_FILE, Registry
from tests.service.conftest import (
    ADMIN_KEY,
    POS_KEY,
    STAFF_KEY,
    ClientFactory,
    SettingsFactory,
    TrainedBundles,
    bearer,
    promote_other_schema,
    quote_body,
)
from tests.service.fuzz import FuzzReport, fuzz_operation, operations
from tests.service.servers import free_port

EXAMPLES_PER_OPERATION = 30
OLD_ORDERS = {"max_order_age_days": 60.0}
CREDENTIALS: list[str | None] = [POS_KEY, POS_KEY, STAFF_KEY, ADMIN_KEY, ADMIN_KEY, None, "x" * 20]


@pytest.fixture
def sqlite_only(database_url: str) -> str:
    if not database_url.startswith("sqlite"):
        pytest.skip("the schema is the same on PostgreSQL; fuzzed once, on SQLite")
    return database_url


def test_generated_requests_get_documented_answers(
    sqlite_only: str, make_client: ClientFactory
) -> None:
    # Random credentials fail most of the time: the throttle (tested on its own) would answer
    # them all 429 after the first few.
    client = make_client(auth_failures_allowed=100_000)
    report = FuzzReport()
    for operation in operations(client.app):  # type: ignore[arg-type]
        fuzz_operation(operation, CREDENTIALS, EXAMPLES_PER_OPERATION, report)

    assert report.server_errors == 0
    assert all(n > 0 for n in report.sent.values())


Probe = Callable[[], httpx.Response]


def test_every_documented_status_is_reachable(
    sqlite_only: str,
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
    other_schema: Path,
    tmp_path: Path,
) -> None:
    # Every 401 probe is a failed key: more than the throttle lets one address make.
    client = make_client(auth_failures_allowed=1_000)
    quote_id = client.post("/v1/quotes", json=quote_body()).json()["quote_id"]
    open_id = client.post("/v1/quotes", json=quote_body()).json()["quote_id"]  # no outcome
    ordered_at = client.get(f"/v1/quotes/{quote_id}").json()["ordered_at"]
    # Services of their own ledger: on the shared one, the model it says is served (with its
    # files kept there) would be served from any registry folder.
    no_model = make_client(
        make_settings(registry=tmp_path / "empty", database_url=_own_ledger(tmp_path, "none"))
    )
    # The ledger on a closed loopback port: the service starts, not ready.
    down = make_client(
        make_settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    )
    small = make_client(max_body_bytes=1024)
    # Orders placed 20 days ago are overdue: their promise may be revised.
    old = make_client(**OLD_ORDERS)
    overdue_id = _placed(old, days_ago=20)
    # A bundle without open-order risk distributions (`risk=None`): risks are a 409 there.
    no_risk = make_client(
        make_settings(
            registry=_without_risks(registry_root, tmp_path / "no-risk"),
            database_url=_own_ledger(tmp_path, "no-risk"),
            **OLD_ORDERS,
        )
    )
    no_risk_id = _placed(no_risk, days_ago=20)
    # One failed key and this service's throttle refuses every key from the address: 429.
    throttled = make_client(auth_failures_allowed=1)
    assert throttled.get("/v1/model", headers=bearer("nope-0123456789")).status_code == 401
    client.post("/v1/quotes", json={**quote_body(), "reference": "PO-FUZZ"})
    admin, staff = bearer(ADMIN_KEY), bearer(STAFF_KEY)
    huge_number = '{"order": {"n_items": ' + "9" * 5000 + "}}"
    huge_outcome = '{"fulfilled_at": ' + "9" * 5000 + "}"
    json_type = {"content-type": "application/json"}

    def post(c: TestClient, path: str, body: Any = None, **headers: str) -> Probe:
        return lambda: c.post(path, json=body, headers=headers)

    def get(c: TestClient, path: str, **headers: str) -> Probe:
        return lambda: c.get(path, headers=headers)

    def raw(c: TestClient, path: str, text: str, **headers: str) -> Probe:
        return lambda: c.post(path, content=text, headers={**json_type, **headers})

    def put(c: TestClient, path: str, body: Any = None, **headers: str) -> Probe:
        return lambda: c.put(path, json=body, headers=headers)

    def raw_put(c: TestClient, path: str, text: str) -> Probe:
        return lambda: c.put(path, content=text, headers=json_type)

    batch = {"orders": [quote_body()]}
    outcome = {"fulfilled_at": ordered_at}
    later_outcome = {"fulfilled_at": "2100-01-01T00:00:00Z"}
    big = "x" * 2048
    risk, revise = f"/v1/quotes/{quote_id}/risk", f"/v1/quotes/{quote_id}/revise"
    outcome_of, open_outcome = f"/v1/quotes/{quote_id}/outcome", f"/v1/quotes/{open_id}/outcome"
    unknown_outcome = "/v1/quotes/Q-0000-0000-0000/outcome"
    correction = {"fulfilled_at": ordered_at, "reason": "recorded on the wrong day"}
    huge_correction = '{"reason": "typo", "fulfilled_at": ' + "9" * 5000 + "}"
    contacts = f"/v1/quotes/{quote_id}/contacts"
    note = {"note": "left a voicemail"}
    probes: dict[tuple[str, str], dict[int, Probe]] = {
        ("POST", "/v1/quotes"): {
            201: post(client, "/v1/quotes", quote_body()),
            400: raw(client, "/v1/quotes", huge_number),
            401: post(client, "/v1/quotes", quote_body(), Authorization="Bearer nope-0123456789"),
            403: post(client, "/v1/quotes", quote_body(), **admin),
            409: lambda: (
                client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": "k1"}),
                client.post(
                    "/v1/quotes", json=quote_body(n_items=2), headers={"Idempotency-Key": "k1"}
                ),
            )[1],
            413: raw(small, "/v1/quotes", big),
            422: post(client, "/v1/quotes", {"order": {}}),
            503: post(no_model, "/v1/quotes", quote_body()),
        },
        ("POST", "/v1/quotes/batch"): {
            201: post(client, "/v1/quotes/batch", batch),
            400: raw(client, "/v1/quotes/batch", '{"orders": [' + huge_number + "]}"),
            401: post(client, "/v1/quotes/batch", batch, Authorization="Bearer nope-0123456789"),
            403: post(client, "/v1/quotes/batch", batch, **admin),
            409: lambda: (
                client.post("/v1/quotes/batch", json=batch, headers={"Idempotency-Key": "k2"}),
                client.post(
                    "/v1/quotes/batch", json={"orders": []}, headers={"Idempotency-Key": "k2"}
                ),
                client.post(
                    "/v1/quotes/batch",
                    json={"orders": [quote_body(n_items=3)]},
                    headers={"Idempotency-Key": "k2"},
                ),
            )[2],
            413: raw(small, "/v1/quotes/batch", big),
            422: post(client, "/v1/quotes/batch", {"orders": []}),
            503: post(no_model, "/v1/quotes/batch", batch),
        },
        ("GET", "/v1/quotes/{quote_id}"): {
            200: get(client, f"/v1/quotes/{quote_id}"),
            401: get(client, f"/v1/quotes/{quote_id}", Authorization="Bearer nope-0123456789"),
            403: get(client, f"/v1/quotes/{quote_id}", **admin),
            404: get(client, "/v1/quotes/Q-0000-0000-0000"),
            503: get(down, f"/v1/quotes/{quote_id}"),
        },
        ("POST", "/v1/quotes/{quote_id}/outcome"): {
            201: post(client, f"/v1/quotes/{quote_id}/outcome", outcome),
            200: post(client, f"/v1/quotes/{quote_id}/outcome", outcome),
            400: raw(client, f"/v1/quotes/{quote_id}/outcome", huge_outcome),
            401: post(client, f"/v1/quotes/{quote_id}/outcome", outcome, Authorization="Bearer x"),
            403: post(client, f"/v1/quotes/{quote_id}/outcome", outcome, **admin),
            404: post(client, "/v1/quotes/Q-0000-0000-0000/outcome", outcome),
            409: lambda: client.post(
                f"/v1/quotes/{quote_id}/outcome",
                json={"fulfilled_at": _later(ordered_at)},
            ),
            413: raw(small, f"/v1/quotes/{quote_id}/outcome", big),
            422: post(client, f"/v1/quotes/{quote_id}/outcome", later_outcome),
            503: post(down, f"/v1/quotes/{quote_id}/outcome", outcome),
        },
        ("GET", "/v1/quotes"): {
            200: get(client, "/v1/quotes?reference=PO-FUZZ"),
            401: get(
                client, "/v1/quotes?reference=PO-FUZZ", Authorization="Bearer nope-0123456789"
            ),
            403: get(client, "/v1/quotes?reference=PO-FUZZ", **admin),
            422: get(client, "/v1/quotes?cursor=not-a-cursor"),
            503: get(down, "/v1/quotes?reference=PO-FUZZ"),
        },
        ("GET", "/v1/quotes/{quote_id}/outcome"): {
            200: get(client, outcome_of),
            401: get(client, outcome_of, Authorization="Bearer nope-0123456789"),
            403: get(client, outcome_of, **admin),
            404: get(client, unknown_outcome),
            409: get(client, open_outcome),
            503: get(down, outcome_of),
        },
        ("PUT", "/v1/quotes/{quote_id}/outcome"): {
            200: put(client, outcome_of, correction),
            400: raw_put(client, outcome_of, huge_correction),
            401: put(client, outcome_of, correction, Authorization="Bearer nope-0123456789"),
            403: put(client, outcome_of, correction, **admin),
            404: put(client, unknown_outcome, correction),
            409: put(client, open_outcome, correction),
            413: lambda: small.put(outcome_of, content=big, headers=json_type),
            422: put(client, outcome_of, {"fulfilled_at": ordered_at}),
            503: put(down, outcome_of, correction),
        },
        ("GET", "/v1/quotes/{quote_id}/risk"): {
            200: get(client, risk),
            401: get(client, risk, Authorization="Bearer nope-0123456789"),
            403: get(client, risk, **admin),
            404: get(client, "/v1/quotes/Q-0000-0000-0000/risk"),
            409: get(no_risk, f"/v1/quotes/{no_risk_id}/risk"),
            503: get(down, risk),
        },
        ("GET", "/v1/at-risk"): {
            200: get(client, "/v1/at-risk"),
            401: get(client, "/v1/at-risk", Authorization="Bearer nope-0123456789"),
            403: get(client, "/v1/at-risk", **admin),
            409: get(no_risk, "/v1/at-risk"),
            422: get(client, "/v1/at-risk?within=P400D"),
            503: get(down, "/v1/at-risk"),
        },
        ("POST", "/v1/quotes/{quote_id}/revise"): {
            201: post(old, f"/v1/quotes/{overdue_id}/revise"),
            401: post(client, revise, Authorization="Bearer nope-0123456789"),
            403: post(client, revise, **admin),
            404: post(client, "/v1/quotes/Q-0000-0000-0000/revise"),
            409: post(client, revise),  # a fresh promise keeps the target: no_revision_needed
            422: post(client, revise, **{"Idempotency-Key": "k" * 201}),
            503: post(down, revise),
        },
        ("POST", "/v1/quotes/{quote_id}/contacts"): {
            201: post(client, contacts, note),
            400: raw(client, contacts, '{"note": ' + "9" * 5000 + "}"),
            401: post(client, contacts, note, Authorization="Bearer nope-0123456789"),
            403: post(client, contacts, note, **admin),
            404: post(client, "/v1/quotes/Q-0000-0000-0000/contacts", note),
            413: raw(small, contacts, big),
            422: post(client, contacts, {"note": "x" * 1001}),
            503: post(down, contacts, note),
        },
        ("GET", "/v1/performance"): {
            200: get(client, "/v1/performance"),
            401: get(client, "/v1/performance", Authorization="Bearer nope-0123456789"),
            422: get(client, "/v1/performance?since=2020-01-01"),
            503: get(down, "/v1/performance"),
        },
        ("GET", "/v1/model"): {
            200: get(client, "/v1/model"),
            401: get(client, "/v1/model", Authorization="Bearer nope-0123456789"),
            503: get(no_model, "/v1/model"),
        },
        ("POST", "/v1/model/reload"): {
            200: post(client, "/v1/model/reload", None, **admin),
            401: post(client, "/v1/model/reload", None, Authorization="Bearer nope-0123456789"),
            403: post(client, "/v1/model/reload", None, **staff),
            404: post(no_model, "/v1/model/reload", None, **admin),
            409: lambda: (promote_other_schema(other_schema, registry_root), _reload(client))[1],
            422: lambda: (
                Registry(registry_root).promote(trained.conformal, force=True),
                _tamper(registry_root, trained.conformal),
                _reload(client),
            )[2],
            503: post(down, "/v1/model/reload", None, **admin),
        },
        ("GET", "/healthz"): {200: get(client, "/healthz")},
        ("GET", "/readyz"): {200: get(client, "/readyz"), 503: get(down, "/readyz")},
        ("GET", "/metrics"): {
            200: get(client, "/metrics", **admin),
            401: get(client, "/metrics", Authorization="Bearer nope-0123456789"),
            403: get(client, "/metrics"),
        },
    }
    for (method, path), by_status in probes.items():
        if 401 in by_status:  # every route that takes a key
            concrete = path.replace("{quote_id}", quote_id)
            by_status[429] = lambda m=method, p=concrete: throttled.request(m, p)
    schema = client.get("/openapi.json").json()
    documented = {
        # 408 needs a body trickled over a real socket, which a TestClient cannot send:
        # tests/service/test_body_timeout.py and test_client_errors.py reach it.
        (method.upper(), path): {int(code) for code in spec["responses"]} - {408}
        for path, item in schema["paths"].items()
        for method, spec in item.items()
    }
    assert set(documented) == set(probes)
    codes = {
        (method.upper(), path): {
            int(status): set(answer.get("x-error-codes", ()))
            for status, answer in spec["responses"].items()
        }
        for path, item in schema["paths"].items()
        for method, spec in item.items()
    }
    reached = {}
    undocumented_codes = set()
    for where, by_status in probes.items():
        reached[where] = {}
        for status, probe in by_status.items():
            answer = probe()
            reached[where][status] = answer.status_code
            if answer.status_code >= 400 and where[1].startswith("/v1/"):
                code = answer.json()["error"]
                if code not in codes[where].get(answer.status_code, set()):
                    undocumented_codes.add((where, answer.status_code, code))
        assert set(by_status) == documented[where], where
    unreached = {
        (where, wanted, got)
        for where, pairs in reached.items()
        for wanted, got in pairs.items()
        if wanted != got
    }
    assert unreached == set()
    assert undocumented_codes == set()  # every error code an answer carried is documented


def _own_ledger(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / f'{name}.db'}"


def _placed(client: TestClient, days_ago: float) -> str:
    ordered_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    body = {**quote_body(), "ordered_at": ordered_at.isoformat()}
    response = client.post("/v1/quotes", json=body)
    assert response.status_code == 201, response.text
    quote_id: str = response.json()["quote_id"]
    return quote_id


def _without_risks(registry_root: Path, root: Path) -> Path:
    """A registry whose promoted bundle is the served one saved with `risk=None`, as the engine
    marks a bundle without risk distributions."""
    source = Registry(registry_root)
    loaded = source.load_promoted()
    manifest = loaded.manifest
    target = Registry(root)
    model = source.load_model(manifest.version)
    without = dataclasses.replace(model, engine=dataclasses.replace(model.engine, risk=None))
    saved = target.save(without, manifest.info, dt.datetime.fromisoformat(manifest.created_at))
    target.promote(saved.version)
    return root


def _later(ordered_at: str) -> str:
    return (dt.datetime.fromisoformat(ordered_at) + dt.timedelta(minutes=1)).isoformat()


def _tamper(registry_root: Path, version: str) -> None:
    with (registry_root / version / MODEL_FILE).open("ab") as handle:
        handle.write(b"not what the manifest hashed")


def _reload(client: TestClient) -> httpx.Response:
    return client.post("/v1/model/reload", headers=bearer(ADMIN_KEY))
