"""Serving `models:/NAME@ALIAS`: the bundle comes from a real MLflow store (SQLite in tmp_path)
into an empty registry folder, and loads there with the registry's usual checks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.errors import BundleError, NotFound
from models.registry import MANIFEST_FILE, SERVING_NPZ, Registry
from service.mlflow_source import fetch
from tests.service.conftest import ROOT, TrainedBundles

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # after the skip: the mlflow extra is optional

from training.tracking import register


@dataclass(frozen=True)
class Store:
    uri: str
    artifacts: Path  # where MLflow keeps the registered files


@pytest.fixture(scope="module")
def store(trained: TrainedBundles, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An MLflow store where `promise@champion` is the adaptive bundle, `promise@old` the
    conformal one."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    source = Registry(trained.root)
    for version, alias in ((trained.adaptive, "champion"), (trained.conformal, "old")):
        register(uri, source.manifest(version), source.folder(version), alias, "promise")
    return Store(uri, folder / "mlartifacts")


@pytest.fixture
def tracking(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    yield store


def test_an_alias_is_fetched_into_an_empty_registry_and_loads_with_its_checks(
    tracking: Store, trained: TrainedBundles, tmp_path: Path
) -> None:
    root = tmp_path / "empty" / "bundles"
    version = fetch("models:/promise@champion", root)
    assert version == trained.adaptive
    loaded = Registry(root).load(version)  # hashes checked as for any bundle
    assert loaded.manifest.version == trained.adaptive
    assert sorted(p.name for p in root.iterdir()) == [version]  # no staging folder left
    assert fetch("models:/promise/2", root) == trained.conformal


def test_a_bundle_already_in_the_registry_is_not_fetched_again(
    tracking: Store, trained: TrainedBundles, tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    version = fetch("models:/promise@champion", root)
    (root / version / SERVING_NPZ).write_bytes(b"changed here")
    assert fetch("models:/promise@champion", root) == version
    assert (root / version / SERVING_NPZ).read_bytes() == b"changed here"


def test_files_altered_in_mlflow_are_refused_by_the_registry(
    tracking: Store, trained: TrainedBundles, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=tracking.uri, registry_uri=tracking.uri)
    champion = client.get_model_version_by_alias("promise", "champion")
    [stored] = tracking.artifacts.glob(f"{champion.run_id}/artifacts/bundle/{SERVING_NPZ}")
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-10] + b"0123456789")
        root = tmp_path / "bundles"
        version = fetch("models:/promise@champion", root)
        with pytest.raises(BundleError, match="does not match its manifest's sha256"):
            Registry(root).load(version)
    finally:
        stored.write_bytes(original)


def test_an_unknown_model_or_alias_is_not_found(tracking: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="models:/promise@nope"):
        fetch("models:/promise@nope", tmp_path)
    with pytest.raises(NotFound, match="models:/nobody@champion"):
        fetch("models:/nobody@champion", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_model_version_that_is_no_promise_bundle_is_refused(
    tracking: Store, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=tracking.uri, registry_uri=tracking.uri)
    champion = client.get_model_version_by_alias("promise", "champion")
    assert champion.source is not None
    stranger = client.create_model_version("promise", champion.source, run_id=champion.run_id)
    client.set_registered_model_alias("promise", "stranger", stranger.version)
    with pytest.raises(BundleError, match="is not a Promise bundle: it has no valid"):
        fetch("models:/promise@stranger", tmp_path)
    forged = client.create_model_version(
        "promise", champion.source, run_id=champion.run_id, tags={"promise.version": "elsewhere"}
    )
    with pytest.raises(BundleError, match=r"manifest\.json says otherwise"):
        fetch(f"models:/promise/{forged.version}", tmp_path / "bundles")
    assert not (tmp_path / "bundles" / "elsewhere").exists()
    assert [p.name for p in (tmp_path / "bundles").iterdir()] == []


@pytest.mark.parametrize(
    "uri", ["promise@champion", "models:/promise", "models:/a/b@c", "models:/promise@"]
)
def test_a_uri_that_names_no_model_alias_is_refused(uri: str, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not an MLflow model URI: use models:/NAME@ALIAS"):
        fetch(uri, tmp_path)


def test_without_a_tracking_store_nothing_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match="needs MLFLOW_TRACKING_URI"):
        fetch("models:/promise@champion", tmp_path / "bundles")
    assert list(tmp_path.iterdir()) == []


def test_importing_the_source_does_not_import_mlflow() -> None:
    script = "import sys, service.mlflow_source; print('mlflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_fetched_manifest_is_the_registered_one(
    tracking: Store, trained: TrainedBundles, tmp_path: Path
) -> None:
    version = fetch("models:/promise@old", tmp_path)
    fetched = json.loads((tmp_path / version / MANIFEST_FILE).read_text())
    original = json.loads((trained.root / version / MANIFEST_FILE).read_text())
    assert fetched == original
