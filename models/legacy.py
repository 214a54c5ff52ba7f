"""Rebuild the serving form of a format-3 bundle (a pickled `QuoteEngine` of the old shape).

`promise rebuild-serving VERSION` calls `rebuild_serving`: an explicit, trusted act of the data
scientist, since it unpickles the old `model.joblib` (a pickle is code; the service never does
this). The old engine held the scikit-learn estimators and a fitted policy; the unpickler maps
the old `models.quoting.QuoteEngine`, the old policy classes and `models.calendar.
BusinessCalendar` to holders that keep their pickled state as data, and lets everything else
(the regressors, which compile their trees when unpickled, the feature schema, segment buffers,
controls and risk distributions) load as the real classes. From that state it rebuilds:

- the rule from the old policy's fitted attributes: fixed/proportional `score_`, quantile
  `fitted_`, conformal `table_`/`depth_` with `relative` and `target_late_rate`, adaptive also
  `control_` and `use_nowcast`;
- the calendar from its spec and years (tables recomputed here);
- the trees from the regressors (`compiled()`),

and saves a new format-4 bundle (serving form, a `TrainedModel` pickle, manifest) beside the
old one, whose training info it keeps. Imports scikit-learn and joblib: training side only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import joblib
import joblib.numpy_pickle as numpy_pickle

from models.buffers import (
    AdaptiveBuffers,
    BufferRule,
    ConstantBuffer,
    QuantileBuffer,
    SegmentBuffers,
)
from models.calendar import BusinessCalendar
from models.errors import BundleError
from models.policies import BufferPolicy, make_policy
from models.quoting import QuoteEngine
from models.registry import MODEL_FILE, PICKLE_ONLY_FORMAT, Manifest, Registry
from models.trained import TrainedModel

__all__ = ["rebuild_serving"]


class _Held:
    """An old object's pickled state, kept as data (never its behaviour)."""

    kind: ClassVar[str] = "object"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        # A class with __slots__ pickles (None, {slot: value}) or (dict, slots).
        if isinstance(state, tuple):
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            self.state = merged
        elif isinstance(state, dict):
            self.state = dict(state)
        else:
            raise BundleError(f"an old {self.kind} pickled an unexpected state")


class _OldEngine(_Held):
    kind = "QuoteEngine"


class _OldCalendar(_Held):
    kind = "BusinessCalendar"


class _OldPolicy(_Held):
    kind = "policy"


_POLICY_KINDS = {
    "FixedPolicy": "fixed",
    "ProportionalPolicy": "proportional",
    "QuantilePolicy": "quantile",
    "ConformalPolicy": "conformal",
    "AdaptivePolicy": "adaptive",
}


def _policy_holder(name: str) -> type[_OldPolicy]:
    return type(name, (_OldPolicy,), {"kind": _POLICY_KINDS[name]})


class _LegacyUnpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]  # joblib: untyped
    """joblib's unpickler, with the old engine, policies and calendar read into holders."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("models.quoting", "QuoteEngine"):
            return _OldEngine
        if (module, name) == ("models.calendar", "BusinessCalendar"):
            return _OldCalendar
        if module == "models.policies" and name in _POLICY_KINDS:
            return _policy_holder(name)
        return super().find_class(module, name)


def read_old_engine(path: Path) -> dict[str, Any]:
    """The pickled state of an old `QuoteEngine` in a joblib file (unpickles: trusted files)."""
    try:
        with path.open("rb") as handle:
            validate = numpy_pickle._validate_fileobject_and_memmap
            with validate(handle, str(path), None) as (fobj, _):
                held = _LegacyUnpickler(str(path), fobj, True).load()
    except AttributeError as err:  # joblib's private reading API moved
        raise BundleError(
            f"this joblib ({joblib.__version__}) cannot be read the old way: {err}"
        ) from err
    if not isinstance(held, _OldEngine):
        raise BundleError(f"{path} does not hold an old quote engine")
    return held.state


def rebuild_serving(registry: Registry, version: str, now: dt.datetime) -> Manifest:
    """A new format-4 bundle rebuilt from the format-3 bundle `version` (which stays)."""
    old = registry.manifest(version)
    if old.format_version != PICKLE_ONLY_FORMAT:
        raise BundleError(
            f"bundle {version} has format {old.format_version}: only format "
            f"{PICKLE_ONLY_FORMAT} bundles need their serving form rebuilt"
        )
    registry.check_files(version, old)
    state = read_old_engine(registry.folder(version) / MODEL_FILE)
    model = trained_model(state)
    info = {**old.info, "rebuilt_from": version}
    return registry.save(model, info, now)


def trained_model(state: Mapping[str, Any]) -> TrainedModel:
    """The `TrainedModel` an old engine's state describes."""
    try:
        regressor = state["regressor"]
        quantile_regressor = state.get("quantile_regressor")
        held_policy = state["policy"]
        held_calendar = state["calendar"]
        if not isinstance(held_policy, _OldPolicy) or not isinstance(held_calendar, _OldCalendar):
            raise BundleError("the old engine's policy or calendar is not of a known kind")
        rule = _rule(held_policy)
        calendar_state = held_calendar.state
        calendar = BusinessCalendar(
            calendar_state["spec"], calendar_state["first_year"], calendar_state["last_year"]
        )
        engine = QuoteEngine(
            schema=state["schema"],
            expected_trees=regressor.compiled(),
            quantile_trees=None if quantile_regressor is None else quantile_regressor.compiled(),
            buffer_rule=rule,
            policy_name=str(state["policy_name"]),
            calendar=calendar,
            unit=state["unit"],
            target_late_rate=float(state["target_late_rate"]),
            segments=tuple(state["segments"]),
            max_promise_units=state.get("max_promise_units"),
            risk=state.get("risk"),
        )
    except KeyError as err:
        raise BundleError(f"the old engine lacks {err}") from err
    return TrainedModel(engine, regressor, quantile_regressor, _policy(held_policy, rule))


def _rule(policy: _OldPolicy) -> BufferRule:
    s = policy.state
    target = float(s["target_late_rate"])
    if policy.kind in ("fixed", "proportional"):
        return ConstantBuffer(target, float(s["score_"]), policy.kind == "proportional")
    if policy.kind == "quantile":
        if not s.get("fitted_"):
            raise BundleError("the old quantile policy was never fitted")
        return QuantileBuffer(target)
    table, depth, relative = s["table_"], int(s["depth_"]), bool(s["relative"])
    if policy.kind == "conformal":
        return SegmentBuffers(target, table, depth, relative)
    return AdaptiveBuffers(target, table, depth, relative, s["control_"], bool(s["use_nowcast"]))


def _policy(policy: _OldPolicy, rule: BufferRule) -> BufferPolicy:
    """A fitted policy of today's class with the old one's parameters and the rebuilt rule."""
    fresh = make_policy(policy.kind)
    params = {name: policy.state[name] for name in fresh.get_params() if name in policy.state}
    fitted = make_policy(policy.kind, **params)
    fitted.rule_ = rule
    return fitted
