"""`promise rebuild-serving`: a bundle made before serving forms (format 3, a pickled
`QuoteEngine` of the old shape) is refused by `load` naming the command, and the command saves
it again as a format-4 bundle that quotes exactly what the old engine quoted."""

from __future__ import annotations

import copyreg
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import joblib.numpy_pickle as numpy_pickle
import pytest
from typer.testing import CliRunner

from models.calendar import BusinessCalendar
from models.errors import BundleError
from models.policies import AdaptivePolicy, ConformalPolicy, FixedPolicy, QuantilePolicy
from models.quoting import QuoteEngine, quote
from models.registry import MANIFEST_FILE, MODEL_FILE, Registry
from models.trained import TrainedModel
from tests.models.test_fast import ADAPTIVE_STATE
from tests.models.test_serving_form import sample_orders
from training.cli import app
from training.pipeline import train_bundle

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
OLD_POLICIES = {
    "fixed": FixedPolicy,
    "quantile": QuantilePolicy,
    "conformal": ConformalPolicy,
    "adaptive": AdaptivePolicy,
}


class _Old:
    """Stands for an old object when pickling: written as `cls` with `state`, as the old
    classes pickled themselves (`copyreg.__newobj__`, then BUILD with the state)."""

    def __init__(self, cls: type[Any], state: Any) -> None:
        self.cls = cls
        self.state = state

    @property  # type: ignore[misc]  # pickle checks NEWOBJ's class against `obj.__class__`
    def __class__(self) -> type[Any]:
        return self.cls


class _OldShapePickler(numpy_pickle.NumpyPickler):  # type: ignore[misc]
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is _Old:
            return (copyreg.__newobj__, (obj.cls,), obj.state)
        return NotImplemented


def old_engine_state(model: TrainedModel) -> _Old:
    """The old `QuoteEngine` of a trained model: the estimators and the fitted policy in it."""
    engine = model.engine
    rule: Any = engine.buffer_rule
    policy_state: dict[str, Any] = {**model.policy.get_params(), "_sklearn_version": "1.7"}
    if engine.policy_name == "fixed":
        policy_state["score_"] = rule.score
    elif engine.policy_name == "quantile":
        policy_state["fitted_"] = True
    else:
        policy_state |= {"table_": dict(rule.table), "depth_": rule.depth}
        if engine.policy_name == "adaptive":
            policy_state["control_"] = dict(rule.controls)
    calendar = engine.calendar
    slots = {
        "spec": calendar.spec,
        "zone": calendar.zone,
        "first_year": calendar.first_year,
        "last_year": calendar.last_year,
        "_day_start_t": (0.0, 1.0),  # the old calendar's other slots: ignored on rebuild
    }
    return _Old(
        QuoteEngine,
        {
            "schema": engine.schema,
            "regressor": model.regressor,
            "quantile_regressor": model.quantile_regressor,
            "policy": _Old(OLD_POLICIES[engine.policy_name], policy_state),
            "policy_name": engine.policy_name,
            "calendar": _Old(BusinessCalendar, (None, slots)),
            "unit": engine.unit,
            "target_late_rate": engine.target_late_rate,
            "segments": engine.segments,
            "max_promise_units": engine.max_promise_units,
            "risk": engine.risk,
        },
    )


def write_format_3(registry: Registry, version: str, model: TrainedModel, info: Any) -> str:
    """A format-3 bundle: the old engine pickled as joblib wrote it, and its old manifest."""
    old = f"20200101-000000-old{version[-5:]}"
    folder = registry.root / old
    folder.mkdir()
    with numpy_pickle._write_fileobject(str(folder / MODEL_FILE), compress=("zlib", 3)) as f:
        _OldShapePickler(f, protocol=None).dump(old_engine_state(model))
    manifest = {
        "version": old,
        "created_at": "2020-01-01T00:00:00Z",
        "model_sha256": hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest(),
        "policy": model.engine.policy_name,
        "target_late_rate": model.engine.target_late_rate,
        "unit": model.engine.unit,
        "libraries": {"scikit-learn": "1.5.0", "numpy": "1.26.0", "joblib": "1.3.0"},
        "info": info,
        "format_version": 3,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return old


@pytest.fixture(scope="module")
def trained(small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rebuild")
    registry = Registry(root)
    for i, policy in enumerate(OLD_POLICIES):
        train_bundle(small_sample_spec, registry, now=NOW + dt.timedelta(minutes=i), policy=policy)
    return root


@pytest.mark.parametrize("policy", list(OLD_POLICIES))
def test_an_old_bundle_is_refused_then_rebuilt_by_the_command_it_names(
    trained: Path, tmp_path: Path, policy: str
) -> None:
    shutil.copytree(trained, tmp_path / "bundles")
    registry = Registry(tmp_path / "bundles")
    new = next(m for m in registry.manifests() if m.policy == policy)
    model = registry.load_model(new.version)
    old = write_format_3(registry, new.version, model, new.info)

    with pytest.raises(BundleError) as refused:
        registry.load(old)
    command = f"promise rebuild-serving {old} --registry {registry.root}"
    assert command in str(refused.value)

    result = CliRunner().invoke(app, command.split()[1:])

    assert result.exit_code == 0, result.output
    rebuilt = result.output.strip().splitlines()[-1]
    assert rebuilt not in (old, new.version)
    engine = registry.load(rebuilt).engine
    orders = sample_orders(model.engine)
    state = ADAPTIVE_STATE if policy == "adaptive" else None
    assert quote(engine, orders, state) == quote(model.engine, orders, state)
    manifest = registry.manifest(rebuilt)
    assert manifest.format_version == 4 and manifest.info["rebuilt_from"] == old
    assert isinstance(registry.load_model(rebuilt), TrainedModel)
    # The old bundle stays as it was, still refused.
    with pytest.raises(BundleError, match="rebuild-serving"):
        registry.load(old)


def test_rebuilding_a_current_or_tampered_bundle_is_refused(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained, tmp_path / "bundles")
    registry = Registry(tmp_path / "bundles")
    new = registry.manifests()[0]
    current = CliRunner().invoke(
        app, ["rebuild-serving", new.version, "--registry", str(registry.root)]
    )
    assert current.exit_code == 1 and "only format 3 bundles" in current.output
    old = write_format_3(registry, new.version, registry.load_model(new.version), new.info)
    with (registry.root / old / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")
    tampered = CliRunner().invoke(app, ["rebuild-serving", old, "--registry", str(registry.root)])
    assert tampered.exit_code == 1 and "does not match its manifest's sha256" in tampered.output
