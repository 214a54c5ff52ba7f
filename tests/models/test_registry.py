"""The registry: versions, promotion, and refusing bundles that cannot be trusted."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from models.errors import BundleError, NotFound
from models.quoting import Order, quote
from models.registry import MODEL_FILE, Registry
from training.pipeline import train_bundle

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
ORDER = Order(
    {
        "store_id": "MAN",
        "lens_type": "progressive",
        "coating": "none",
        "frame_in_stock": 1,
        "n_items": 1,
        "sphere_power": 2.0,
    },
    dt.datetime(2026, 7, 1, 10, tzinfo=dt.UTC),
)


@pytest.fixture(scope="module")
def trained(small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry folder holding one trained bundle (copied per test)."""
    root = tmp_path_factory.mktemp("registry")
    train_bundle(small_sample_spec, Registry(root), now=NOW)
    return root


@pytest.fixture
def registry(trained: Path, tmp_path: Path) -> Registry:
    shutil.copytree(trained, tmp_path / "bundles")
    return Registry(tmp_path / "bundles")


def only_version(registry: Registry) -> str:
    [manifest] = registry.manifests()
    return manifest.version


def test_a_saved_bundle_loads_promotes_and_quotes(registry: Registry) -> None:
    version = only_version(registry)
    assert registry.promoted_version() is None
    registry.promote(version)
    loaded = registry.load_promoted()
    assert loaded.manifest.version == version
    assert loaded.manifest.info["data"]["rows_read"] == 8_000
    assert loaded.manifest.info["fit"]["n_calibration"] > 0
    [promise] = quote(loaded.engine, [ORDER])
    assert promise.deadline_at > promise.expected_completion > ORDER.ordered_at


def test_a_bundle_of_an_older_format_is_refused_with_the_command_to_retrain(
    registry: Registry,
) -> None:
    # Format 2 bundles pickled policies holding a `PolicyConfig`, and engines by position.
    version = only_version(registry)
    path = registry.root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["format_version"] == 3
    path.write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(BundleError, match="has format 2, this Promise reads format 3: retrain"):
        registry.load(version)


def test_a_tampered_model_file_is_refused(registry: Registry) -> None:
    version = only_version(registry)
    path = registry.root / version / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its manifest's sha256"):
        registry.load(version)
    with pytest.raises(BundleError):
        registry.promote(version)
    assert registry.promoted_version() is None


def test_a_truncated_model_with_a_matching_hash_is_still_refused(registry: Registry) -> None:
    version = only_version(registry)
    path = registry.root / version / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    manifest_path = registry.root / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot be read"):
        registry.load(version)


def test_a_bundle_from_another_library_version_is_refused(registry: Registry) -> None:
    version = only_version(registry)
    manifest_path = registry.root / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["libraries"]["scikit-learn"] = "0.24.2"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"made with scikit-learn 0\.24\.2"):
        registry.load(version)


def test_unknown_versions_are_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound):
        registry.load("20990101-000000-deadbeef")
    with pytest.raises(NotFound):
        registry.promote("../../etc")
    (registry.root / "broken").mkdir()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        registry.load("broken")
    assert [m.version for m in registry.manifests()] == [only_version(registry)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_registry_fails_clearly_and_keeps_the_promoted_bundle(
    registry: Registry, small_sample_spec: Path
) -> None:
    version = only_version(registry)
    registry.promote(version)
    registry.root.chmod(0o555)
    try:
        with pytest.raises(BundleError, match=r"registry is unchanged|cannot write"):
            train_bundle(small_sample_spec, registry, now=NOW + dt.timedelta(hours=1))
    finally:
        registry.root.chmod(0o755)
    assert registry.promoted_version() == version
    assert [m.version for m in registry.manifests()] == [version]


def test_a_failed_write_leaves_no_half_bundle(
    registry: Registry, small_sample_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = only_version(registry)
    registry.promote(version)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("models.registry.joblib.dump", disk_full)
    with pytest.raises(BundleError, match="No space left on device; the registry is unchanged"):
        train_bundle(small_sample_spec, registry, now=NOW + dt.timedelta(hours=1))
    assert registry.promoted_version() == version
    assert sorted(p.name for p in registry.root.iterdir()) == sorted([version, "PROMOTED"])
