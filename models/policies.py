"""Buffer policies: how much to add to the expected duration so promises hold.

Every policy is fitted on a calibration slice later in time than the model's training slice and
answers a buffer of zero or more hours (we never promise earlier than we expect).

Scores are calendar-aware. For each calibration order, `needed_hours` is the least total time
from its clock start that would have kept its promise once rounded to the unit and moved off
closed days (see `BusinessCalendar.earliest_raw_meeting`); the score is how far that lies beyond
the model's expectation (`needed - expected` hours, or `needed / expected - 1` on the relative
scale). A buffer at the score's quantile therefore keeps that share of promises exactly, with
no slack from rounding.

Right-censoring: orders still open at the cut-off are kept, with their score known only to be at
least its value at the cut-off; quantiles come from the Kaplan-Meier estimate of the score
distribution, so the slow open orders are not silently dropped (dropping them is what promised too
short on real data).

Segments (Mondrian conformal): with `segments = ["store_id", "lens_type"]` each store-and-lens
cell gets its own quantile when it has at least `min_segment_size` calibration orders; otherwise
its store's, otherwise the global one. `segment_table` records which.

The adaptive policy is conformal whose miss level alpha_t moves online with recorded outcomes,
alpha_{t+1} = alpha_t + step * (target - late_t) (Gibbs & Candes, "Adaptive conformal inference
under distribution shift", 2021), per segment, state kept in `AdaptiveState`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

POLICY_NAMES: tuple[str, ...] = ("fixed", "proportional", "quantile", "conformal", "adaptive")
GLOBAL_SEGMENT = "all orders"
SEGMENT_SEPARATOR = " / "
# The adaptive level stays within these bounds so one bad week cannot freeze it at an extreme.
MIN_ADAPTIVE_ALPHA = 0.001
MAX_ADAPTIVE_ALPHA = 0.5


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """What the spec's `[quote]` table says about the buffer."""

    name: str
    target_late_rate: float
    segments: tuple[str, ...] = ()
    relative: bool = False
    fixed_buffer_hours: float | None = None
    proportional_buffer: float | None = None
    min_segment_size: int = 200
    adaptive_step: float = 0.002  # outcomes arrive late and in clusters: small steps


@dataclass(frozen=True, slots=True)
class CalibrationSlice:
    """Calibration orders: expectations, the hours each needed, and which are still open."""

    expected_hours: FloatArray
    needed_hours: FloatArray  # a lower bound where `censored`
    censored: BoolArray
    segment_labels: Sequence[Sequence[str | None]]  # one tuple of segment values per order

    @property
    def size(self) -> int:
        return int(self.expected_hours.size)


@dataclass(frozen=True, slots=True)
class ScoreDistribution:
    """A Kaplan-Meier distribution of scores: sorted values and the CDF reached at each."""

    values: FloatArray
    cdf: FloatArray
    n: int
    n_censored: int

    def quantile(self, level: float) -> float:
        """The smallest score whose estimated CDF reaches `level` (the largest seen beyond)."""
        if self.values.size == 0:
            return 0.0
        index = int(np.searchsorted(self.cdf, level - 1e-12, side="left"))
        return float(self.values[min(index, self.values.size - 1)])

    def conformal_quantile(self, miss_rate: float) -> float:
        """The split-conformal quantile: level (1 - miss_rate)(1 + 1/n), capped at 1."""
        return self.quantile(conformal_level(miss_rate, self.n))


def conformal_level(miss_rate: float, n: int) -> float:
    """The finite-sample level that keeps at most `miss_rate` of n + 1 exchangeable orders late."""
    return min(1.0, (1.0 - miss_rate) * (1.0 + 1.0 / max(n, 1)))


def score_distribution(scores: FloatArray, censored: BoolArray) -> ScoreDistribution:
    """Kaplan-Meier estimate of the score CDF; a censored score is only known to be larger."""
    n = int(scores.size)
    if n == 0:
        return ScoreDistribution(np.empty(0), np.empty(0), 0, 0)
    # At ties, events come before censorings (the usual Kaplan-Meier convention).
    order = np.lexsort((censored, scores))
    sorted_scores = scores[order]
    is_event = ~censored[order]
    at_risk = n - np.arange(n, dtype=np.float64)
    survival_factor = np.where(is_event, 1.0 - 1.0 / at_risk, 1.0)
    cdf = 1.0 - np.cumprod(survival_factor)
    return ScoreDistribution(
        values=np.ascontiguousarray(sorted_scores[is_event]),
        cdf=np.ascontiguousarray(cdf[is_event]),
        n=n,
        n_censored=int(censored.sum()),
    )


def segment_keys(labels: Sequence[Sequence[str | None]], depth: int) -> list[str]:
    """Segment keys at `depth` (0 = global) for each order's tuple of segment labels."""
    if depth == 0:
        return [GLOBAL_SEGMENT] * len(labels)
    return [SEGMENT_SEPARATOR.join(_label(v) for v in row[:depth]) for row in labels]


def segment_key(values: Sequence[str | None], depth: int) -> str:
    """The key of one order's segment at `depth` (0 = global)."""
    if depth == 0:
        return GLOBAL_SEGMENT
    return SEGMENT_SEPARATOR.join(_label(v) for v in values[:depth])


def _label(value: str | None) -> str:
    return "(missing)" if value is None else value


@dataclass(frozen=True, slots=True)
class SegmentBuffer:
    """A calibrated segment: its score distribution and the buffer it gives at the target."""

    key: str
    depth: int
    distribution: ScoreDistribution
    score: float  # buffer hours, or the relative overrun ratio on the relative scale


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    """The adaptive policy's current miss level per segment key, and how many outcomes it saw."""

    alphas: Mapping[str, float] = field(default_factory=dict)
    n_updates: int = 0

    def alpha(self, key: str, target: float) -> float:
        return self.alphas.get(key, target)


def update_adaptive(
    state: AdaptiveState, key: str, was_late: bool, target: float, step: float
) -> AdaptiveState:
    """The state after one recorded outcome of a quote given from segment `key`."""
    alpha = state.alpha(key, target) + step * (target - (1.0 if was_late else 0.0))
    alpha = min(MAX_ADAPTIVE_ALPHA, max(MIN_ADAPTIVE_ALPHA, alpha))
    return replace(state, alphas={**state.alphas, key: alpha}, n_updates=state.n_updates + 1)


@dataclass(frozen=True, slots=True)
class BufferAnswer:
    """Buffers for a batch: hours, the segment each came from, and the confidence level used."""

    buffer_hours: FloatArray
    segments: list[str]
    levels: FloatArray


class BufferPolicy(BaseEstimator):
    """Base class: `fit` on a calibration slice, then `buffers` for new expectations."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config

    @property
    def cfg(self) -> PolicyConfig:
        assert self.config is not None, "a policy needs its config"
        return self.config

    def fit(self, calibration: CalibrationSlice) -> Self:
        raise NotImplementedError

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: AdaptiveState | None = None,
    ) -> BufferAnswer:
        raise NotImplementedError

    def buffer_one(
        self,
        expected_hours: float,
        labels: Sequence[str | None],
        quantile_hours: float | None = None,
        state: AdaptiveState | None = None,
    ) -> tuple[float, str, float]:
        """(buffer hours, segment key, level) for one order; same numbers as `buffers`."""
        answer = self.buffers(
            np.array([expected_hours]),
            [labels],
            None if quantile_hours is None else np.array([quantile_hours]),
            state,
        )
        return float(answer.buffer_hours[0]), answer.segments[0], float(answer.levels[0])

    def segment_table(self) -> list[dict[str, object]]:
        """What the manifest records about each calibrated segment (none for most policies)."""
        return []


def _scores(calibration: CalibrationSlice, relative: bool) -> FloatArray:
    if relative:
        return calibration.needed_hours / np.maximum(calibration.expected_hours, 1e-9) - 1.0
    return calibration.needed_hours - calibration.expected_hours


def _given_or_calibrated(
    given: float | None, calibration: CalibrationSlice, relative: bool, target: float
) -> float:
    """The spec's constant, or the one constant that keeps `target` on the calibration slice."""
    if given is None:
        dist = score_distribution(_scores(calibration, relative), calibration.censored)
        given = max(0.0, dist.conformal_quantile(target))
    return float(given)


def _global_answer(buffer_hours: FloatArray, target: float) -> BufferAnswer:
    """Buffers that come from no segment, at the target's level."""
    n = buffer_hours.size
    return BufferAnswer(buffer_hours, [GLOBAL_SEGMENT] * n, np.full(n, 1.0 - target))


class FixedPolicy(BufferPolicy):
    """A constant buffer: the spec's `fixed_buffer`, or the one constant that meets the target."""

    def fit(self, calibration: CalibrationSlice) -> Self:
        cfg = self.cfg
        self.buffer_hours_ = _given_or_calibrated(
            cfg.fixed_buffer_hours, calibration, False, cfg.target_late_rate
        )
        return self

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: AdaptiveState | None = None,
    ) -> BufferAnswer:
        check_is_fitted(self, "buffer_hours_")
        return _global_answer(
            np.full(expected_hours.size, self.buffer_hours_), self.cfg.target_late_rate
        )


class ProportionalPolicy(BufferPolicy):
    """A share of the expected duration: the spec's `proportional_buffer`, or calibrated."""

    def fit(self, calibration: CalibrationSlice) -> Self:
        cfg = self.cfg
        self.ratio_ = _given_or_calibrated(
            cfg.proportional_buffer, calibration, True, cfg.target_late_rate
        )
        return self

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: AdaptiveState | None = None,
    ) -> BufferAnswer:
        check_is_fitted(self, "ratio_")
        return _global_answer(expected_hours * self.ratio_, self.cfg.target_late_rate)


class QuantilePolicy(BufferPolicy):
    """The quantile model's answer at 1 - target, less the expectation (never below zero)."""

    def fit(self, calibration: CalibrationSlice) -> Self:
        self.fitted_ = True
        return self

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: AdaptiveState | None = None,
    ) -> BufferAnswer:
        check_is_fitted(self, "fitted_")
        if quantile_hours is None:
            raise ValueError("the quantile policy needs the quantile model's hours")
        return _global_answer(
            np.maximum(quantile_hours - expected_hours, 0.0), self.cfg.target_late_rate
        )


class ConformalPolicy(BufferPolicy):
    """Split-conformal buffer per segment (Mondrian), absolute or relative, censoring-aware."""

    def fit(self, calibration: CalibrationSlice) -> Self:
        cfg = self.cfg
        scores = _scores(calibration, cfg.relative)
        table: dict[str, SegmentBuffer] = {}
        for depth in range(len(cfg.segments) + 1):
            keys = np.array(segment_keys(calibration.segment_labels, depth), dtype=object)
            for key in dict.fromkeys(keys.tolist()):
                members = keys == key
                if depth > 0 and int(members.sum()) < cfg.min_segment_size:
                    continue
                dist = score_distribution(scores[members], calibration.censored[members])
                table[key] = SegmentBuffer(
                    key, depth, dist, dist.conformal_quantile(cfg.target_late_rate)
                )
        self.table_ = table
        self.depth_ = len(cfg.segments)
        return self

    def resolve(self, labels: Sequence[str | None]) -> SegmentBuffer:
        """The calibrated segment that serves an order: its own, else its parent's, else global."""
        for depth in range(self.depth_, 0, -1):
            found = self.table_.get(segment_key(labels, depth))
            if found is not None:
                return found
        return self.table_[GLOBAL_SEGMENT]

    def score_at(self, segment: SegmentBuffer, state: AdaptiveState | None) -> tuple[float, float]:
        return segment.score, 1.0 - self.cfg.target_late_rate

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: AdaptiveState | None = None,
    ) -> BufferAnswer:
        check_is_fitted(self, "table_")
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
        if self.cfg.relative:
            buffer = expected_hours * np.maximum(scores, 0.0)
        else:
            buffer = np.maximum(scores, 0.0) + np.zeros_like(expected_hours)
        return BufferAnswer(buffer, keys, levels)

    def segment_table(self) -> list[dict[str, object]]:
        check_is_fitted(self, "table_")
        rows: list[dict[str, object]] = []
        for segment in self.table_.values():
            rows.append(
                {
                    "segment": segment.key,
                    "depth": segment.depth,
                    "n_calibration": segment.distribution.n,
                    "n_censored": segment.distribution.n_censored,
                    "score": round(segment.score, 6),
                    "scale": "relative" if self.cfg.relative else "hours",
                }
            )
        return rows

    def fallbacks(self, labels: Sequence[Sequence[str | None]]) -> dict[str, str]:
        """For each segment seen in `labels`, the key that serves it when it is not its own."""
        served: dict[str, str] = {}
        for row in labels:
            own = segment_key(row, self.depth_)
            if own not in served:
                served[own] = self.resolve(row).key
        return {own: used for own, used in served.items() if own != used}


class AdaptivePolicy(ConformalPolicy):
    """Conformal whose per-segment miss level follows recorded outcomes (ACI)."""

    def score_at(self, segment: SegmentBuffer, state: AdaptiveState | None) -> tuple[float, float]:
        target = self.cfg.target_late_rate
        alpha = target if state is None else state.alpha(segment.key, target)
        if alpha == target:
            return segment.score, 1.0 - target
        return segment.distribution.conformal_quantile(alpha), 1.0 - alpha


def make_policy(config: PolicyConfig) -> BufferPolicy:
    """An unfitted policy of the configured kind."""
    kinds: dict[str, type[BufferPolicy]] = {
        "fixed": FixedPolicy,
        "proportional": ProportionalPolicy,
        "quantile": QuantilePolicy,
        "conformal": ConformalPolicy,
        "adaptive": AdaptivePolicy,
    }
    return kinds[config.name](config)


def hours_to_units(hours: float, hours_per_unit: float) -> float:
    """Hours as a (fractional) count of units, for explanations."""
    return hours / hours_per_unit if math.isfinite(hours) else math.inf
