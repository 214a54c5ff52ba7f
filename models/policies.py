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

Segments (Mondrian conformal, partially pooled): with `segments = ["store_id", "lens_type"]`
each store-and-lens cell with at least `MIN_POOLED_ORDERS` calibration orders gets a quantile
between its own and its parent's, weighted by how much it knows (empirical Bayes: the sampling
variance of its own quantile against the spread of its siblings' quantiles around their parent),
so a small segment borrows from its store, and its store from the global quantile, instead of a
hard threshold; a cell never seen is served by its parent. `segment_table` records the weights.

The adaptive policy is conformal whose buffer follows outcomes and open orders online, per
segment (`models.control`): quantile tracking with a leaky integral of misses learnt at each
promise's deadline, plus a nowcast of the residual median from orders still in progress, as a
bounded offset in units of the segment's score spread (so it can never collapse to the largest
calibration score, the failure of plain adaptive conformal inference at a level near zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.control import ControlState, nowcast_median, residual_scores

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

POLICY_NAMES: tuple[str, ...] = ("fixed", "proportional", "quantile", "conformal", "adaptive")
GLOBAL_SEGMENT = "all orders"
SEGMENT_SEPARATOR = " / "
# A segment with fewer calibration orders has no quantile of its own: its parent's serves it.
MIN_POOLED_ORDERS = 10
# The adaptive offset, in units of the segment's score spread (its quantile at 1 - target less
# its median): the integral of misses moves it within [MIN, MAX], the nowcast's shift of the
# whole distribution too, and both together stay within [-MAX, MAX]; the score never drops below
# the median score (moved by the nowcast's shift), so it cannot collapse either way.
MIN_CONTROL_OFFSET = -1.0
MAX_CONTROL_OFFSET = 4.0
# A nowcast resting on this many fulfilments weighs as much as its parent's.
NOWCAST_PRIOR_EVENTS = 50
# The nowcast window holds about this many fulfilments of the segment, within these multiples of
# its median expectation (and never more than the calibration slice's span); a small segment's
# fewer fulfilments weigh less against its parent's (NOWCAST_PRIOR_EVENTS).
NOWCAST_EVENTS = 100
NOWCAST_MIN_WINDOW = 0.5
NOWCAST_MAX_WINDOW = 4.0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """What the spec's `[quote]` table says about the buffer."""

    name: str
    target_late_rate: float
    segments: tuple[str, ...] = ()
    relative: bool = False
    fixed_buffer_hours: float | None = None
    proportional_buffer: float | None = None
    min_segment_size: int = 200  # the risk distributions' own segments (models.risk)
    # Integral gain of the adaptive policy: a whole promise-length of outcomes all late (less
    # the target) moves the offset by this many score spreads.
    control_gain: float = 1.0
    use_nowcast: bool = True


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


def segment_keys(labels: Sequence[Sequence[str | None]], depth: int) -> list[str]:
    """Segment keys at `depth` (0 = global) for each order's tuple of segment labels."""
    if depth == 0:
        return [GLOBAL_SEGMENT] * len(labels)
    # Few distinct label tuples, many orders: join each distinct tuple once.
    keys = {row: segment_key(row, depth) for row in dict.fromkeys(map(tuple, labels))}
    return [keys[tuple(row)] for row in labels]


def segment_key(values: Sequence[str | None], depth: int) -> str:
    """The key of one order's segment at `depth` (0 = global)."""
    if depth == 0:
        return GLOBAL_SEGMENT
    return SEGMENT_SEPARATOR.join(_label(v) for v in values[:depth])


def _label(value: str | None) -> str:
    return "(missing)" if value is None else value


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
        state: ControlState | None = None,
    ) -> BufferAnswer:
        raise NotImplementedError

    def buffer_one(
        self,
        expected_hours: float,
        labels: Sequence[str | None],
        quantile_hours: float | None = None,
        state: ControlState | None = None,
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


def _between_variance(
    own: Mapping[str, tuple[ScoreDistribution, float, SegmentBuffer]], target: float
) -> float:
    """How much the segments' own quantiles truly differ from their parents' (the squared
    differences less the sampling variance they would show anyway), floored above zero."""
    if not own:
        return 0.0
    squared = [(quantile - parent.score) ** 2 for _, quantile, parent in own.values()]
    noise = [dist.quantile_variance(target) for dist, _, _ in own.values()]
    return max(float(np.mean(squared)) - float(np.mean(noise)), 1e-12)


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
        state: ControlState | None = None,
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
        state: ControlState | None = None,
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
        state: ControlState | None = None,
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
        target = cfg.target_late_rate
        scores = _scores(calibration, cfg.relative)
        global_dist = score_distribution(scores, calibration.censored)
        table: dict[str, SegmentBuffer] = {
            GLOBAL_SEGMENT: SegmentBuffer(
                GLOBAL_SEGMENT, 0, global_dist, global_dist.conformal_quantile(target)
            )
        }
        for depth in range(1, len(cfg.segments) + 1):
            keys = np.array(segment_keys(calibration.segment_labels, depth), dtype=object)
            parents = segment_keys(calibration.segment_labels, depth - 1)
            own: dict[str, tuple[ScoreDistribution, float, SegmentBuffer]] = {}
            for key in dict.fromkeys(keys.tolist()):
                members = keys == key
                if int(members.sum()) < MIN_POOLED_ORDERS:
                    continue
                parent = table.get(parents[int(np.argmax(members))])
                if parent is None:
                    continue  # the parent itself was too small: so is this one
                dist = score_distribution(scores[members], calibration.censored[members])
                own[key] = (dist, dist.conformal_quantile(target), parent)
            between = _between_variance(own, target)
            for key, (dist, quantile, parent) in own.items():
                weight = between / (between + dist.quantile_variance(target))
                table[key] = SegmentBuffer(
                    key,
                    depth,
                    dist,
                    weight * quantile + (1.0 - weight) * parent.score,
                    own_weight=weight,
                    path=(*parent.path, key),
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

    def score_at(self, segment: SegmentBuffer, state: ControlState | None) -> tuple[float, float]:
        return segment.score, 1.0 - self.cfg.target_late_rate

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Sequence[Sequence[str | None]],
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
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
                    "own_weight": round(segment.own_weight, 4),
                    "scale": "relative" if self.cfg.relative else "hours",
                }
            )
        return rows

    def fallbacks(self, labels: Sequence[Sequence[str | None]]) -> dict[str, str]:
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


@dataclass(frozen=True, slots=True)
class SegmentControl:
    """How the adaptive policy moves one segment's buffer (all fitted on the calibration slice).

    `scale`: the score spread that one unit of offset is; `gain`: offset per unit of the miss
    sum; `flight`: about how many of the segment's promises are open at once (outcomes per
    promise length: a controller that has learnt this many weighs as much as its parent);
    `leak`: the share of the miss sum kept per outcome, forgetting over about the time a refit
    takes to absorb a change (settle time and calibration span); `baseline_median`: the
    calibration slice's median residual score, which the nowcast compares against;
    `window_hours`: the nowcast's window; `floor`: the lowest score served (the median)."""

    scale: float
    gain: float
    flight: float
    leak: float
    baseline_median: float
    window_hours: float
    floor: float


class AdaptivePolicy(ConformalPolicy):
    """Conformal whose per-segment buffer follows outcomes at their deadlines and the nowcast
    of open orders (`models.control`), within bounds."""

    def fit(self, calibration: CalibrationSlice) -> Self:
        super().fit(calibration)
        cfg = self.cfg
        target = cfg.target_late_rate
        span_hours, lag_hours = _calibration_window_hours(calibration)
        reached = (
            calibration.needed_hours
            if calibration.reached_hours is None
            else calibration.reached_hours
        )
        residual = residual_scores(reached, calibration.expected_hours, cfg.relative)
        # How long a promise stays open, about: what each calibration order needed.
        promised = np.maximum(calibration.needed_hours, calibration.expected_hours)
        control: dict[str, SegmentControl] = {}
        for depth in range(len(cfg.segments) + 1):
            keys = np.array(segment_keys(calibration.segment_labels, depth), dtype=object)
            distinct, inverse = np.unique(keys, return_inverse=True)
            for j, key in enumerate(distinct.tolist()):
                segment = self.table_.get(key)
                if segment is None:
                    continue
                members = np.flatnonzero(inverse == j)
                n = members.size
                per_hour = n / span_hours
                flight = max(1.0, per_hour * float(np.mean(promised[members])))
                memory = max(2.0, per_hour * (span_hours + lag_hours))
                dist = segment.distribution
                baseline = score_distribution(residual[members], calibration.censored[members])
                typical_hours = float(np.median(calibration.expected_hours[members]))
                # Long enough for NOWCAST_EVENTS fulfilments, short enough to be news: a
                # window spanning weeks of history would see a shock only as its average.
                window = min(
                    span_hours,
                    NOWCAST_MAX_WINDOW * typical_hours,
                    max(NOWCAST_EVENTS / max(per_hour, 1e-9), NOWCAST_MIN_WINDOW * typical_hours),
                )
                scale = max(dist.spread(target), 1e-3 * max(abs(segment.score), 1.0))
                control[key] = SegmentControl(
                    scale=scale,
                    gain=cfg.control_gain / flight,
                    flight=flight,
                    leak=1.0 - 1.0 / memory,
                    baseline_median=baseline.quantile(0.5),
                    window_hours=window,
                    floor=dist.quantile(0.5),
                )
        self.control_ = control
        return self

    def score_at(self, segment: SegmentBuffer, state: ControlState | None) -> tuple[float, float]:
        target = self.cfg.target_late_rate
        if state is None:
            return segment.score, 1.0 - target
        offset = 0.0
        shift = 0.0
        for key in segment.path:
            control = self.control_[key]
            n = state.counts.get(key, 0)
            weight = n / (n + control.flight)
            offset = weight * control.gain * state.misses.get(key, 0.0) + (1.0 - weight) * offset
            median = state.medians.get(key)
            if median is not None and self.cfg.use_nowcast:
                events = state.events.get(key, 0)
                weight = events / (events + NOWCAST_PRIOR_EVENTS)
                own_shift = (median - control.baseline_median) / control.scale
                shift = weight * own_shift + (1.0 - weight) * shift
        control = self.control_[segment.key]
        offset = min(MAX_CONTROL_OFFSET, max(MIN_CONTROL_OFFSET, offset))
        shift = min(MAX_CONTROL_OFFSET, max(-MAX_CONTROL_OFFSET, shift))
        moved = min(MAX_CONTROL_OFFSET, max(-MAX_CONTROL_OFFSET, offset + shift))
        score = max(segment.score + control.scale * moved, control.floor + control.scale * shift)
        if score == segment.score:
            return score, 1.0 - target
        return score, segment.distribution.cdf_at(score)

    def leaks(self) -> dict[str, float]:
        """Each segment key's leak, as `models.control.learn` takes them."""
        check_is_fitted(self, "control_")
        return {key: control.leak for key, control in self.control_.items()}

    def paths(self, labels: Sequence[Sequence[str | None]]) -> list[tuple[str, ...]]:
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
        check_is_fitted(self, "control_")
        members_of: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            for key in path:
                members_of.setdefault(key, []).append(i)
        medians: dict[str, float] = {}
        events: dict[str, int] = {}
        for key, index in members_of.items():
            control = self.control_.get(key)
            if control is None:
                continue
            members = np.array(index)
            median, n_events = nowcast_median(
                clock_start_s[members],
                expected_hours[members],
                fulfilled_s[members],
                now_s,
                control.window_hours,
                self.cfg.relative,
            )
            if median is not None:
                medians[key] = median
                events[key] = n_events
        return medians, events

    def segment_table(self) -> list[dict[str, object]]:
        rows = super().segment_table()
        for row in rows:
            control = self.control_[str(row["segment"])]
            row["control_scale"] = round(control.scale, 6)
            row["control_flight"] = round(control.flight, 2)
            row["nowcast_window_hours"] = round(control.window_hours, 2)
        return rows


def _calibration_window_hours(calibration: CalibrationSlice) -> tuple[float, float]:
    """(span, lag) in hours: from the first to the last calibration order placed, and from the
    last to the cut-off. Unknown placements: a nominal 1,000-hour span and no lag."""
    if calibration.placed_s is None or calibration.placed_s.size == 0:
        return 1000.0, 0.0
    first, last = float(calibration.placed_s.min()), float(calibration.placed_s.max())
    cutoff = last if calibration.cutoff_s is None else calibration.cutoff_s
    return max((last - first) / 3600.0, 1.0), max((cutoff - last) / 3600.0, 0.0)


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
