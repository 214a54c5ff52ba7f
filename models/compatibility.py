"""What a point-of-sale system would notice if another bundle were served: `differences`.

A point-of-sale system sends each order's features and reads back a promise in the bundle's
unit, in the store's time zone, with a buffer per segment. Two bundles are interchangeable for
it when they take the same features, each of the same kind, know every category value the
served one knows, and promise in the same unit, zone and segments. Anything else changes what
the system must send or what its customers are told, so `models.registry` refuses to promote
such a bundle unless forced, and the service refuses to switch to it unless confirmed.

Not differences: a candidate that knows more category values (a new store), other numeric
ranges, another policy, target or training window (what a retrain is for).

The facts are read from the manifests (`info["feature_schema"]`, `info["segments_by"]`,
`info["spec"]`, written by `training.pipeline`); given a bundle's engine, from its serving form
instead, which also covers bundles whose manifest lacks them or lists categories cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.errors import BundleError

if TYPE_CHECKING:  # models.registry imports this module to check a promotion
    from models.quoting import QuoteEngine
    from models.registry import Manifest

# `training.pipeline` lists at most this many known values per categorical feature (sorted, the
# rest cut): a value sorting after the last one listed may be known though not listed.
LISTED_CATEGORY_LIMIT = 500
# Values named in one sentence before "and N more".
SHOWN_VALUES = 5


@dataclass(frozen=True, slots=True)
class Interface:
    """What a point-of-sale system sends to a bundle and sees back (None: not recorded)."""

    categorical: Mapping[str, tuple[str, ...]] | None  # feature -> known values, sorted
    complete: bool  # every known value is listed (False: lists may be cut at the limit)
    numeric: tuple[str, ...] | None
    unit: str
    segments_by: tuple[str, ...] | None
    zone: str | None


class IncompatibleBundle(BundleError):
    """A promotion refused because the candidate differs from the served bundle in what a
    point-of-sale system sends or sees; `differences` lists how, one sentence each."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def interface_of(manifest: Manifest, engine: QuoteEngine | None = None) -> Interface:
    """The bundle's interface: from `engine` (its serving form) when given, else its manifest."""
    if engine is not None:
        schema = engine.schema
        return Interface(
            categorical={c.name: tuple(sorted(c.known)) for c in schema.categorical},
            complete=True,
            numeric=tuple(n.name for n in schema.numeric),
            unit=engine.unit,
            segments_by=tuple(engine.segments),
            zone=engine.calendar.zone.key,
        )
    info = manifest.info
    schema_info = info.get("feature_schema")
    categorical: dict[str, tuple[str, ...]] | None = None
    numeric: tuple[str, ...] | None = None
    if isinstance(schema_info, Mapping):
        raw_categorical = schema_info.get("categorical")
        raw_numeric = schema_info.get("numeric")
        if isinstance(raw_categorical, Mapping):
            categorical = {
                str(name): tuple(sorted(str(v) for v in values))
                for name, values in raw_categorical.items()
                if isinstance(values, list)
            }
        if isinstance(raw_numeric, Mapping):
            numeric = tuple(str(name) for name in raw_numeric)
    segments = info.get("segments_by")
    return Interface(
        categorical=categorical,
        complete=False,
        numeric=numeric,
        unit=manifest.unit,
        segments_by=tuple(str(s) for s in segments) if isinstance(segments, list) else None,
        zone=_zone_of(info.get("spec")),
    )


def differences(
    served: Manifest,
    candidate: Manifest,
    *,
    served_engine: QuoteEngine | None = None,
    candidate_engine: QuoteEngine | None = None,
) -> list[str]:
    """Sentences saying what a point-of-sale system would notice if `candidate` replaced
    `served`: features added, removed or of another kind, category values the served bundle
    knows and the candidate does not, the unit, the segments and the time zone. Empty: the two
    are interchangeable. Reads the serving forms when the engines are given."""
    old = interface_of(served, served_engine)
    new = interface_of(candidate, candidate_engine)
    before, after = served.version, candidate.version
    found = _feature_differences(old, new, before, after)
    if old.unit != new.unit:
        found.append(
            f"unit: {before} promises in {old.unit}s, {after} in {new.unit}s (every promise "
            "would be read differently)"
        )
    if old.segments_by is None or new.segments_by is None:
        if old.segments_by != new.segments_by:
            found.append(_unrecorded("segments", before if old.segments_by is None else after))
    elif old.segments_by != new.segments_by:
        found.append(
            f"segments: {before} keeps {_segments(old.segments_by)}, "
            f"{after} {_segments(new.segments_by)}"
        )
    if old.zone is None or new.zone is None:
        if old.zone != new.zone:
            found.append(_unrecorded("time zone", before if old.zone is None else after))
    elif old.zone != new.zone:
        found.append(f"time zone: {before} dates promises in {old.zone}, {after} in {new.zone}")
    return found


def _feature_differences(old: Interface, new: Interface, before: str, after: str) -> list[str]:
    if old.categorical is None or old.numeric is None:
        return [_unrecorded("feature schema", before)]
    if new.categorical is None or new.numeric is None:
        return [_unrecorded("feature schema", after)]
    kinds_before = {
        **dict.fromkeys(old.categorical, "categorical"),
        **dict.fromkeys(old.numeric, "numeric"),
    }
    kinds_after = {
        **dict.fromkeys(new.categorical, "categorical"),
        **dict.fromkeys(new.numeric, "numeric"),
    }
    found = []
    for name in kinds_after:
        if name not in kinds_before:
            found.append(
                f"feature {name!r} is new in {after}: a point-of-sale request without it is refused"
            )
    for name, kind in kinds_before.items():
        if name not in kinds_after:
            found.append(
                f"feature {name!r} is gone from {after}: a point-of-sale request that sends it "
                "is refused"
            )
        elif kinds_after[name] != kind:
            found.append(
                f"feature {name!r} is {kind} in {before} and {kinds_after[name]} in {after}"
            )
    for name, known_before in old.categorical.items():
        if name not in new.categorical:
            continue
        lost = _lost_values(known_before, new.categorical[name], new.complete)
        if lost:
            shown = ", ".join(repr(v) for v in lost[:SHOWN_VALUES])
            more = "" if len(lost) <= SHOWN_VALUES else f" and {len(lost) - SHOWN_VALUES} more"
            found.append(
                f"{name} {shown}{more}: known to {before}, never seen by {after} (such orders "
                "would be refused or quoted as unknown)"
            )
    return found


def _lost_values(before: tuple[str, ...], after: tuple[str, ...], complete: bool) -> list[str]:
    """Values known before and not after; from a list cut at the limit, only the values it
    would have listed (those sorting before its last one)."""
    kept = set(after)
    cut_short = not complete and len(after) >= LISTED_CATEGORY_LIMIT
    return [v for v in before if v not in kept and not (cut_short and v > after[-1])]


def _zone_of(spec: Any) -> str | None:
    """The calendar's zone as the spec gives it (it falls back to the dataset's)."""
    if not isinstance(spec, Mapping):
        return None
    calendar, dataset = spec.get("calendar"), spec.get("dataset")
    zone = calendar.get("timezone") if isinstance(calendar, Mapping) else None
    if zone is None and isinstance(dataset, Mapping):
        zone = dataset.get("timezone")
    return str(zone) if zone is not None else None


def _segments(names: tuple[str, ...]) -> str:
    return f"a buffer per {' x '.join(names)}" if names else "one buffer for all orders"


def _unrecorded(what: str, version: str) -> str:
    return f"{what}: the manifest of {version} does not record it, so it cannot be compared"
