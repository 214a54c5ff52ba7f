"""A bundle that carries code never runs it in the service (issue 15).

Whoever can write into the registry can replace a file and update its hash in the manifest:
the hash proves integrity, not origin. The service reads only the serving form (JSON and
`np.load(allow_pickle=False)`), so a malicious `model.joblib` is never unpickled, a pickle-only
bundle is refused, an object array in the npz is refused unread, and with a signing key an
altered manifest is refused; in every case the old model keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import (
    MANIFEST_FILE,
    MODEL_FILE,
    PROMOTED_FILE,
    SERVING_NPZ,
    SIGNATURE_FILE,
    Registry,
)
from tests.service.conftest import (
    ADMIN_KEY,
    ClientFactory,
    TrainedBundles,
    bearer,
    quote_body,
)

ADMIN = bearer(ADMIN_KEY)


class _Touch:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _payload(marker: Path) -> bytes:
    payload = pickle.dumps(_Touch(marker))
    # The payload is real: unpickling it elsewhere does touch its file.
    control = marker.with_name(marker.name + ".control")
    pickle.loads(pickle.dumps(_Touch(control)))
    assert control.exists()
    return payload


def _rehash(folder: Path, name: str) -> None:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _promote_by_hand(registry_root: Path, version: str) -> None:
    # What an attacker with write access does: `promote` would check the bundle first.
    (registry_root / PROMOTED_FILE).write_text(version + "\n", encoding="utf-8")


def _assert_old_keeps_serving(client: Any, version: str) -> None:
    assert client.get("/v1/model").json()["version"] == version
    quoted = client.post("/v1/quotes", json=quote_body())
    assert quoted.status_code == 201 and quoted.json()["model_version"] == version


def test_a_pickle_only_bundle_with_its_hash_updated_is_refused_and_nothing_runs(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    client = make_client()
    marker = tmp_path / "MARKER"
    folder = registry_root / "20991231-000000-evil0001"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(_payload(marker))
    manifest = json.loads((registry_root / trained.adaptive / MANIFEST_FILE).read_text())
    manifest = {key: value for key, value in manifest.items() if key != "files"}
    manifest |= {
        "version": folder.name,
        "format_version": 3,
        "model_sha256": hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest(),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    _promote_by_hand(registry_root, folder.name)

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert not marker.exists()
    assert response.status_code == 422
    message = response.json()["message"]
    assert f"promise rebuild-serving {folder.name} --registry {registry_root}" in message
    assert f"still serving {trained.conformal}" in message
    _assert_old_keeps_serving(client, trained.conformal)
    assert not marker.exists()


def test_a_malicious_model_file_in_a_serving_bundle_is_never_unpickled(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    client = make_client()
    marker = tmp_path / "MARKER"
    folder = registry_root / trained.adaptive
    (folder / MODEL_FILE).write_bytes(_payload(marker))
    _rehash(folder, MODEL_FILE)
    Registry(registry_root).promote(trained.adaptive)

    response = client.post("/v1/model/reload", headers=ADMIN)

    # The bundle's serving form is intact: it serves, and its pickle never ran.
    assert response.status_code == 200, response.text
    assert not marker.exists()
    _assert_old_keeps_serving(client, trained.adaptive)
    assert not marker.exists()


def test_an_object_array_in_the_serving_npz_is_refused_unread_on_reload(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    client = make_client()
    marker = tmp_path / "MARKER"
    folder = registry_root / trained.adaptive
    with np.load(folder / SERVING_NPZ, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
    arrays["risk.cdf"] = np.array([_Touch(marker)], dtype=object)
    with (folder / SERVING_NPZ).open("wb") as handle:
        np.savez(handle, **arrays)
    _rehash(folder, SERVING_NPZ)
    _promote_by_hand(registry_root, trained.adaptive)

    response = client.post("/v1/model/reload", headers=ADMIN)

    assert response.status_code == 422
    assert "serving form cannot be read" in response.json()["message"]
    assert f"still serving {trained.conformal}" in response.json()["message"]
    assert not marker.exists()
    _assert_old_keeps_serving(client, trained.conformal)


def test_with_a_signing_key_unsigned_and_altered_bundles_are_refused(
    make_client: ClientFactory,
    registry_root: Path,
    trained: TrainedBundles,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    key = "shop-signing-key-0123456789"
    # The trained registry is unsigned: a worker with the key refuses to serve it.
    unsigned = make_client(bundle_signing_key=key)
    ready = unsigned.get("/readyz")
    assert ready.status_code == 503
    assert "is not signed" in ready.json()["model_error"]
    assert "PROMISE_BUNDLE_SIGNING_KEY" in ready.json()["model_error"]

    # Sign both bundles' manifests as training with the key would, then serve.
    from models.signing import sign

    for version in (trained.conformal, trained.adaptive):
        manifest = json.loads((registry_root / version / MANIFEST_FILE).read_text())
        (registry_root / version / SIGNATURE_FILE).write_text(sign(manifest, key) + "\n")
    client = make_client(bundle_signing_key=key)
    _assert_old_keeps_serving(client, trained.conformal)

    # A replaced file with its hash updated no longer matches the signature.
    folder = registry_root / trained.adaptive
    (folder / MODEL_FILE).write_bytes(_payload(tmp_path / "MARKER"))
    _rehash(folder, MODEL_FILE)
    _promote_by_hand(registry_root, trained.adaptive)
    response = client.post("/v1/model/reload", headers=ADMIN)
    assert response.status_code == 422
    assert "signature does not match" in response.json()["message"]
    _assert_old_keeps_serving(client, trained.conformal)

    # The key comes from the environment, as a worker reads it.
    monkeypatch.setenv("PROMISE_BUNDLE_SIGNING_KEY", key)
    from service.settings import Settings

    assert Settings().signing_key() == key
    assert key not in repr(Settings())
