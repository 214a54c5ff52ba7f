"""A damaged promoted bundle (tampered, truncated, half-written manifest, a missing file):
refused with a message naming the cause; at start the service is not ready, on reload the old
bundle keeps serving. A bundle made with other library versions serves: nothing is unpickled."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from models.registry import MANIFEST_FILE, MODEL_FILE, SERVING_JSON, SERVING_NPZ, Registry
from tests.service.conftest import (
    ADMIN_KEY,
    ClientFactory,
    TrainedBundles,
    bearer,
    quote_body,
)


def _tamper(folder: Path) -> None:
    with (folder / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")


def _truncate(folder: Path) -> None:
    model = folder / MODEL_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def _tamper_arrays(folder: Path) -> None:
    with (folder / SERVING_NPZ).open("ab") as handle:
        handle.write(b"tampered")


def _incompatible(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["libraries"]["scikit-learn"] = "0.1.0"
    manifest["libraries"]["numpy"] = "1.0.0"
    manifest["libraries"]["joblib"] = "0.1.0"
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def _half_manifest(folder: Path) -> None:
    text = (folder / MANIFEST_FILE).read_text(encoding="utf-8")
    (folder / MANIFEST_FILE).write_text(text[: len(text) // 2], encoding="utf-8")


def _no_model(folder: Path) -> None:
    (folder / MODEL_FILE).unlink()


def _no_serving_form(folder: Path) -> None:
    (folder / SERVING_JSON).unlink()


DAMAGE: list[tuple[Callable[[Path], None], str]] = [
    (_tamper, "does not match its manifest's sha256"),
    (_truncate, "does not match its manifest's sha256"),
    (_tamper_arrays, "serving.npz does not match its manifest's sha256"),
    (_half_manifest, "manifest.json is unreadable"),
    (_no_model, "has no model.joblib"),
    (_no_serving_form, "has no serving.json"),
]
IDS = ["tampered", "truncated", "tampered-arrays", "half-manifest", "no-model", "no-serving-form"]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE, ids=IDS)
def test_a_damaged_bundle_at_start_leaves_the_service_not_ready_saying_why(
    make_client: ClientFactory,
    registry_root: Path,
    trained: TrainedBundles,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    damage(registry_root / trained.conformal)
    client = make_client()

    ready = client.get("/readyz")
    quoted = client.post("/v1/quotes", json=quote_body())

    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert reason in ready.json()["model_error"]
    assert quoted.status_code == 503 and reason in quoted.json()["message"]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE, ids=IDS)
def test_a_damaged_bundle_on_reload_keeps_the_old_one_serving(
    make_client: ClientFactory,
    registry_root: Path,
    trained: TrainedBundles,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    client = make_client()
    Registry(registry_root).promote(trained.adaptive)
    damage(registry_root / trained.adaptive)

    reloaded = client.post("/v1/model/reload", headers=bearer(ADMIN_KEY))

    assert reloaded.status_code == 422
    assert reason in reloaded.json()["message"]
    assert f"still serving {trained.conformal}" in reloaded.json()["message"]
    assert client.get("/readyz").json()["model_version"] == trained.conformal
    assert client.post("/v1/quotes", json=quote_body()).json()["model_version"] == (
        trained.conformal
    )


def test_a_bundle_made_with_other_library_versions_serves(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    client = make_client()
    Registry(registry_root).promote(trained.adaptive)
    _incompatible(registry_root / trained.adaptive)

    reloaded = client.post("/v1/model/reload", headers=bearer(ADMIN_KEY))

    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["version"] == trained.adaptive
    quoted = client.post("/v1/quotes", json=quote_body())
    assert quoted.status_code == 201 and quoted.json()["model_version"] == trained.adaptive
