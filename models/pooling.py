"""Partially pooled segment buffers: each segment's score between its own quantile and its parent's.

Mondrian conformal with empirical-Bayes pooling: with `segments = ["store_id", "lens_type"]`
each store-and-lens cell with at least `MIN_POOLED_ORDERS` calibration orders gets a quantile
between its own and its parent's, weighted by how much it knows (the sampling variance of its own
quantile against the spread of its siblings' quantiles around their parent), so a small segment
borrows from its store, and its store from the global quantile, instead of a hard threshold; a
cell never seen is served by its parent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.scores import ScoreDistribution, score_distribution
from models.segments import GLOBAL_SEGMENT, segment_keys

FloatArray = NDArray[np.float64]

# A segment with fewer calibration orders has no quantile of its own: its parent's serves it.
MIN_POOLED_ORDERS = 10


@dataclass(frozen=True, slots=True)
class SegmentBuffer:
    """A calibrated segment: its score distribution and the buffer it gives at the target.

    `score` is pooled: `own_weight` of its own quantile, the rest its parent's (pooled) one;
    `path` the keys from the global segment down to this one."""

    key: str
    depth: int
    distribution: ScoreDistribution
    score: float  # buffer hours, or the relative overrun ratio on the relative scale
    own_weight: float = 1.0
    path: tuple[str, ...] = (GLOBAL_SEGMENT,)


def pooled_segments(
    scores: FloatArray,
    censored: NDArray[np.bool_],
    labels: Sequence[Sequence[str | None]],
    depth: int,
    target_late_rate: float,
) -> dict[str, SegmentBuffer]:
    """Every calibrated segment down to `depth`, by key, from the calibration orders' scores
    (the global segment first, then each depth's segments)."""
    global_dist = score_distribution(scores, censored)
    table = {
        GLOBAL_SEGMENT: SegmentBuffer(
            GLOBAL_SEGMENT, 0, global_dist, global_dist.conformal_quantile(target_late_rate)
        )
    }
    for at_depth in range(1, depth + 1):
        own = _own_quantiles(scores, censored, labels, at_depth, table, target_late_rate)
        between = _between_variance(own, target_late_rate)
        for key, (dist, quantile, parent) in own.items():
            weight = between / (between + dist.quantile_variance(target_late_rate))
            table[key] = SegmentBuffer(
                key,
                at_depth,
                dist,
                weight * quantile + (1.0 - weight) * parent.score,
                own_weight=weight,
                path=(*parent.path, key),
            )
    return table


_Own = dict[str, tuple[ScoreDistribution, float, SegmentBuffer]]


def _own_quantiles(
    scores: FloatArray,
    censored: NDArray[np.bool_],
    labels: Sequence[Sequence[str | None]],
    depth: int,
    table: Mapping[str, SegmentBuffer],
    target_late_rate: float,
) -> _Own:
    """(distribution, own conformal quantile, parent) of each segment at `depth` that has enough
    orders and a calibrated parent."""
    keys = np.array(segment_keys(labels, depth), dtype=object)
    parents = segment_keys(labels, depth - 1)
    own: _Own = {}
    for key in dict.fromkeys(keys.tolist()):
        members = keys == key
        if int(members.sum()) < MIN_POOLED_ORDERS:
            continue
        parent = table.get(parents[int(np.argmax(members))])
        if parent is None:
            continue  # the parent itself was too small: so is this one
        dist = score_distribution(scores[members], censored[members])
        own[key] = (dist, dist.conformal_quantile(target_late_rate), parent)
    return own


def _between_variance(own: _Own, target_late_rate: float) -> float:
    """How much the segments' own quantiles truly differ from their parents' (the squared
    differences less the sampling variance they would show anyway), floored above zero."""
    if not own:
        return 0.0
    squared = [(quantile - parent.score) ** 2 for _, quantile, parent in own.values()]
    noise = [dist.quantile_variance(target_late_rate) for dist, _, _ in own.values()]
    return max(float(np.mean(squared)) - float(np.mean(noise)), 1e-12)
