"""Buffer policies: how much to add to the expected duration so promises hold.

Every policy is a scikit-learn estimator. Its constructor only stores its parameters (so
`get_params`, `set_params` and `sklearn.base.clone` work); `fit` on a calibration slice later in
time than the model's training slice (`models.scores.CalibrationSlice`) returns the policy, its
learnt rule in `rule_`; then it answers a buffer of zero or more hours for each
order (we never promise earlier than we expect), and before `fit` raises `NotFittedError`.
`make_policy(name, **params)` builds one by the name a spec gives.

- `fixed`, `proportional`: a constant number of hours or a share of the expectation, as given
  or the one constant that meets the target on the calibration slice;
- `quantile`: the quantile model's answer at 1 - target, less the expectation;
- `conformal`: the split-conformal quantile of the calibration scores (`models.scores`), per
  segment and partially pooled (`models.pooling`), on the hours or the relative scale;
- `adaptive`: conformal whose per-segment buffer follows outcomes and open orders online
  (`models.control`).

What a policy learns is a rule of `models.buffers` (`rule_`): plain data that the quote path
reads and a serving bundle stores, so quoting needs neither scikit-learn nor a pickle. `buffers`
and `column_buffers` here are the rule's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from models.buffers import (
    AdaptiveBuffers,
    BufferAnswer,
    BufferRule,
    ConstantBuffer,
    QuantileBuffer,
    SegmentBuffers,
)
from models.control import ControlState, fit_controls
from models.errors import SpecError
from models.policy_names import POLICY_NAMES
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
    segment_key,
    segment_keys,
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


class BufferPolicy(BaseEstimator):
    """Base class: `fit` on a calibration slice learns a rule (`rule_`), which then buffers."""

    def __init__(self, target_late_rate: float = 0.05) -> None:
        self.target_late_rate = target_late_rate

    def fit(self, calibration: CalibrationSlice) -> Self:
        """Learn the rule from `calibration` (later in time than the model's training slice)."""
        self.rule_ = self._learn(calibration)
        return self

    def _learn(self, calibration: CalibrationSlice) -> BufferRule:
        raise NotImplementedError

    def calibrating(self) -> Self:
        """An unfitted copy that calibrates every buffer to its target, a given one dropped (the
        back-test's trade-off sweep: a buffer set by hand would not move with the target)."""
        copy: Self = clone(self)
        return copy

    @property
    def rule(self) -> BufferRule:
        """The fitted rule the quote path reads; `NotFittedError` before `fit`."""
        # A dictionary look-up: `check_is_fitted` costs ~4 us.
        rule: BufferRule | None = self.__dict__.get("rule_")
        if rule is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")
        return rule

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Labels,
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """The fitted rule's buffers for expectations (n,) and each order's segment labels."""
        return self.rule.buffers(expected_hours, labels, quantile_hours, state)

    def column_buffers(
        self,
        expected_hours: FloatArray,
        columns: Columns,
        segments: Sequence[str],
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """`buffers` for orders given as feature columns, `segments` naming the label columns."""
        return self.rule.column_buffers(expected_hours, columns, segments, quantile_hours, state)

    def segment_table(self) -> list[dict[str, object]]:
        """What the manifest records about each calibrated segment (none for most policies)."""
        return self.rule.segment_table()

    @property
    def level(self) -> float:
        """The confidence level the target keeps: 1 - target late rate."""
        return 1.0 - self.target_late_rate

    def __sklearn_is_fitted__(self) -> bool:
        return "rule_" in self.__dict__


class _ConstantPolicy(BufferPolicy):
    """One score for every order, as given (the parameter `_given` names) or the one that keeps
    the target on the calibration slice: buffer hours, or on the relative scale a share of the
    expectation."""

    _given: ClassVar[str]
    _relative: ClassVar[bool]

    def _learn(self, calibration: CalibrationSlice) -> BufferRule:
        given: float | None = getattr(self, self._given)
        if given is None:
            scores = calibration_scores(calibration, self._relative)
            dist = score_distribution(scores, calibration.censored)
            given = max(0.0, dist.conformal_quantile(self.target_late_rate))
        return ConstantBuffer(self.target_late_rate, float(given), self._relative)

    def calibrating(self) -> Self:
        copy: Self = clone(self).set_params(**{self._given: None})
        return copy


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


class QuantilePolicy(BufferPolicy):
    """The quantile model's answer at 1 - target, less the expectation (never below zero)."""

    def _learn(self, calibration: CalibrationSlice) -> BufferRule:
        # The quantile model, fitted apart, holds what there is to learn.
        return QuantileBuffer(self.target_late_rate)


class ConformalPolicy(BufferPolicy):
    """Split-conformal buffer per segment (Mondrian), absolute or relative, censoring-aware.

    `segments` names the segment features, coarsest first (an order's labels follow them);
    `relative` scores overruns as a share of the expectation, so long orders get longer buffers.
    """

    def __init__(
        self,
        target_late_rate: float = 0.05,
        segments: tuple[str, ...] = (),
        relative: bool = False,
    ) -> None:
        super().__init__(target_late_rate)
        self.segments = segments
        self.relative = relative

    def _learn(self, calibration: CalibrationSlice) -> BufferRule:
        return SegmentBuffers(
            self.target_late_rate, self._table(calibration), len(self.segments), self.relative
        )

    def _table(self, calibration: CalibrationSlice) -> dict[str, SegmentBuffer]:
        return pooled_segments(
            calibration_scores(calibration, self.relative),
            calibration.censored,
            calibration.segment_labels,
            len(self.segments),
            self.target_late_rate,
        )


class AdaptivePolicy(ConformalPolicy):
    """Conformal whose per-segment buffer follows outcomes at their deadlines and the nowcast
    of open orders (`models.control`), within bounds.

    `control_gain`: a whole promise-length of outcomes all late (less the target) moves the
    offset by this many score spreads; `use_nowcast`: whether orders in progress move it too."""

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

    def _learn(self, calibration: CalibrationSlice) -> BufferRule:
        table = self._table(calibration)
        controls = fit_controls(
            calibration,
            table,
            len(self.segments),
            self.relative,
            self.target_late_rate,
            self.control_gain,
        )
        return AdaptiveBuffers(
            self.target_late_rate,
            table,
            len(self.segments),
            self.relative,
            controls,
            self.use_nowcast,
        )


_KINDS: dict[str, type[BufferPolicy]] = {
    "fixed": FixedPolicy,
    "proportional": ProportionalPolicy,
    "quantile": QuantilePolicy,
    "conformal": ConformalPolicy,
    "adaptive": AdaptivePolicy,
}
# The names live in one light module (the command line lists them without scikit-learn).
assert tuple(_KINDS) == POLICY_NAMES


def make_policy(name: str, **params: Any) -> BufferPolicy:
    """An unfitted policy of kind `name` (one of `POLICY_NAMES`) with constructor keywords
    `params`; `SpecError` for an unknown name."""
    kind = _KINDS.get(name)
    if kind is None:
        raise SpecError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return kind(**params)
