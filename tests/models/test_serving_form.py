"""The serving form: an engine written as JSON and an npz, read without pickles, quotes exactly
what the trained engine quotes, and a form smuggling objects or unknown kinds is refused."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.control import ControlState
from models.errors import BundleError
from models.quoting import QuoteEngine, quote
from models.registry import SERVING_JSON, SERVING_NPZ, Registry
from models.risk import outlook
from models.serving_form import engine_form, engine_from_form
from tests.models.test_fast import ADAPTIVE_STATE, batch_promises, engine_for, random_orders
from training.pipeline import train_bundle

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)


def through_files(engine: QuoteEngine) -> QuoteEngine:
    """The engine after a trip through the bytes a bundle holds: JSON text and an npz read
    with `allow_pickle=False`."""
    document, arrays = engine_form(engine)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {name: npz[name] for name in npz.files}
    return engine_from_form(json.loads(json.dumps(document)), loaded)


@pytest.mark.parametrize(
    ("policy", "unit", "zone", "cutoff_hour", "relative", "state"),
    [
        ("fixed", "day", "Europe/London", 16, False, None),
        ("fixed", "hour", "Europe/London", None, False, None),
        ("proportional", "minute", "Asia/Kolkata", 18, False, None),
        ("quantile", "day", "UTC", 12, False, None),
        ("quantile", "minute", "America/New_York", 15, False, None),
        ("conformal", "day", "Europe/London", 16, False, None),
        ("conformal", "hour", "America/New_York", 15, True, None),
        ("adaptive", "day", "Australia/Sydney", None, True, ADAPTIVE_STATE),
        ("adaptive", "minute", "Europe/London", 16, False, ADAPTIVE_STATE),
        ("adaptive", "hour", "Europe/London", 16, False, None),
    ],
)
def test_an_engine_read_from_its_serving_form_quotes_exactly_the_same(
    policy: str,
    unit: str,
    zone: str,
    cutoff_hour: int | None,
    relative: bool,
    state: ControlState | None,
) -> None:
    engine = engine_for(policy, unit, zone, cutoff_hour, relative, max_promise_units=6.0)
    loaded = through_files(engine)
    assert type(loaded.buffer_rule) is type(engine.buffer_rule)
    assert type(loaded.expected_trees) is type(engine.expected_trees)
    orders = random_orders(engine.schema, 400, seed=len(policy) * 7 + len(unit))
    want = quote(engine, orders, state)
    assert quote(loaded, orders, state) == want
    assert batch_promises(loaded, orders, state) == batch_promises(engine, orders, state)
    assert [quote(loaded, [order], state)[0] for order in orders[:40]] == want[:40]
    # Not vacuous: the orders reach closed days, the limit and several segments.
    assert any(p.closed_days_skipped for p in want)
    assert any(p.exceeds_max_promise for p in want)
    if policy in ("conformal", "adaptive"):
        assert len({p.segment for p in want}) > 3


@pytest.fixture(scope="module")
def sample_registry(small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of the sample data trained with each policy that segments."""
    root = tmp_path_factory.mktemp("serving")
    registry = Registry(root)
    for i, policy in enumerate(("adaptive", "quantile")):
        train_bundle(small_sample_spec, registry, now=NOW + dt.timedelta(minutes=i), policy=policy)
    return root


def test_a_trained_bundle_loads_from_its_serving_form_with_equal_quotes_and_risks(
    sample_registry: Path, small_sample_spec: Path
) -> None:
    registry = Registry(sample_registry)
    for manifest in registry.manifests():
        trained = registry.load_model(manifest.version).engine
        served = registry.load(manifest.version).engine
        assert served.risk is not None and trained.risk is not None
        assert served.risk.depth == trained.risk.depth
        assert served.risk.table.keys() == trained.risk.table.keys()
        rng = np.random.default_rng(3)
        for key, dist in trained.risk.table.items():
            got = served.risk.table[key]
            assert np.array_equal(got.values, dist.values) and np.array_equal(got.cdf, dist.cdf)
            for _ in range(20):
                expected, elapsed = rng.uniform(1.0, 200.0, 2)
                deadline = expected + rng.uniform(0.0, 100.0)
                args = (expected, elapsed, deadline, manifest.target_late_rate)
                assert outlook(got, *args) == outlook(dist, *args)
        orders = sample_orders(trained)
        state = ADAPTIVE_STATE if manifest.policy == "adaptive" else None
        assert quote(served, orders, state) == quote(trained, orders, state)


def sample_orders(engine: QuoteEngine) -> list[Any]:
    from models.quoting import Order

    rng = np.random.default_rng(5)
    orders = []
    for i in range(300):
        features: dict[str, object] = {}
        for cat in engine.schema.categorical:
            choices = [*cat.categories, "never-seen", None]
            features[cat.name] = choices[int(rng.integers(len(choices)))]
        for num in engine.schema.numeric:
            features[num.name] = float(rng.uniform(num.low, num.high)) if i % 9 else None
        placed = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=float(i) * 7.3)
        orders.append(Order(features, placed))
    return orders


def _only(registry: Registry, policy: str) -> str:
    return next(m.version for m in registry.manifests() if m.policy == policy)


def _rehash(registry: Registry, version: str, name: str) -> None:
    """Update the manifest's hash of `name` as an attacker with write access would."""
    import hashlib

    path = registry.root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    digest = hashlib.sha256((registry.root / version / name).read_bytes()).hexdigest()
    manifest["files"][name] = digest
    path.write_text(json.dumps(manifest))


class _Marker:
    """Unpickling this runs `touch MARKER`: what a pickled object array would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_an_object_array_smuggled_into_the_npz_is_refused_without_running(
    sample_registry: Path, tmp_path: Path
) -> None:
    shutil.copytree(sample_registry, tmp_path / "bundles")
    registry = Registry(tmp_path / "bundles")
    version = _only(registry, "adaptive")
    marker = tmp_path / "MARKER"
    npz_path = registry.root / version / SERVING_NPZ
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
    arrays["buffer.values"] = np.array([_Marker(marker)], dtype=object)
    with npz_path.open("wb") as handle:
        np.savez(handle, **arrays)
    _rehash(registry, version, SERVING_NPZ)
    with pytest.raises(BundleError, match="serving form cannot be read"):
        registry.load(version)
    assert not marker.exists()
    # The same pickle would have run: the test's payload is real.
    with np.load(npz_path, allow_pickle=True) as npz:
        npz["buffer.values"]
    assert marker.exists()


def test_a_form_naming_an_unknown_kind_or_a_text_array_is_refused(
    sample_registry: Path, tmp_path: Path
) -> None:
    shutil.copytree(sample_registry, tmp_path / "bundles")
    registry = Registry(tmp_path / "bundles")
    version = _only(registry, "quantile")
    json_path = registry.root / version / SERVING_JSON
    document = json.loads(json_path.read_text())
    kind = document["expected_trees"]["kind"]
    document["expected_trees"]["kind"] = "os.system"
    json_path.write_text(json.dumps(document))
    _rehash(registry, version, SERVING_JSON)
    with pytest.raises(BundleError, match=r"unknown compiled tree kind 'os\.system'"):
        registry.load(version)

    document["expected_trees"]["kind"] = kind
    json_path.write_text(json.dumps(document))
    _rehash(registry, version, SERVING_JSON)
    npz_path = registry.root / version / SERVING_NPZ
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
    arrays["risk.values"] = np.array(["rm -rf /"])
    with npz_path.open("wb") as handle:
        np.savez(handle, **arrays)
    _rehash(registry, version, SERVING_NPZ)
    with pytest.raises(BundleError, match=r"'risk\.values' has dtype <U8: refused"):
        registry.load(version)


def test_a_form_with_an_unknown_unit_or_missing_array_is_refused() -> None:
    engine = engine_for("conformal", "hour")
    document, arrays = engine_form(engine)
    with pytest.raises(BundleError, match="unit 'fortnight' is none of"):
        engine_from_form({**document, "unit": "fortnight"}, arrays)
    without = {name: array for name, array in arrays.items() if name != "buffer.cdf"}
    with pytest.raises(BundleError, match=r"names an array 'buffer\.cdf' its npz lacks"):
        engine_from_form(document, without)
    assert through_files(engine).unit == "hour"
