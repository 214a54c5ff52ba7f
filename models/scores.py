"""Calibration scores: how far each calibration order overran its expectation, as a distribution.

For each calibration order, `needed_hours` is the least total time from its clock start that
would have kept its promise once rounded to the unit and moved off closed days (see
`BusinessCalendar.earliest_raw_meeting`); its score is how far that lies beyond the model's
expectation (`needed - expected` hours, or `needed / expected - 1` on the relative scale). A
buffer at the score's quantile therefore keeps that share of promises exactly, with no slack
from rounding.

Right-censoring: orders still open at the cut-off are kept, with their score known only to be at
least its value at the cut-off; quantiles come from the Kaplan-Meier estimate of the score
distribution, so the slow open orders are not silently dropped (dropping them is what promised too
short on real data). A quantile's `level` is the share of scores at or below it: a confidence
level, 1 - the late rate it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class CalibrationSlice:
    """Calibration orders: expectations, the hours each needed, and which are still open."""

    expected_hours: FloatArray
    needed_hours: FloatArray  # a lower bound where `censored`
    censored: BoolArray
    segment_labels: Sequence[Sequence[str | None]]  # one tuple of segment values per order
    # For the adaptive policy: clock start to fulfilment (to the cut-off where censored), when
    # each order was placed, and the cut-off (None: volumes and the nowcast baseline unknown).
    reached_hours: FloatArray | None = None
    placed_s: FloatArray | None = None
    cutoff_s: float | None = None

    @property
    def size(self) -> int:
        return int(self.expected_hours.size)


def residual_scores(hours: FloatArray, expected_hours: FloatArray, relative: bool) -> FloatArray:
    """Hours from the clock start against the expectation: `hours - expected`, or on the
    relative scale `hours / expected - 1`."""
    if relative:
        return hours / np.maximum(expected_hours, 1e-9) - 1.0
    return hours - expected_hours


def calibration_scores(calibration: CalibrationSlice, relative: bool) -> FloatArray:
    """Each calibration order's score: the hours it needed against its expectation."""
    return residual_scores(calibration.needed_hours, calibration.expected_hours, relative)


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

    def cdf_at(self, score: float) -> float:
        """The estimated share of scores at or below `score`."""
        index = int(np.searchsorted(self.values, score, side="right"))
        return 0.0 if index == 0 else float(self.cdf[index - 1])

    def spread(self, miss_rate: float) -> float:
        """How far the quantile at 1 - miss_rate lies above the median (never below zero)."""
        return max(self.quantile(1.0 - miss_rate) - self.quantile(0.5), 0.0)

    def quantile_variance(self, miss_rate: float) -> float:
        """The sampling variance of the quantile at 1 - miss_rate: p(1 - p) / (n f^2), with the
        density f read off the distribution around it."""
        level = 1.0 - miss_rate
        h = min(0.025, miss_rate / 2.0)
        width = self.quantile(min(level + h, 1.0)) - self.quantile(max(level - h, 0.0))
        slope = max(width, 1e-9) / (2.0 * h)  # 1 / density
        return level * (1.0 - level) * slope**2 / max(self.n, 1)


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
