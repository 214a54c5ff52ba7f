"""The registry: versions, promotion, and refusing bundles that cannot be trusted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from models.compatibility import LISTED_CATEGORY_LIMIT, IncompatibleBundle, differences
from models.errors import BundleError, NotFound
from models.quoting import Order, quote
from models.registry import (
    MODEL_FILE,
    PROMOTED_FILE,
    PROMOTIONS_FILE,
    SERVING_JSON,
    SERVING_NPZ,
    SIGNATURE_FILE,
    Manifest,
    Registry,
)
from models.trained import TrainedModel
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
    assert manifest["format_version"] == 4
    path.write_text(json.dumps({**manifest, "format_version": 2}))
    spec_path = manifest["info"]["spec_path"]
    with pytest.raises(
        BundleError,
        match=rf"has format 2, this Promise reads format 4: retrain it with "
        rf"`promise train --spec {re.escape(spec_path)}`",
    ):
        registry.load(version)


def test_a_saved_bundle_holds_a_serving_form_and_hashes_every_file(registry: Registry) -> None:
    version = only_version(registry)
    folder = registry.root / version
    manifest = registry.manifest(version)
    assert sorted(manifest.files) == [MODEL_FILE, SERVING_JSON, SERVING_NPZ]
    for name, digest in manifest.files.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert not (folder / SIGNATURE_FILE).exists()
    with np.load(folder / SERVING_NPZ, allow_pickle=False) as npz:
        assert all(npz[name].dtype.kind in "biuf" for name in npz.files)


@pytest.mark.parametrize("name", [MODEL_FILE, SERVING_JSON, SERVING_NPZ])
def test_a_tampered_file_is_refused(registry: Registry, name: str) -> None:
    version = only_version(registry)
    path = registry.root / version / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} does not match its manifest's sha256"):
        registry.load(version)
    with pytest.raises(BundleError, match="sha256"):
        registry.load_model(version)
    with pytest.raises(BundleError):
        registry.promote(version)
    assert registry.promoted_version() is None


def test_a_truncated_model_with_a_matching_hash_serves_but_cannot_be_unpickled(
    registry: Registry,
) -> None:
    version = only_version(registry)
    path = registry.root / version / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    manifest_path = registry.root / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][MODEL_FILE] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    # The service never reads the pickle; a notebook that does is told it is damaged.
    [promise] = quote(registry.load(version).engine, [ORDER])
    assert promise.deadline_at > ORDER.ordered_at
    with pytest.raises(BundleError, match="cannot be read"):
        registry.load_model(version)


def test_a_bundle_from_another_library_version_serves_but_is_not_unpickled(
    registry: Registry,
) -> None:
    version = only_version(registry)
    want = quote(registry.load(version).engine, [ORDER])
    assert isinstance(registry.load_model(version), TrainedModel)
    manifest_path = registry.root / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["libraries"]["scikit-learn"] = "0.24.2"
    manifest["libraries"]["numpy"] = "1.19.0"
    manifest_path.write_text(json.dumps(manifest))
    assert quote(registry.load(version).engine, [ORDER]) == want
    with pytest.raises(BundleError, match=r"pickled with scikit-learn 0\.24\.2"):
        registry.load_model(version)


def test_the_pickled_model_holds_the_estimators_and_the_engine_it_made(
    registry: Registry,
) -> None:
    version = only_version(registry)
    model = registry.load_model(version)
    served = registry.load(version).engine
    assert quote(model.engine, [ORDER]) == quote(served, [ORDER])
    matrix = served.schema.encode(
        {name: [value] for name, value in ORDER.features.items()},
        served.calendar.local_parts(np.array([ORDER.ordered_at.timestamp()])),
    )
    with threadpool_limits(1):
        reference = model.regressor.predict_hours(matrix)
    assert np.array_equal(served.expected_trees.predict_hours(matrix), reference)


def test_a_signed_registry_signs_and_refuses_unsigned_or_altered_bundles(
    small_sample_spec: Path, tmp_path: Path, registry: Registry
) -> None:
    signed = Registry(tmp_path / "signed", signing_key="k3y-of-the-shop")
    version = train_bundle(small_sample_spec, signed, now=NOW).version
    assert (signed.root / version / SIGNATURE_FILE).is_file()
    assert signed.load(version).manifest.version == version
    # Without a key, a signed bundle loads like any other.
    assert Registry(signed.root).load(version).manifest.version == version

    with pytest.raises(BundleError, match="signed with another key"):
        Registry(signed.root, signing_key="another-key").load(version)
    unsigned = only_version(registry)
    with pytest.raises(BundleError, match=r"is not signed.*PROMISE_BUNDLE_SIGNING_KEY is set"):
        Registry(registry.root, signing_key="k3y-of-the-shop").load(unsigned)

    # Re-indenting keeps the signature; changing a hash (as after swapping a file) breaks it.
    path = signed.root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(manifest))
    assert signed.load(version).manifest.version == version
    manifest["files"][MODEL_FILE] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signature does not match"):
        signed.load(version)


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

    monkeypatch.setattr("joblib.dump", disk_full)
    with pytest.raises(BundleError, match="No space left on device; the registry is unchanged"):
        train_bundle(small_sample_spec, registry, now=NOW + dt.timedelta(hours=1))
    assert registry.promoted_version() == version
    assert sorted(p.name for p in registry.root.iterdir()) == sorted(
        [version, PROMOTED_FILE, PROMOTIONS_FILE]
    )


# --------------------------------------------------------------------------- promotion checks


def with_info(manifest: Manifest, version: str, **changes: Any) -> Manifest:
    """`manifest` renamed `version`, some of its `info` replaced (a bundle trained otherwise)."""
    return dataclasses.replace(manifest, version=version, info={**manifest.info, **changes})


def test_a_retrain_on_the_same_fields_differs_in_nothing(registry: Registry) -> None:
    served = registry.manifest(only_version(registry))
    schema = served.info["feature_schema"]
    more_stores = {**schema["categorical"], "store_id": [*schema["categorical"]["store_id"], "ZZZ"]}
    retrained = with_info(served, "new", feature_schema={**schema, "categorical": more_stores})
    assert differences(served, served) == []
    # A new store is fine: nobody sent it before.
    assert differences(served, retrained) == []


def test_every_difference_a_point_of_sale_system_would_notice_is_named(
    registry: Registry,
) -> None:
    served = registry.manifest(only_version(registry))
    schema = served.info["feature_schema"]
    categorical = dict(schema["categorical"])
    categorical["store_id"] = [s for s in categorical["store_id"] if s != "MAN"]
    numeric = {**schema["numeric"], "customer_state": {"low": 0.0, "high": 1.0}}
    numeric["coating"] = numeric.pop("n_items")  # coating numeric; n_items gone
    spec = {
        **served.info["spec"],
        "calendar": {**served.info["spec"]["calendar"], "timezone": "UTC"},
    }
    other = dataclasses.replace(
        with_info(
            served,
            "other",
            feature_schema={**schema, "categorical": categorical, "numeric": numeric},
            segments_by=[],
            spec=spec,
        ),
        unit="hour",
    )
    found = differences(served, other)
    text = "\n".join(found)
    assert "feature 'customer_state' is new in other" in text
    assert "feature 'n_items' is gone from other" in text
    assert "feature 'coating' is categorical in " in text and "and numeric in other" in text
    assert "store_id 'MAN': known to" in text and "never seen by other" in text
    assert "unit: " in text and "in days, other in hours" in text
    assert "a buffer per store_id, other one buffer for all orders" in text
    assert "Europe/London, other in UTC" in text
    assert len(found) == 7


def test_a_category_list_cut_at_the_limit_hides_only_what_it_could_not_list(
    registry: Registry,
) -> None:
    served = registry.manifest(only_version(registry))
    schema = served.info["feature_schema"]
    listed = [f"S{i:03d}" for i in range(LISTED_CATEGORY_LIMIT)]
    cut = {**schema["categorical"], "store_id": listed}
    before = with_info(served, "before", feature_schema={**schema, "categorical": cut})
    known = {**schema["categorical"], "store_id": [*listed[1:], "S000x", "ZZZ"]}
    wide = with_info(served, "wide", feature_schema={**schema, "categorical": known})
    # "ZZZ" sorts after the cut list's last value: maybe known, only not listed. "S000x" sorts
    # inside the listed range and is not in it: surely never seen.
    assert differences(wide, before) == [
        "store_id 'S000x': known to wide, never seen by before (such orders would be refused "
        "or quoted as unknown)"
    ]


def test_a_manifest_without_a_schema_cannot_be_compared(registry: Registry) -> None:
    served = registry.manifest(only_version(registry))
    bare = with_info(served, "bare", feature_schema=None, segments_by=None)
    assert differences(served, bare) == [
        "feature schema: the manifest of bare does not record it, so it cannot be compared",
        "segments: the manifest of bare does not record it, so it cannot be compared",
    ]


@pytest.fixture(scope="module")
def two_kinds(
    trained: Path, small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The trained registry plus a bundle without the coating feature, one buffer for all."""
    root = tmp_path_factory.mktemp("two-kinds")
    shutil.copytree(trained, root, dirs_exist_ok=True)
    spec = root / "other.toml"
    text = small_sample_spec.read_text()
    text = text.replace('["store_id", "lens_type", "coating"]', '["store_id", "lens_type"]')
    spec.write_text(text.replace('segments = ["store_id"]', "segments = []"))
    data = small_sample_spec.parent / "optical_orders.csv"
    train_bundle(spec, Registry(root), now=NOW + dt.timedelta(hours=1), data=data)
    return root


def test_a_promotion_that_changes_the_fields_is_refused_unless_forced(
    two_kinds: Path, tmp_path: Path
) -> None:
    registry = Registry(shutil.copytree(two_kinds, tmp_path / "bundles"))
    first, other = (m.version for m in registry.manifests())
    registry.promote(first, now=NOW)
    with pytest.raises(
        IncompatibleBundle, match=f"{other} differs from the promoted {first}"
    ) as err:
        registry.promote(other, now=NOW)
    assert registry.promoted_version() == first
    assert registry.promotion_differences(other) == err.value.differences
    assert err.value.differences == [
        f"feature 'coating' is gone from {other}: a point-of-sale request that sends it is refused",
        f"segments: {first} keeps a buffer per store_id, {other} one buffer for all orders",
    ]
    registry.promote(other, force=True, now=NOW + dt.timedelta(minutes=1))
    assert registry.promoted_version() == other
    assert [(p.version, p.previous, p.forced) for p in registry.history()] == [
        (first, None, False),
        (other, first, True),
    ]
    assert registry.history()[-1].differences == tuple(err.value.differences)
    assert registry.history()[-1].at == "2026-11-23T12:01:00Z"


def test_rollback_promotes_what_the_promoted_bundle_replaced(
    two_kinds: Path, tmp_path: Path
) -> None:
    registry = Registry(shutil.copytree(two_kinds, tmp_path / "bundles"))
    first, other = (m.version for m in registry.manifests())
    with pytest.raises(NotFound, match="nothing to roll back"):
        registry.rollback()
    registry.promote(first)
    registry.promote(first)  # already promoted: no new history line
    with pytest.raises(NotFound, match="was the first promoted model"):
        registry.rollback()
    registry.promote(other, force=True)
    assert registry.rollback_target().previous == first
    back = registry.rollback(now=NOW)
    assert registry.promoted_version() == first
    assert (back.version, back.previous, back.rollback, back.forced) == (first, other, True, True)
    # Rolling back again undoes the roll back.
    registry.rollback()
    assert registry.promoted_version() == other
    assert len(registry.history()) == 4


def test_a_torn_history_line_is_skipped_and_an_unknown_past_is_not_guessed(
    two_kinds: Path, tmp_path: Path
) -> None:
    registry = Registry(shutil.copytree(two_kinds, tmp_path / "bundles"))
    first, other = (m.version for m in registry.manifests())
    registry.promote(first)
    registry.promote(other, force=True)
    with (registry.root / PROMOTIONS_FILE).open("a") as history:
        history.write('{"version": "half')
    assert [p.version for p in registry.history()] == [first, other]
    (registry.root / PROMOTIONS_FILE).unlink()
    with pytest.raises(NotFound, match=f"does not say what {other} replaced"):
        registry.rollback()
