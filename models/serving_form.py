"""A `QuoteEngine` as plain data: one JSON document and named numpy arrays, and back.

A serving bundle (`models.registry`) stores these as `serving.json` and `serving.npz`; the
service reads them with `np.load(allow_pickle=False)` and `json.loads`, so loading a bundle
runs no code from it and needs neither scikit-learn nor joblib. The JSON names only kinds this
module knows (a fixed table of classes, never a class path), and every array it refers to must
be in the npz with a numeric or boolean dtype.

`engine_form(engine)` gives (document, arrays); `engine_from_form(document, arrays)` rebuilds
an engine that quotes exactly what the original quotes. The compiled trees and the calendar's
tables are walked generically (`dataclasses.fields`: scalars to JSON, arrays to the npz under
a prefixed key), so they may gain or lose fields without a change here. Score distributions
of many segments are concatenated into one values and one CDF array, each segment keeping its
[start, stop) slice. Floats travel through JSON as `repr` (exact), infinities as `Infinity`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from models.buffers import (
    AdaptiveBuffers,
    BufferRule,
    ConstantBuffer,
    QuantileBuffer,
    SegmentBuffers,
)
from models.calendar import BusinessCalendar, CalendarSpec, CalendarTables
from models.control import SegmentControl
from models.errors import BundleError
from models.fast import CompiledTrees, LeafMaskTrees, WalkedTrees
from models.features import CategoricalFeature, FeatureSchema, NumericFeature
from models.pooling import SegmentBuffer
from models.quoting import QuoteEngine
from models.risk import RiskModel
from models.scores import ScoreDistribution
from models.units import HOURS_PER_UNIT, Unit

__all__ = ["FORM_VERSION", "Arrays", "engine_form", "engine_from_form"]

Arrays = dict[str, NDArray[Any]]
Document = dict[str, Any]

# Bumped when the document's layout changes; the registry's format version covers the files.
FORM_VERSION = 1
_TREE_KINDS: dict[str, type[LeafMaskTrees] | type[WalkedTrees]] = {
    "leaf_masks": LeafMaskTrees,
    "walked": WalkedTrees,
}
_ALLOWED_KINDS = "biuf"  # bool, signed and unsigned integers, floats: never objects or strings


def engine_form(engine: QuoteEngine) -> tuple[Document, Arrays]:
    """The engine as (a JSON-ready document, arrays by name for `np.savez`)."""
    arrays: Arrays = {}
    document: Document = {
        "form_version": FORM_VERSION,
        "schema": _schema_form(engine.schema),
        "expected_trees": _trees_form(engine.expected_trees, "expected", arrays),
        "quantile_trees": (
            None
            if engine.quantile_trees is None
            else _trees_form(engine.quantile_trees, "quantile", arrays)
        ),
        "buffer_rule": _rule_form(engine.buffer_rule, arrays),
        "policy_name": engine.policy_name,
        "calendar": _calendar_form(engine.calendar, arrays),
        "unit": engine.unit,
        "target_late_rate": engine.target_late_rate,
        "segments": list(engine.segments),
        "max_promise_units": engine.max_promise_units,
        "risk": None if engine.risk is None else _risk_form(engine.risk, arrays),
    }
    return document, arrays


def engine_from_form(
    document: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]
) -> QuoteEngine:
    """The engine a document and its arrays describe; `BundleError` for anything malformed."""
    reader = _Reader(arrays)
    try:
        if document.get("form_version") != FORM_VERSION:
            raise BundleError(
                f"serving form version {document.get('form_version')!r}, "
                f"this Promise reads {FORM_VERSION}"
            )
        quantile = document["quantile_trees"]
        risk = document["risk"]
        return QuoteEngine(
            schema=_schema_from(document["schema"]),
            expected_trees=_trees_from(document["expected_trees"], reader),
            quantile_trees=None if quantile is None else _trees_from(quantile, reader),
            buffer_rule=_rule_from(document["buffer_rule"], reader),
            policy_name=str(document["policy_name"]),
            calendar=_calendar_from(document["calendar"], reader),
            unit=_unit(document["unit"]),
            target_late_rate=float(document["target_late_rate"]),
            segments=tuple(str(s) for s in document["segments"]),
            max_promise_units=_optional_float(document["max_promise_units"]),
            risk=None if risk is None else _risk_from(risk, reader),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise BundleError(f"the serving form is malformed: {type(err).__name__}: {err}") from err


class _Reader:
    """Hands out the npz's arrays by name, refusing missing ones and non-numeric dtypes."""

    def __init__(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        self.arrays = arrays

    def get(self, name: str) -> NDArray[Any]:
        if name not in self.arrays:
            raise BundleError(f"the serving form names an array {name!r} its npz lacks")
        array = np.asarray(self.arrays[name])
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise BundleError(f"serving array {name!r} has dtype {array.dtype}: refused")
        array = np.ascontiguousarray(array)
        array.flags.writeable = False  # shared by every thread that quotes with the engine
        return array


# --------------------------------------------------------------------------- generic dataclasses


def _fields_form(value: Any, prefix: str, arrays: Arrays) -> Document:
    """A dataclass's fields: scalars and strings as they are, arrays stored as `prefix.name`."""
    out: Document = {}
    for spec in dataclasses.fields(value):
        item = getattr(value, spec.name)
        if isinstance(item, np.ndarray):
            key = f"{prefix}.{spec.name}"
            arrays[key] = item
            out[spec.name] = {"array": key}
        elif isinstance(item, np.generic):
            out[spec.name] = item.item()
        elif item is None or isinstance(item, bool | int | float | str):
            out[spec.name] = item
        else:
            raise TypeError(f"{type(value).__name__}.{spec.name} is a {type(item).__name__}")
    return out


def _fields_from(cls: type[Any], form: Mapping[str, Any], reader: _Reader) -> Any:
    names = {spec.name for spec in dataclasses.fields(cls)}
    if set(form) != names:
        raise BundleError(
            f"the serving form's {cls.__name__} has fields {sorted(form)}, expected {sorted(names)}"
        )
    values: dict[str, Any] = {}
    for name, item in form.items():
        if isinstance(item, dict):
            values[name] = reader.get(str(item["array"]))
        elif item is None or isinstance(item, bool | int | float | str):
            values[name] = item
        else:
            raise BundleError(f"the serving form's {cls.__name__}.{name} is not a scalar")
    return cls(**values)


# --------------------------------------------------------------------------- parts


def _schema_form(schema: FeatureSchema) -> Document:
    return {
        "categorical": [
            {
                "name": cat.name,
                "categories": list(cat.categories),
                "known": sorted(cat.known),
                "codes": [[label, code] for label, code in cat.codes.items()],
            }
            for cat in schema.categorical
        ],
        "numeric": [
            {
                "name": n.name,
                "low": n.low,
                "high": n.high,
                "has_missing": n.has_missing,
                "is_integer": n.is_integer,
            }
            for n in schema.numeric
        ],
    }


def _schema_from(form: Mapping[str, Any]) -> FeatureSchema:
    categorical = tuple(
        CategoricalFeature(
            name=str(cat["name"]),
            categories=tuple(str(c) for c in cat["categories"]),
            known=frozenset(str(k) for k in cat["known"]),
            codes={str(label): float(code) for label, code in cat["codes"]},
        )
        for cat in form["categorical"]
    )
    numeric = tuple(
        NumericFeature(
            name=str(n["name"]),
            low=float(n["low"]),
            high=float(n["high"]),
            has_missing=bool(n["has_missing"]),
            # Bundles written before whole numbers were recorded read as any number.
            is_integer=bool(n.get("is_integer", False)),
        )
        for n in form["numeric"]
    )
    return FeatureSchema(categorical=categorical, numeric=numeric)


def _trees_form(trees: CompiledTrees, prefix: str, arrays: Arrays) -> Document:
    kind = next(name for name, cls in _TREE_KINDS.items() if type(trees) is cls)
    return {"kind": kind, "fields": _fields_form(trees, f"{prefix}_trees", arrays)}


def _trees_from(form: Mapping[str, Any], reader: _Reader) -> CompiledTrees:
    cls = _TREE_KINDS.get(str(form["kind"]))
    if cls is None:
        raise BundleError(f"unknown compiled tree kind {form['kind']!r} in the serving form")
    return cast("CompiledTrees", _fields_from(cls, form["fields"], reader))


def _calendar_form(calendar: BusinessCalendar, arrays: Arrays) -> Document:
    spec = calendar.spec
    return {
        "spec": {
            "timezone": spec.timezone,
            "open_weekdays": list(spec.open_weekdays),
            "holidays_country": spec.holidays_country,
            "holidays_subdivision": spec.holidays_subdivision,
            "cutoff": None if spec.cutoff is None else spec.cutoff.isoformat(),
            "opens": spec.opens.isoformat(),
            "locale": spec.locale,
        },
        "first_year": calendar.first_year,
        "last_year": calendar.last_year,
        "tables": _fields_form(calendar.tables, "calendar", arrays),
        "holiday_names": [[day, name] for day, name in calendar.holiday_names.items()],
    }


def _calendar_from(form: Mapping[str, Any], reader: _Reader) -> BusinessCalendar:
    raw = form["spec"]
    cutoff = raw["cutoff"]
    spec = CalendarSpec(
        timezone=str(raw["timezone"]),
        open_weekdays=tuple(int(d) for d in raw["open_weekdays"]),
        holidays_country=_optional_str(raw["holidays_country"]),
        holidays_subdivision=_optional_str(raw["holidays_subdivision"]),
        cutoff=None if cutoff is None else dt.time.fromisoformat(str(cutoff)),
        opens=dt.time.fromisoformat(str(raw["opens"])),
        # Bundles made before locales were kept write dates in their country's locale.
        locale=_optional_str(raw.get("locale")),
    )
    tables = cast("CalendarTables", _fields_from(CalendarTables, form["tables"], reader))
    names = {int(day): str(name) for day, name in form.get("holiday_names", [])}
    return BusinessCalendar.from_tables(
        spec, int(form["first_year"]), int(form["last_year"]), tables, names
    )


class _Distributions:
    """Score distributions of many segments packed into two arrays under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.values: list[NDArray[np.float64]] = []
        self.cdf: list[NDArray[np.float64]] = []
        self.size = 0

    def add(self, dist: ScoreDistribution) -> Document:
        start = self.size
        self.values.append(np.asarray(dist.values, dtype=np.float64))
        self.cdf.append(np.asarray(dist.cdf, dtype=np.float64))
        self.size += int(dist.values.size)
        return {"slice": [start, self.size], "n": dist.n, "n_censored": dist.n_censored}

    def store(self, arrays: Arrays) -> None:
        empty = np.empty(0, dtype=np.float64)
        arrays[f"{self.prefix}.values"] = np.concatenate([empty, *self.values])
        arrays[f"{self.prefix}.cdf"] = np.concatenate([empty, *self.cdf])


def _distribution_from(
    form: Mapping[str, Any], values: NDArray[Any], cdf: NDArray[Any]
) -> ScoreDistribution:
    start, stop = (int(i) for i in form["slice"])
    if not 0 <= start <= stop <= values.size or values.size != cdf.size:
        raise BundleError(f"a score distribution's slice {start}:{stop} is out of its arrays")
    return ScoreDistribution(
        values=values[start:stop],
        cdf=cdf[start:stop],
        n=int(form["n"]),
        n_censored=int(form["n_censored"]),
    )


def _rule_form(rule: BufferRule, arrays: Arrays) -> Document:
    if isinstance(rule, ConstantBuffer):
        return {
            "kind": "constant",
            "target_late_rate": rule.target_late_rate,
            "score": rule.score,
            "relative": rule.relative,
        }
    if isinstance(rule, QuantileBuffer):
        return {"kind": "quantile", "target_late_rate": rule.target_late_rate}
    packed = _Distributions("buffer")
    table = [
        {
            "key": seg.key,
            "depth": seg.depth,
            "distribution": packed.add(seg.distribution),
            "score": seg.score,
            "own_weight": seg.own_weight,
            "path": list(seg.path),
        }
        for seg in rule.table.values()
    ]
    packed.store(arrays)
    form: Document = {
        "kind": "segments",
        "target_late_rate": rule.target_late_rate,
        "table": table,
        "depth": rule.depth,
        "relative": rule.relative,
    }
    if isinstance(rule, AdaptiveBuffers):
        form["kind"] = "adaptive"
        form["controls"] = {
            key: dataclasses.asdict(control) for key, control in rule.controls.items()
        }
        form["use_nowcast"] = rule.use_nowcast
    return form


def _rule_from(form: Mapping[str, Any], reader: _Reader) -> BufferRule:
    kind = form["kind"]
    target = float(form["target_late_rate"])
    if kind == "constant":
        return ConstantBuffer(target, float(form["score"]), bool(form["relative"]))
    if kind == "quantile":
        return QuantileBuffer(target)
    if kind not in ("segments", "adaptive"):
        raise BundleError(f"unknown buffer rule kind {kind!r} in the serving form")
    values, cdf = reader.get("buffer.values"), reader.get("buffer.cdf")
    table = {
        str(seg["key"]): SegmentBuffer(
            key=str(seg["key"]),
            depth=int(seg["depth"]),
            distribution=_distribution_from(seg["distribution"], values, cdf),
            score=float(seg["score"]),
            own_weight=float(seg["own_weight"]),
            path=tuple(str(p) for p in seg["path"]),
        )
        for seg in form["table"]
    }
    depth, relative = int(form["depth"]), bool(form["relative"])
    if kind == "segments":
        return SegmentBuffers(target, table, depth, relative)
    controls = {
        str(key): SegmentControl(**{name: float(v) for name, v in control.items()})
        for key, control in form["controls"].items()
    }
    return AdaptiveBuffers(target, table, depth, relative, controls, bool(form["use_nowcast"]))


def _risk_form(risk: RiskModel, arrays: Arrays) -> Document:
    packed = _Distributions("risk")
    table = {key: packed.add(dist) for key, dist in risk.table.items()}
    packed.store(arrays)
    return {"depth": risk.depth, "table": table}


def _risk_from(form: Mapping[str, Any], reader: _Reader) -> RiskModel:
    values, cdf = reader.get("risk.values"), reader.get("risk.cdf")
    table = {str(key): _distribution_from(dist, values, cdf) for key, dist in form["table"].items()}
    return RiskModel(table=table, depth=int(form["depth"]))


def _unit(value: object) -> Unit:
    if value not in HOURS_PER_UNIT:
        raise BundleError(f"the serving form's unit {value!r} is none of {sorted(HOURS_PER_UNIT)}")
    return cast("Unit", value)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(cast("float", value))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
