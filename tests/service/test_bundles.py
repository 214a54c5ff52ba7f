"""Model reload: an atomic swap to the promoted bundle, the old one kept when the new one fails,
and every worker following a reload made by another."""

from __future__ import annotations

from pathlib import Path

from models.registry import MODEL_FILE, PROMOTED_FILE, Registry
from tests.service.conftest import (
    ADMIN_KEY,
    ClientFactory,
    SettingsFactory,
    TrainedBundles,
    bearer,
    quote_body,
)

ADMIN = bearer(ADMIN_KEY)


def _tamper(registry_root: Path, version: str) -> None:
    with (registry_root / version / MODEL_FILE).open("ab") as handle:
        handle.write(b"not what the manifest hashed")


def test_reload_swaps_to_the_promoted_bundle(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    client = make_client()
    Registry(registry_root).promote(trained.adaptive)

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert response.status_code == 200
    assert response.json()["previous_version"] == trained.conformal
    assert response.json()["version"] == trained.adaptive
    assert response.json()["changed"] is True
    assert client.get("/v1/model").json()["version"] == trained.adaptive
    assert client.post("/v1/quotes", json=quote_body()).json()["policy"] == "adaptive"


def test_a_tampered_bundle_is_refused_and_the_old_one_keeps_serving(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    client = make_client()
    Registry(registry_root).promote(trained.adaptive)
    _tamper(registry_root, trained.adaptive)

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_bundle"
    message = response.json()["message"]
    assert "does not match its manifest's sha256" in message
    assert f"still serving {trained.conformal}" in message
    assert client.get("/v1/model").json()["version"] == trained.conformal
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201
    assert client.get("/readyz").status_code == 200


def test_reload_with_nothing_promoted_is_404_and_keeps_serving(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    client = make_client()
    (registry_root / PROMOTED_FILE).unlink()

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert response.status_code == 404
    assert "no model is promoted" in response.json()["message"]
    assert client.get("/v1/model").json()["version"] == trained.conformal


def test_a_tampered_bundle_at_start_leaves_the_service_not_ready(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    _tamper(registry_root, trained.conformal)
    client = make_client()

    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert "sha256" in ready.json()["model_error"]
    assert client.post("/v1/quotes", json=quote_body()).status_code == 503
    assert client.get("/v1/model").status_code == 503


def test_a_service_without_a_model_becomes_ready_on_reload(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    tmp_path: Path,
    trained: TrainedBundles,
) -> None:
    empty = tmp_path / "later"
    client = make_client(make_settings(registry=empty))
    assert client.get("/readyz").status_code == 503
    empty.mkdir()
    for item in trained.root.iterdir():
        (empty / item.name).symlink_to(item)

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert response.status_code == 200 and response.json()["previous_version"] is None
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201


def test_other_workers_follow_a_reload(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
) -> None:
    first = make_client(make_settings())
    second = make_client(make_settings())
    Registry(registry_root).promote(trained.adaptive)

    assert first.post("/v1/model/reload", headers=ADMIN).status_code == 200

    assert second.get("/v1/model").json()["version"] == trained.adaptive
    assert second.post("/v1/quotes", json=quote_body()).json()["model_version"] == (
        trained.adaptive
    )


def test_a_worker_that_starts_later_serves_what_the_others_serve(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
) -> None:
    first = make_client(make_settings())
    assert first.get("/v1/model").json()["version"] == trained.conformal  # serving: the choice
    Registry(registry_root).promote(trained.adaptive)
    later = make_client(make_settings())  # a worker restarted after the promotion ...

    # ... serves what the others serve: a promotion alone changes nothing that runs.
    assert later.get("/v1/model").json()["version"] == trained.conformal
    assert first.get("/v1/model").json()["version"] == trained.conformal
