"""Risk of an open order: how likely it is to miss its promise, given it is not done yet.

Every engine carries a `RiskModel`: per segment, the Kaplan-Meier distribution of the plain
residual r = actual hours - expected hours (from the clock start) on the calibration slice, with
the orders still open at the cut-off kept as censored residuals, the same censoring-aware
estimate the buffers use (`models.scores`). Segments follow the policy's: a segment with
fewer than `min_segment_size` calibration orders uses its parent's distribution, then the
global one. The residual is the same whatever the policy, so every policy's promises get a risk.

An order still open `elapsed` hours after its clock started has, by Bayes' rule on the survival
function S of r:

    P(late | open now) = S(deadline_hours - expected) / S(elapsed - expected)

which only grows while the order stays open. Its remaining completion time follows the residual
distribution truncated at the elapsed time; an honest revision promises the conditional quantile
at 1 - target, so the same share of such orders is late as of fresh quotes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.scores import ScoreDistribution, score_distribution
from models.segments import GLOBAL_SEGMENT, segment_key, segment_keys

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OpenOrderOutlook:
    """What the residual distribution says about an open order now."""

    probability_late: float  # in [0, 1]
    expected_hours: float  # conditional median of the total duration from the clock start
    revised_hours: float  # total hours from the clock start meeting the target late rate again


@dataclass(frozen=True, slots=True)
class RiskModel:
    """Residual distributions (hours) per segment key, with the Mondrian fallback."""

    table: Mapping[str, ScoreDistribution]
    depth: int  # how many segment features the keys use

    def resolve(self, labels: Sequence[str | None]) -> tuple[str, ScoreDistribution]:
        """The segment that serves an order: its own, else its parent's, else global."""
        for depth in range(self.depth, 0, -1):
            key = segment_key(labels, depth)
            found = self.table.get(key)
            if found is not None:
                return key, found
        return GLOBAL_SEGMENT, self.table[GLOBAL_SEGMENT]

    def resolve_keys(self, labels: Sequence[Sequence[str | None]]) -> list[str]:
        """`resolve`'s key for each order (cached per distinct tuple of labels)."""
        cache: dict[tuple[str | None, ...], str] = {}
        keys = []
        for row in labels:
            hit = cache.get(tuple(row))
            if hit is None:
                hit = cache[tuple(row)] = self.resolve(row)[0]
            keys.append(hit)
        return keys


def fit_risk_model(
    expected_hours: FloatArray,
    reached_hours: FloatArray,
    censored: NDArray[np.bool_],
    labels: Sequence[Sequence[str | None]],
    depth: int,
    min_segment_size: int,
) -> RiskModel:
    """Residual distributions from calibration orders: `reached_hours` is the duration from
    the clock start where done, and how long it had been open at the cut-off where `censored`."""
    residuals = reached_hours - expected_hours
    table: dict[str, ScoreDistribution] = {}
    for at_depth in range(depth + 1):
        keys = np.array(segment_keys(labels, at_depth), dtype=object)
        for key in dict.fromkeys(keys.tolist()):
            members = keys == key
            if at_depth > 0 and int(members.sum()) < min_segment_size:
                continue
            table[key] = score_distribution(residuals[members], censored[members])
    return RiskModel(table=table, depth=depth)


def survival(dist: ScoreDistribution, residual_hours: float) -> float:
    """P(residual > residual_hours) from the Kaplan-Meier CDF (1 below the smallest seen)."""
    return float(survivals(dist, np.array([residual_hours]))[0])


def survivals(dist: ScoreDistribution, residual_hours: FloatArray) -> FloatArray:
    """`survival` of each residual."""
    if dist.values.size == 0:
        return np.ones_like(residual_hours)
    index = np.searchsorted(dist.values, residual_hours, side="right")
    cdf = np.concatenate(([0.0], dist.cdf))[index]
    return np.maximum(0.0, 1.0 - cdf)


def conditional_quantile(dist: ScoreDistribution, level: float, above_hours: float) -> float:
    """The residual r with P(R <= r | R > above_hours) >= level (the largest seen if none)."""
    above = np.array([above_hours])
    return float(_conditional_quantiles(dist, level, above, survivals(dist, above))[0])


def _conditional_quantiles(
    dist: ScoreDistribution,
    level: float | FloatArray,
    above_hours: FloatArray,
    survival_above: FloatArray,
) -> FloatArray:
    """`conditional_quantile` of each residual in `above_hours` (`survival_above`: S there),
    at each `level` (broadcast: levels of shape (k, 1) give an answer of shape (k, n))."""
    if dist.values.size == 0:
        return np.broadcast_to(
            above_hours, np.broadcast_shapes(np.shape(level), above_hours.shape)
        ).astype(np.float64)
    base_cdf = 1.0 - survival_above
    wanted = base_cdf + level * (1.0 - base_cdf)
    index = np.searchsorted(dist.cdf, wanted - 1e-12, side="left")
    value = dist.values[np.minimum(index, dist.values.size - 1)]
    return np.maximum(value, above_hours)


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
    One order of `outlooks`.
    """
    [probability], _, [expected], [revised] = _outlooks_of(
        dist,
        np.array([expected_hours]),
        np.array([elapsed_hours]),
        np.array([deadline_hours]),
        target_late_rate,
    )
    return OpenOrderOutlook(
        probability_late=float(probability),
        expected_hours=float(expected),
        revised_hours=float(revised),
    )


def probability_late(
    dist: ScoreDistribution, expected_hours: float, elapsed_hours: float, deadline_hours: float
) -> float:
    """P(late | still open `elapsed_hours` after the clock start)."""
    return outlook(dist, expected_hours, elapsed_hours, deadline_hours, 0.5).probability_late


@dataclass(frozen=True, slots=True)
class OpenOrderOutlooks:
    """`OpenOrderOutlook` of many open orders (aligned arrays, hours from each clock start),
    with the risk each promise had when it was given."""

    probability_late: FloatArray  # now, given the order is still open; in [0, 1]
    probability_at_issue: FloatArray  # the same promise's risk at its clock start
    expected_hours: FloatArray  # conditional median of the total duration
    revised_hours: FloatArray  # total hours meeting the target late rate again


def outlooks(
    model: RiskModel,
    keys: Sequence[str],
    expected_hours: FloatArray,
    elapsed_hours: FloatArray,
    deadline_hours: FloatArray,
    target_late_rate: float,
) -> OpenOrderOutlooks:
    """`outlook` of each order from its segment key's distribution (`RiskModel.resolve_keys`):
    arrays of shape (n,), the same numbers as `outlook` order by order."""
    if len(set(keys)) == 1:  # one segment (one order, say): no gathering and scattering
        dist = model.table[keys[0]]
        parts = _outlooks_of(dist, expected_hours, elapsed_hours, deadline_hours, target_late_rate)
        return OpenOrderOutlooks(*parts)
    n = expected_hours.size
    answer = [np.empty(n) for _ in range(4)]
    for key, members in _groups(keys):
        parts = _outlooks_of(
            model.table[key],
            expected_hours[members],
            elapsed_hours[members],
            deadline_hours[members],
            target_late_rate,
        )
        for into, part in zip(answer, parts, strict=True):
            into[members] = part
    probability, at_issue, expected, revised = answer
    return OpenOrderOutlooks(
        probability_late=probability,
        probability_at_issue=at_issue,
        expected_hours=expected,
        revised_hours=revised,
    )


def _outlooks_of(
    dist: ScoreDistribution,
    expected_hours: FloatArray,
    elapsed_hours: FloatArray,
    deadline_hours: FloatArray,
    target_late_rate: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(risk now, risk at issue, conditional median, revised hours) from one distribution."""
    # Stacked so that one order costs a few array operations (the service assesses one at a
    # time): survival now, at the deadline, at the clock start.
    above = elapsed_hours - expected_hours
    s = survivals(dist, np.stack((above, deadline_hours - expected_hours, -expected_hours)))
    given = s[0::2]  # still open now, at the clock start
    ratio = np.divide(s[1], given, out=np.ones_like(given), where=given > 0.0)
    np.minimum(ratio, 1.0, out=ratio)
    probability = np.where(elapsed_hours >= deadline_hours, 1.0, ratio[0])
    at_issue = np.where(deadline_hours <= 0.0, 1.0, ratio[1])
    levels = np.array([0.5, 1.0 - target_late_rate])[:, np.newaxis]
    median, revised = expected_hours + _conditional_quantiles(dist, levels, above, s[0])
    highest = np.maximum(np.maximum(revised, elapsed_hours), median)
    return (
        probability,
        at_issue,
        np.maximum(median, elapsed_hours),
        np.where(np.isfinite(revised), highest, revised),
    )


def flag_elapsed_hours(
    model: RiskModel,
    keys: Sequence[str],
    expected_hours: FloatArray,
    deadline_hours: FloatArray,
    threshold: float,
) -> FloatArray:
    """For each order, the first elapsed time (hours from the clock start) at which its risk
    reaches `threshold` if it is still open then; never later than its deadline.

    The risk S(D - e) / S(t - e) only grows with t, and S steps down at the distribution's
    values, so it first reaches the threshold at the first value v with
    S(v) <= S(D - e) / threshold.
    """
    answer = deadline_hours.astype(np.float64, copy=True)
    for key, members in _groups(keys):
        dist = model.table[key]
        if dist.values.size == 0:
            continue
        expected = expected_hours[members]
        needed = survivals(dist, deadline_hours[members] - expected) / threshold
        # survival after each value, non-increasing: the first index where it is <= needed.
        after = 1.0 - dist.cdf
        index = np.searchsorted(-after, -needed - 1e-12, side="left")
        value = dist.values[np.minimum(index, dist.values.size - 1)]
        at = expected + value
        for _ in range(2):  # so that `at - expected`, as the risk computes it, reaches the value
            at = np.where(at - expected < value, np.nextafter(at, np.inf), at)
        at = np.where(index < dist.values.size, at, np.inf)
        start_high = needed >= 1.0  # already at the threshold when the clock starts
        at = np.where(start_high, 0.0, np.maximum(at, 0.0))
        answer[members] = np.minimum(at, deadline_hours[members])
    return answer


def _groups(keys: Sequence[str]) -> list[tuple[str, NDArray[np.intp]]]:
    """The indices of each distinct key (one pass to number the keys, one sort)."""
    numbers: dict[str, int] = {}
    codes = np.fromiter((numbers.setdefault(k, len(numbers)) for k in keys), np.intp, len(keys))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(numbers) + 1))
    return [(key, order[bounds[i] : bounds[i + 1]]) for key, i in numbers.items()]
