"""Buffer policies: how much to add to the expected duration so promises hold.

Every policy is a scikit-learn estimator. Its constructor only stores its parameters (so
`get_params`, `set_params` and `sklearn.base.clone` work); `fit` on a calibration slice later in
time than the model's training slice (`models.scores.CalibrationSlice`) returns the policy, its
learnt state in attributes ending in `_`; then it answers a buffer of zero or more hours for each
order (we never promise earlier than we expect), and before `fit` raises `NotFittedError`.
`make_policy(name, **params)` builds one by the name a spec gives.

- `fixed`, `proportional`: a constant number of hours or a share of the expectation, as given
  or the one constant that meets the target on the calibration slice;
- `quantile`: the quantile model's answer at 1 - target, less the expectation;
- `conformal`: the split-conformal quantile of the calibration scores (`models.scores`), per
  segment and partially pooled (`models.pooling`), on the hours or the relative scale;
- `adaptive`: conformal whose per-segment buffer follows outcomes and open orders online
  (`models.control`).

A policy answers with the same numbers three ways: `buffers` for each order's tuple of segment
labels (the reference), and on the quote path `column_buffers` for feature columns (the
conformal kinds resolve each distinct segment once, not once per order) and `buffer_one` for one
order on Python floats (a one-element `buffers` call costs ~20 us of numpy overhead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from models.control import (
    ControlState,
    OrdersSeen,
    controlled_score,
    fit_controls,
    segment_nowcasts,
)
from models.errors import SpecError
from models.pooling import SegmentBuffer, pooled_segments
from models.scores import (
    CalibrationSlice,
    ScoreDistribution,
    calibration_scores,
    score_distribution,
)
from models.segments import (
    GLOBAL_SEGMENT,
    SEGMENT_SEPARATOR,
    Columns,
    distinct_labels,
    segment_key,
    segment_keys,
    segment_labels,
)

# The policies, and the names of their parts that training and the service read from here.
__all__ = [
    "GLOBAL_SEGMENT",
    "POLICY_NAMES",
    "SEGMENT_SEPARATOR",
    "AdaptivePolicy",
    "BufferAnswer",
    "BufferPolicy",
    "CalibrationSlice",
    "ConformalPolicy",
    "FixedPolicy",
    "ProportionalPolicy",
    "QuantilePolicy",
    "ScoreDistribution",
    "SegmentBuffer",
    "make_policy",
    "score_distribution",
    "segment_key",
    "segment_keys",
]

FloatArray = NDArray[np.float64]
Labels = Sequence[Sequence[str | None]]


@dataclass(frozen=True, slots=True)
class BufferAnswer:
    """Buffers for a batch: hours, the segment each came from, and the confidence level used."""

    buffer_hours: FloatArray
    segments: list[str]
    levels: FloatArray


class BufferPolicy(BaseEstimator):
    """Base class: `fit` on a calibration slice, then buffers for new expectations."""

    # The attribute `fit` sets: a policy without it is not fitted.
    _fitted_attribute: ClassVar[str]

    def __init__(self, target_late_rate: float = 0.05) -> None:
        self.target_late_rate = target_late_rate

    def fit(self, calibration: CalibrationSlice) -> Self:
        raise NotImplementedError

    def calibrating(self) -> Self:
        """An unfitted copy that calibrates every buffer to its target, a given one dropped (the
        back-test's trade-off sweep: a buffer set by hand would not move with the target)."""
        copy: Self = clone(self)
        return copy

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Labels,
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """Buffers for expectations (n,) and each order's tuple of segment labels."""
        raise NotImplementedError

    def column_buffers(
        self,
        expected_hours: FloatArray,
        columns: Columns,
        segments: Sequence[str],
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """`buffers` for orders given as feature columns, `segments` naming the label columns."""
        labels = segment_labels(columns, segments, int(expected_hours.size))
        return self.buffers(expected_hours, labels, quantile_hours, state)

    def buffer_one(
        self,
        expected_hours: float,
        labels: Sequence[str | None],
        quantile_hours: float | None = None,
        state: ControlState | None = None,
    ) -> tuple[float, str, float]:
        """(buffer hours, segment key, level) for one order; the same numbers as `buffers`."""
        raise NotImplementedError

    def segment_table(self) -> list[dict[str, object]]:
        """What the manifest records about each calibrated segment (none for most policies)."""
        return []

    @property
    def level(self) -> float:
        """The confidence level the target keeps: 1 - target late rate."""
        return 1.0 - self.target_late_rate

    def __sklearn_is_fitted__(self) -> bool:
        return self._fitted_attribute in self.__dict__

    def _check_fitted(self) -> None:
        # A dictionary look-up: `check_is_fitted` costs ~4 us, a sixth of a quote.
        if self._fitted_attribute not in self.__dict__:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")


class _UnsegmentedPolicy(BufferPolicy):
    """A policy whose buffers come from no segment: every order at the target's level."""

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Labels,
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        self._check_fitted()
        hours = self._hours(expected_hours, quantile_hours)
        n = hours.size
        return BufferAnswer(hours, [GLOBAL_SEGMENT] * n, np.full(n, self.level))

    def buffer_one(
        self,
        expected_hours: float,
        labels: Sequence[str | None],
        quantile_hours: float | None = None,
        state: ControlState | None = None,
    ) -> tuple[float, str, float]:
        self._check_fitted()
        return self._hours_one(expected_hours, quantile_hours), GLOBAL_SEGMENT, self.level

    def _hours(self, expected_hours: FloatArray, quantile_hours: FloatArray | None) -> FloatArray:
        raise NotImplementedError

    def _hours_one(self, expected_hours: float, quantile_hours: float | None) -> float:
        raise NotImplementedError


class _ConstantPolicy(_UnsegmentedPolicy):
    """One score for every order, as given (the parameter `_given` names) or the one that keeps
    the target on the calibration slice: buffer hours, or on the relative scale a share of the
    expectation."""

    _fitted_attribute = "score_"
    _given: ClassVar[str]
    _relative: ClassVar[bool]

    def fit(self, calibration: CalibrationSlice) -> Self:
        given: float | None = getattr(self, self._given)
        if given is None:
            scores = calibration_scores(calibration, self._relative)
            dist = score_distribution(scores, calibration.censored)
            given = max(0.0, dist.conformal_quantile(self.target_late_rate))
        self.score_ = float(given)
        return self

    def calibrating(self) -> Self:
        copy: Self = clone(self).set_params(**{self._given: None})
        return copy

    def _hours(self, expected_hours: FloatArray, quantile_hours: FloatArray | None) -> FloatArray:
        if self._relative:
            return expected_hours * self.score_
        return np.full(expected_hours.size, self.score_)

    def _hours_one(self, expected_hours: float, quantile_hours: float | None) -> float:
        return expected_hours * self.score_ if self._relative else self.score_


class FixedPolicy(_ConstantPolicy):
    """A constant buffer: `fixed_buffer_hours`, or the one constant that meets the target."""

    _given = "fixed_buffer_hours"
    _relative = False

    def __init__(
        self, target_late_rate: float = 0.05, fixed_buffer_hours: float | None = None
    ) -> None:
        super().__init__(target_late_rate)
        self.fixed_buffer_hours = fixed_buffer_hours


class ProportionalPolicy(_ConstantPolicy):
    """A share of the expected duration: `proportional_buffer`, or calibrated to the target."""

    _given = "proportional_buffer"
    _relative = True

    def __init__(
        self, target_late_rate: float = 0.05, proportional_buffer: float | None = None
    ) -> None:
        super().__init__(target_late_rate)
        self.proportional_buffer = proportional_buffer


class QuantilePolicy(_UnsegmentedPolicy):
    """The quantile model's answer at 1 - target, less the expectation (never below zero)."""

    _fitted_attribute = "fitted_"

    def fit(self, calibration: CalibrationSlice) -> Self:
        self.fitted_ = True  # the quantile model, fitted apart, holds what there is to learn
        return self

    def _hours(self, expected_hours: FloatArray, quantile_hours: FloatArray | None) -> FloatArray:
        if quantile_hours is None:
            raise ValueError(_NO_QUANTILE_HOURS)
        return np.maximum(quantile_hours - expected_hours, 0.0)

    def _hours_one(self, expected_hours: float, quantile_hours: float | None) -> float:
        if quantile_hours is None:
            raise ValueError(_NO_QUANTILE_HOURS)
        return max(quantile_hours - expected_hours, 0.0)


_NO_QUANTILE_HOURS = "the quantile policy needs the quantile model's hours"


class ConformalPolicy(BufferPolicy):
    """Split-conformal buffer per segment (Mondrian), absolute or relative, censoring-aware.

    `segments` names the segment features, coarsest first (an order's labels follow them);
    `relative` scores overruns as a share of the expectation, so long orders get longer buffers.
    """

    _fitted_attribute = "table_"

    def __init__(
        self,
        target_late_rate: float = 0.05,
        segments: tuple[str, ...] = (),
        relative: bool = False,
    ) -> None:
        super().__init__(target_late_rate)
        self.segments = segments
        self.relative = relative

    def fit(self, calibration: CalibrationSlice) -> Self:
        self.table_ = pooled_segments(
            calibration_scores(calibration, self.relative),
            calibration.censored,
            calibration.segment_labels,
            len(self.segments),
            self.target_late_rate,
        )
        self.depth_ = len(self.segments)
        return self

    def resolve(self, labels: Sequence[str | None]) -> SegmentBuffer:
        """The calibrated segment that serves an order: its own, else its parent's, else global."""
        for depth in range(self.depth_, 0, -1):
            found = self.table_.get(segment_key(labels, depth))
            if found is not None:
                return found
        return self.table_[GLOBAL_SEGMENT]

    def score_at(self, segment: SegmentBuffer, state: ControlState | None) -> tuple[float, float]:
        """(score, confidence level) the segment serves with, given the control state."""
        return segment.score, self.level

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Labels,
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        self._check_fitted()
        n = expected_hours.size
        scores = np.empty(n)
        levels = np.empty(n)
        keys: list[str] = []
        cache: dict[tuple[str | None, ...], tuple[str, float, float]] = {}
        for i, row in enumerate(labels):
            hit = cache.get(tuple(row))
            if hit is None:
                segment = self.resolve(row)
                hit = (segment.key, *self.score_at(segment, state))
                cache[tuple(row)] = hit
            keys.append(hit[0])
            scores[i] = hit[1]
            levels[i] = hit[2]
        return BufferAnswer(self._buffer_hours(expected_hours, scores), keys, levels)

    def column_buffers(
        self,
        expected_hours: FloatArray,
        columns: Columns,
        segments: Sequence[str],
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        self._check_fitted()
        inverse, distinct = distinct_labels(columns, segments, int(expected_hours.size))
        keys: list[str] = []
        scores = np.empty(len(distinct))
        levels = np.empty(len(distinct))
        for j, values in enumerate(distinct):
            segment = self.resolve(values)
            keys.append(segment.key)
            scores[j], levels[j] = self.score_at(segment, state)
        buffer_hours = self._buffer_hours(expected_hours, scores[inverse])
        served: list[str] = np.array(keys, dtype=object)[inverse].tolist()
        return BufferAnswer(buffer_hours, served, levels[inverse])

    def buffer_one(
        self,
        expected_hours: float,
        labels: Sequence[str | None],
        quantile_hours: float | None = None,
        state: ControlState | None = None,
    ) -> tuple[float, str, float]:
        self._check_fitted()
        segment = self.resolve(labels)
        score, level = self.score_at(segment, state)
        if self.relative:
            return expected_hours * max(score, 0.0), segment.key, level
        return max(score, 0.0) + 0.0, segment.key, level

    def _buffer_hours(self, expected_hours: FloatArray, scores: FloatArray) -> FloatArray:
        if self.relative:
            return expected_hours * np.maximum(scores, 0.0)
        return np.maximum(scores, 0.0) + np.zeros_like(expected_hours)

    def segment_table(self) -> list[dict[str, object]]:
        self._check_fitted()
        return [
            {
                "segment": segment.key,
                "depth": segment.depth,
                "n_calibration": segment.distribution.n,
                "n_censored": segment.distribution.n_censored,
                "score": round(segment.score, 6),
                "own_weight": round(segment.own_weight, 4),
                "scale": "relative" if self.relative else "hours",
            }
            for segment in self.table_.values()
        ]

    def fallbacks(self, labels: Labels) -> dict[str, str]:
        """For each segment seen in `labels` whose buffer is mostly not its own (no quantile of
        its own, or an own weight below one half), the nearest key that mostly serves it."""
        served: dict[str, str] = {}
        for row in dict.fromkeys(map(tuple, labels)):
            own = segment_key(row, self.depth_)
            if own in served:
                continue
            segment = self.resolve(row)
            while segment.depth > 0 and segment.own_weight < 0.5:
                segment = self.table_[segment.path[-2]]
            served[own] = segment.key
        return {own: used for own, used in served.items() if own != used}


class AdaptivePolicy(ConformalPolicy):
    """Conformal whose per-segment buffer follows outcomes at their deadlines and the nowcast
    of open orders (`models.control`), within bounds.

    `control_gain`: a whole promise-length of outcomes all late (less the target) moves the
    offset by this many score spreads; `use_nowcast`: whether orders in progress move it too."""

    _fitted_attribute = "control_"

    def __init__(
        self,
        target_late_rate: float = 0.05,
        segments: tuple[str, ...] = (),
        relative: bool = False,
        control_gain: float = 1.0,
        use_nowcast: bool = True,
    ) -> None:
        super().__init__(target_late_rate, segments, relative)
        self.control_gain = control_gain
        self.use_nowcast = use_nowcast

    def fit(self, calibration: CalibrationSlice) -> Self:
        super().fit(calibration)
        self.control_ = fit_controls(
            calibration,
            self.table_,
            len(self.segments),
            self.relative,
            self.target_late_rate,
            self.control_gain,
        )
        return self

    def score_at(self, segment: SegmentBuffer, state: ControlState | None) -> tuple[float, float]:
        if state is None:
            return segment.score, self.level
        score = controlled_score(segment, self.control_, state, self.use_nowcast)
        if score == segment.score:
            return score, self.level
        return score, segment.distribution.cdf_at(score)

    def leaks(self) -> dict[str, float]:
        """Each segment key's leak, as `models.control.learn` takes them."""
        self._check_fitted()
        return {key: control.leak for key, control in self.control_.items()}

    def paths(self, labels: Labels) -> list[tuple[str, ...]]:
        """The keys each order's outcome counts for: its served segment's path."""
        cache: dict[tuple[str | None, ...], tuple[str, ...]] = {}
        result = []
        for row in labels:
            path = cache.get(tuple(row))
            if path is None:
                path = cache[tuple(row)] = self.resolve(row).path
            result.append(path)
        return result

    def nowcast(
        self,
        clock_start_s: FloatArray,
        expected_hours: FloatArray,
        fulfilled_s: FloatArray,
        paths: Sequence[Sequence[str]],
        now_s: float,
    ) -> tuple[dict[str, float], dict[str, int]]:
        """(median residual score, fulfilments) per segment key, from the orders in progress
        in each key's window before `now_s` (`models.control.nowcast_median`)."""
        self._check_fitted()
        orders = OrdersSeen(clock_start_s, expected_hours, fulfilled_s)
        return segment_nowcasts(self.control_, orders, paths, now_s, self.relative)

    def segment_table(self) -> list[dict[str, object]]:
        rows = super().segment_table()
        for row in rows:
            control = self.control_[str(row["segment"])]
            row["control_scale"] = round(control.scale, 6)
            row["control_flight"] = round(control.flight, 2)
            row["nowcast_window_hours"] = round(control.window_hours, 2)
        return rows


_KINDS: dict[str, type[BufferPolicy]] = {
    "fixed": FixedPolicy,
    "proportional": ProportionalPolicy,
    "quantile": QuantilePolicy,
    "conformal": ConformalPolicy,
    "adaptive": AdaptivePolicy,
}
POLICY_NAMES: tuple[str, ...] = tuple(_KINDS)


def make_policy(name: str, **params: Any) -> BufferPolicy:
    """An unfitted policy of kind `name` (one of `POLICY_NAMES`) with constructor keywords
    `params`; `SpecError` for an unknown name."""
    kind = _KINDS.get(name)
    if kind is None:
        raise SpecError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return kind(**params)
