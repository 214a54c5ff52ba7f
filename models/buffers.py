"""Fitted buffer rules: what a calibrated policy has learnt, as plain data, and how it buffers.

A policy (`models.policies`, scikit-learn estimators) is fitted on a calibration slice; what it
learns is one of these rules, which the quote path reads and a serving bundle stores as arrays
(`models.serving_form`), so quoting needs neither scikit-learn nor a pickle:

- `ConstantBuffer`: one score for every order, hours or a share of the expectation;
- `QuantileBuffer`: the quantile model's answer less the expectation;
- `SegmentBuffers`: a pooled split-conformal score per segment, with the Mondrian fallback;
- `AdaptiveBuffers`: segment scores moved online by outcomes and open orders (`models.control`).

A rule answers two ways with the same numbers: `buffers` for each order's tuple of segment labels
(the reference) and `column_buffers` for feature columns, which resolves each distinct segment
once (the quote path) in two halves: `resolve_columns` (segment, score and level, before the
expectation is known) and `buffer_hours`. Each rule owns its arithmetic (`buffer_hours`):
nothing else derives a buffer from a score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.control import (
    ControlState,
    OrdersSeen,
    SegmentControl,
    controlled_score,
    segment_nowcasts,
)
from models.pooling import SegmentBuffer
from models.segments import (
    GLOBAL_SEGMENT,
    Columns,
    distinct_labels,
    segment_key,
)

FloatArray = NDArray[np.float64]
Labels = Sequence[Sequence[str | None]]

__all__ = [
    "AdaptiveBuffers",
    "BufferAnswer",
    "BufferRule",
    "ConstantBuffer",
    "QuantileBuffer",
    "SegmentBuffers",
]


@dataclass(frozen=True, slots=True)
class BufferAnswer:
    """Buffers for a batch: hours, the segment each came from, and the confidence level used."""

    buffer_hours: FloatArray
    segments: list[str]
    levels: FloatArray


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a rule serves each order of a batch before its expectation is known: the score
    (None for rules without one), the segment key and the confidence level, shape (n,)."""

    scores: FloatArray | None
    segments: list[str]
    levels: FloatArray


class _Rule:
    """What every rule answers; `target_late_rate` is the share of promises it may break."""

    __slots__ = ()

    target_late_rate: float

    @property
    def level(self) -> float:
        """The confidence level the target keeps: 1 - target late rate."""
        return 1.0 - self.target_late_rate

    def buffers(
        self,
        expected_hours: FloatArray,
        labels: Labels,
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """Buffers for expectations (n,) and each order's tuple of segment labels (a rule without
        segments serves every order alike)."""
        return self.column_buffers(expected_hours, {}, (), quantile_hours, state)

    def column_buffers(
        self,
        expected_hours: FloatArray,
        columns: Columns,
        segments: Sequence[str],
        quantile_hours: FloatArray | None = None,
        state: ControlState | None = None,
    ) -> BufferAnswer:
        """`buffers` for orders given as feature columns, `segments` naming the label columns:
        `resolve_columns`, then `buffer_hours`."""
        resolved = self.resolve_columns(columns, segments, int(expected_hours.size), state)
        return BufferAnswer(
            self.buffer_hours(resolved, expected_hours, quantile_hours),
            resolved.segments,
            resolved.levels,
        )

    def resolve_columns(
        self, columns: Columns, segments: Sequence[str], n: int, state: ControlState | None
    ) -> Resolved:
        """The first half of `column_buffers`, which needs no expectation (the quote path runs
        it while the trees predict): every order served globally at the target's level."""
        return Resolved(None, [GLOBAL_SEGMENT] * n, np.full(n, self.level))

    def buffer_hours(
        self, resolved: Resolved, expected_hours: FloatArray, quantile_hours: FloatArray | None
    ) -> FloatArray:
        """The second half of `column_buffers`: each order's buffer, given its expectation."""
        raise NotImplementedError

    def segment_table(self) -> list[dict[str, object]]:
        """What the manifest records about each calibrated segment (none for most rules)."""
        return []


@dataclass(frozen=True, slots=True)
class ConstantBuffer(_Rule):
    """One score for every order: buffer hours, or on the relative scale a share of the
    expectation."""

    target_late_rate: float
    score: float
    relative: bool

    def buffer_hours(
        self, resolved: Resolved, expected_hours: FloatArray, quantile_hours: FloatArray | None
    ) -> FloatArray:
        if self.relative:
            return expected_hours * self.score
        return np.full(expected_hours.size, self.score)


@dataclass(frozen=True, slots=True)
class QuantileBuffer(_Rule):
    """The quantile model's answer at 1 - target, less the expectation (never below zero)."""

    target_late_rate: float

    def buffer_hours(
        self, resolved: Resolved, expected_hours: FloatArray, quantile_hours: FloatArray | None
    ) -> FloatArray:
        if quantile_hours is None:
            raise ValueError("the quantile policy needs the quantile model's hours")
        return np.maximum(quantile_hours - expected_hours, 0.0)


@dataclass(frozen=True, slots=True)
class SegmentBuffers(_Rule):
    """Split-conformal scores per segment (Mondrian, partially pooled), absolute or relative.

    `table` holds every calibrated segment by key (`models.pooling`), `depth` how many segment
    features the keys use; `relative` scores overruns as a share of the expectation."""

    target_late_rate: float
    table: Mapping[str, SegmentBuffer]
    depth: int
    relative: bool

    def resolve(self, labels: Sequence[str | None]) -> SegmentBuffer:
        """The calibrated segment that serves an order: its own, else its parent's, else global."""
        for depth in range(self.depth, 0, -1):
            found = self.table.get(segment_key(labels, depth))
            if found is not None:
                return found
        return self.table[GLOBAL_SEGMENT]

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

    def resolve_columns(
        self, columns: Columns, segments: Sequence[str], n: int, state: ControlState | None
    ) -> Resolved:
        inverse, distinct = distinct_labels(columns, segments, n)
        keys: list[str] = []
        scores = np.empty(len(distinct))
        levels = np.empty(len(distinct))
        for j, values in enumerate(distinct):
            segment = self.resolve(values)
            keys.append(segment.key)
            scores[j], levels[j] = self.score_at(segment, state)
        served: list[str] = np.array(keys, dtype=object)[inverse].tolist()
        return Resolved(scores[inverse], served, levels[inverse])

    def buffer_hours(
        self, resolved: Resolved, expected_hours: FloatArray, quantile_hours: FloatArray | None
    ) -> FloatArray:
        if resolved.scores is None:
            raise ValueError("segment buffers need the scores `resolve_columns` gives")
        return self._buffer_hours(expected_hours, resolved.scores)

    def _buffer_hours(self, expected_hours: FloatArray, scores: FloatArray) -> FloatArray:
        if self.relative:
            return expected_hours * np.maximum(scores, 0.0)
        # Scores are per order here; + 0.0 makes a -0.0 score's buffer +0.0.
        return np.maximum(scores, 0.0) + 0.0

    def segment_table(self) -> list[dict[str, object]]:
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
            for segment in self.table.values()
        ]

    def fallbacks(self, labels: Labels) -> dict[str, str]:
        """For each segment seen in `labels` whose buffer is mostly not its own (no quantile of
        its own, or an own weight below one half), the nearest key that mostly serves it."""
        served: dict[str, str] = {}
        for row in dict.fromkeys(map(tuple, labels)):
            own = segment_key(row, self.depth)
            if own in served:
                continue
            segment = self.resolve(row)
            while segment.depth > 0 and segment.own_weight < 0.5:
                segment = self.table[segment.path[-2]]
            served[own] = segment.key
        return {own: used for own, used in served.items() if own != used}


@dataclass(frozen=True, slots=True)
class AdaptiveBuffers(SegmentBuffers):
    """Segment scores that follow outcomes at their deadlines and the nowcast of open orders
    (`models.control`), within bounds: `controls` per segment key, `use_nowcast` whether orders
    in progress move them too."""

    controls: Mapping[str, SegmentControl]
    use_nowcast: bool

    def score_at(self, segment: SegmentBuffer, state: ControlState | None) -> tuple[float, float]:
        if state is None:
            return segment.score, self.level
        score = controlled_score(segment, self.controls, state, self.use_nowcast)
        if score == segment.score:
            return score, self.level
        return score, segment.distribution.cdf_at(score)

    def leaks(self) -> dict[str, float]:
        """Each segment key's leak, as `models.control.learn` takes them."""
        return {key: control.leak for key, control in self.controls.items()}

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
        orders = OrdersSeen(clock_start_s, expected_hours, fulfilled_s)
        return segment_nowcasts(self.controls, orders, paths, now_s, self.relative)

    def segment_table(self) -> list[dict[str, object]]:
        rows = SegmentBuffers.segment_table(self)
        for row in rows:
            control = self.controls[str(row["segment"])]
            row["control_scale"] = round(control.scale, 6)
            row["control_flight"] = round(control.flight, 2)
            row["nowcast_window_hours"] = round(control.window_hours, 2)
        return rows


BufferRule = ConstantBuffer | QuantileBuffer | SegmentBuffers | AdaptiveBuffers
