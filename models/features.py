"""The one feature function: order features plus time features of `ordered_at` -> a float matrix.

Training, back-testing and the service all build model inputs here, so a model never sees
features encoded two ways. Layout of a row: categorical codes (in spec order), numeric values
(in spec order), then `TIME_FEATURES`. Categories are coded from dictionaries built at fit time;
a category the model did not learn (unseen, or too rare to get its own code) becomes NaN, which
the gradient-boosting model treats as missing.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.calendar import TIME_PARTS, BusinessCalendar, LocalParts
from models.errors import InputError

FloatArray = NDArray[np.float64]

TIME_FEATURES: tuple[str, ...] = TIME_PARTS
# Histogram gradient boosting gives categorical features at most 255 bins, one kept for missing.
MAX_CATEGORY_CODES = 254
MIN_CATEGORY_COUNT = 5


def category_label(value: object) -> str | None:
    """The canonical text of a category value (`3`, `3.0` and `"3"` agree); None if missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)
    return text if text != "" else None


@dataclass(frozen=True, slots=True)
class CategoricalFeature:
    """A categorical feature; `categories[i]` has code i, `known` is every value seen."""

    name: str
    categories: tuple[str, ...]
    known: frozenset[str]
    codes: Mapping[Any, float]  # label -> code; Any so raw values look up safely


@dataclass(frozen=True, slots=True)
class NumericFeature:
    """A numeric feature with its finite training range; `is_integer` when every training value
    was a whole number (a count, or 0/1 for yes/no), so a form can ask for whole numbers."""

    name: str
    low: float
    high: float
    has_missing: bool
    is_integer: bool = False

    @property
    def is_yes_no(self) -> bool:
        """Whether training saw this feature only as 0 and 1: a yes/no question."""
        return self.is_integer and self.low == 0.0 and self.high == 1.0

    @property
    def far_low(self) -> float:
        return self.low - self._margin

    @property
    def far_high(self) -> float:
        return self.high + self._margin

    @property
    def _margin(self) -> float:
        # "Far outside" means beyond one more training span on either side.
        return max(self.high - self.low, abs(self.high), 1.0)


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """What the model was trained on: categories, numeric ranges and the column layout."""

    categorical: tuple[CategoricalFeature, ...]
    numeric: tuple[NumericFeature, ...]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.categorical] + [f.name for f in self.numeric]

    @property
    def column_names(self) -> list[str]:
        return [*self.feature_names, *TIME_FEATURES]

    @property
    def categorical_mask(self) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.column_names), dtype=bool)
        mask[: len(self.categorical)] = True
        return mask

    def encode(
        self, columns: Mapping[str, Sequence[object] | NDArray[np.generic]], parts: LocalParts
    ) -> FloatArray:
        """The model matrix, shape (n_orders, n_columns), for columns of raw feature values."""
        n = len(parts.weekday)
        matrix = self._matrix(columns, n)
        matrix[:, len(self.feature_names) :] = parts.values.reshape((n, len(TIME_FEATURES)))
        return matrix

    def encode_at(
        self,
        columns: Mapping[str, Sequence[object] | NDArray[np.generic]],
        ordered_at_s: FloatArray,
        calendar: BusinessCalendar,
    ) -> FloatArray:
        """`encode(columns, calendar.local_parts(ordered_at_s))`, the time columns written in
        place by the calendar (`ordered_at_s` of shape (n,)): the quote path's matrix."""
        matrix = self._matrix(columns, int(ordered_at_s.size))
        calendar.local_parts_into(ordered_at_s, matrix, len(self.feature_names))
        return matrix

    def _matrix(
        self, columns: Mapping[str, Sequence[object] | NDArray[np.generic]], n: int
    ) -> FloatArray:
        """The model matrix with its feature columns filled and its time columns not yet.

        All categorical columns are coded in one `fromiter` over the chained look-ups and all
        numeric ones converted in one `np.array` (None and NaN both become NaN): a few calls
        whatever the number of features, so one order costs little more than a row of a batch."""
        n_cat, n_num = len(self.categorical), len(self.numeric)
        matrix = np.empty((n, n_cat + n_num + len(TIME_FEATURES)), dtype=np.float64)
        if n_cat:
            lookups = itertools.chain.from_iterable(
                map(cat.codes.get, columns[cat.name], itertools.repeat(math.nan, n))
                for cat in self.categorical
            )
            codes = np.fromiter(lookups, dtype=np.float64, count=n_cat * n)
            matrix[:, :n_cat] = codes.reshape((n_cat, n)).T
        if n_num:
            values = np.array([columns[num.name] for num in self.numeric], dtype=np.float64)
            if values.shape != (n_num, n):
                raise ValueError(f"numeric feature columns of shape {values.shape}, expected n={n}")
            matrix[:, n_cat : n_cat + n_num] = values.T
        return matrix

    def check_order(
        self, features: Mapping[str, object], *, strict_categories: bool = True
    ) -> tuple[dict[str, object], list[str]]:
        """Validate one order's features; returns (clean features, warnings).

        Raises `InputError` naming the field for a missing or unknown feature, a wrong type,
        a category never seen in training (unless `strict_categories` is False: then a warning,
        and the model treats it as missing), a value a count cannot take (`count_problem`:
        half an item, -1 items, 2 for a yes/no) and a value far outside the training range.
        A numeric null is accepted as missing, with a warning.
        """
        expected = self.feature_names
        unknown = sorted(set(features) - set(expected))
        if unknown:
            raise InputError(
                f"unknown feature {unknown[0]!r}; this model takes {', '.join(expected)}",
                field=unknown[0],
            )
        missing = [name for name in expected if name not in features]
        if missing:
            raise InputError(f"feature {missing[0]!r} is missing", field=missing[0])
        clean: dict[str, object] = {}
        warnings: list[str] = []
        for cat in self.categorical:
            clean[cat.name] = self._check_category(
                cat, features[cat.name], strict_categories, warnings
            )
        for num in self.numeric:
            clean[num.name] = _check_number(num, features[num.name], warnings)
        return clean, warnings

    @staticmethod
    def _check_category(
        cat: CategoricalFeature, raw: object, strict: bool, warnings: list[str]
    ) -> str | None:
        if (raw is not None and not isinstance(raw, str | int)) or isinstance(raw, bool):
            raise InputError(f"{cat.name} must be text, got {type(raw).__name__}", field=cat.name)
        label = category_label(raw)
        if label is None:
            warnings.append(f"{cat.name} is missing; the quote is less certain")
            return None
        if label not in cat.known:
            shown = ", ".join(sorted(cat.known)[:20])
            more = "" if len(cat.known) <= 20 else f" (and {len(cat.known) - 20} more)"
            message = f"{cat.name} {label!r} was never seen in training; known: {shown}{more}"
            if strict:
                raise InputError(message, field=cat.name)
            warnings.append(message + "; treated as missing")
        return label


def count_problem(num: NumericFeature, value: float, label: str | None = None) -> str | None:
    """Why `value` cannot be meant for a feature training saw only as whole numbers, in the
    words of `label` (the feature's name without one); None when it can, or when training saw
    fractions too. A yes/no feature (only 0 and 1 seen) takes 0 or 1; a count a whole number no
    lower than the least training saw (a negative count where it saw none: -1 items). The API
    (`FeatureSchema.check_order`) and the staff form refuse by this one rule."""
    if not num.is_integer or not math.isfinite(value):
        return None
    label = label or num.name
    if num.is_yes_no:
        return None if value in (0.0, 1.0) else f"{label} must be 0 (no) or 1 (yes), not {value:g}"
    if not value.is_integer():
        return f"{label} must be a whole number, like {max(num.low, round(value)):g}"
    if value < num.low:
        return f"{label} cannot be less than {num.low:g}"
    return None


def _check_number(num: NumericFeature, raw: object, warnings: list[str]) -> float | None:
    if raw is None:
        warnings.append(f"{num.name} is missing; the quote is less certain")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InputError(f"{num.name} must be a number, got {type(raw).__name__}", field=num.name)
    value = float(raw)
    if not math.isfinite(value):
        raise InputError(f"{num.name} must be a finite number", field=num.name)
    problem = count_problem(num, value)
    if problem is not None:
        raise InputError(problem, field=num.name)
    if value < num.far_low or value > num.far_high:
        raise InputError(
            f"{num.name} = {value:g} is far outside the training range [{num.low:g}, {num.high:g}]",
            field=num.name,
        )
    if value < num.low or value > num.high:
        warnings.append(
            f"{num.name} = {value:g} is outside the training range [{num.low:g}, {num.high:g}]"
        )
    return value


def fit_schema(
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]],
    categorical: Sequence[str],
    numeric: Sequence[str],
) -> FeatureSchema:
    """Learn category codes and numeric ranges from training columns (labels already canonical)."""
    cats = []
    for name in categorical:
        counts = Counter(columns[name])  # counted in C; insertion order kept for ties
        counts.pop(None, None)
        # The most frequent values get codes; rarer ones are known but modelled as missing.
        frequent = [
            str(v) for v, c in counts.most_common(MAX_CATEGORY_CODES) if c >= MIN_CATEGORY_COUNT
        ]
        ordered = tuple(sorted(frequent))
        cats.append(
            CategoricalFeature(
                name=name,
                categories=ordered,
                known=frozenset(str(v) for v in counts),
                codes={label: float(i) for i, label in enumerate(ordered)},
            )
        )
    nums = []
    for name in numeric:
        values = np.asarray(columns[name], dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        nums.append(
            NumericFeature(
                name=name,
                low=low,
                high=high,
                has_missing=bool(finite.size < values.size),
                is_integer=bool(finite.size and np.all(finite == np.round(finite))),
            )
        )
    return FeatureSchema(categorical=tuple(cats), numeric=tuple(nums))


def category_codes(
    codes: Mapping[Any, float], values: Sequence[object] | NDArray[np.generic], n: int
) -> FloatArray:
    """`codes.get(value, NaN)` for each of the n values, shape (n,): the model's codes.

    `map` with the mapping's own `get` stays in C (~25 ns a value, a third of a generator's);
    a batch of 100,000 orders spends a few ms here instead of tens."""
    return np.fromiter(
        map(codes.get, values, itertools.repeat(math.nan, n)), dtype=np.float64, count=n
    )
