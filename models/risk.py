"""Risk of an open order: how likely it is to miss its promise, given it is not done yet.

A quote's segment has a calibrated distribution of residuals r = actual hours - expected hours
(Kaplan-Meier, censoring-aware, fitted on the calibration slice with the buffer; see
`models.policies`). An order still open `elapsed` hours after its clock started has, by
Bayes' rule on the survival function S of r:

    P(late | open now) = S(deadline_hours - expected) / S(elapsed - expected)

and its remaining completion time follows the residual distribution truncated at the elapsed
time. An honest revision promises the conditional quantile at 1 - target: the same share of
such orders is late as for a fresh quote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.policies import ScoreDistribution


@dataclass(frozen=True, slots=True)
class OpenOrderOutlook:
    """What the residual distribution says about an open order now."""

    probability_late: float  # in [0, 1]
    expected_hours: float  # conditional median of the total duration from the clock start
    revised_hours: float  # total hours from the clock start meeting the target late rate again


def survival(dist: ScoreDistribution, residual_hours: float) -> float:
    """P(residual > residual_hours) from the Kaplan-Meier CDF (1 below the smallest seen)."""
    if dist.values.size == 0:
        return 1.0
    index = int(np.searchsorted(dist.values, residual_hours, side="right"))
    if index == 0:
        return 1.0
    return max(0.0, 1.0 - float(dist.cdf[index - 1]))


def conditional_quantile(dist: ScoreDistribution, level: float, above_hours: float) -> float:
    """The residual r with P(R <= r | R > above_hours) >= level (the largest seen if none)."""
    if dist.values.size == 0:
        return above_hours
    base_cdf = 1.0 - survival(dist, above_hours)
    wanted = base_cdf + level * (1.0 - base_cdf)
    index = int(np.searchsorted(dist.cdf, wanted - 1e-12, side="left"))
    value = float(dist.values[min(index, dist.values.size - 1)])
    return max(value, above_hours)


def outlook(
    dist: ScoreDistribution,
    expected_hours: float,
    elapsed_hours: float,
    deadline_hours: float,
    target_late_rate: float,
) -> OpenOrderOutlook:
    """The outlook of an order open `elapsed_hours` after its clock start.

    `deadline_hours` is the promise's deadline measured from the clock start. Past the largest
    residual ever seen the distribution says nothing more: the order is then given the
    probability the tail leaves (1 if none), and expectations at the elapsed time itself.
    """
    if elapsed_hours >= deadline_hours:
        probability = 1.0
    else:
        still_open = survival(dist, elapsed_hours - expected_hours)
        if still_open <= 0.0:
            probability = 1.0
        else:
            late = survival(dist, deadline_hours - expected_hours)
            probability = min(1.0, late / still_open)
    above = elapsed_hours - expected_hours
    median = expected_hours + conditional_quantile(dist, 0.5, above)
    revised = expected_hours + conditional_quantile(dist, 1.0 - target_late_rate, above)
    return OpenOrderOutlook(
        probability_late=probability,
        expected_hours=max(median, elapsed_hours),
        revised_hours=max(revised, elapsed_hours, median) if math.isfinite(revised) else revised,
    )
