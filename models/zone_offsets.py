"""A time zone's UTC offsets as arrays: local wall clock <-> UTC without a zoneinfo call per time.

The zone's offset transitions over a span are found once (zoneinfo exposes no list of them), so
UTC -> local is `utc + offsets[searchsorted(transitions, utc, "right")]` (read by the calendar's
compiled loops, `models.calendar_loops`), and the instants where the local clock reads a wall
time or the last unit boundary before a limit are array passes.

Local wall times that do not exist (spring forward) or occur twice (fall back) are mapped to
instants one way everywhere: a wall time W is the first instant after which the clock never again
reads earlier than W. So a skipped time is the transition instant, and a repeated one is its last
occurrence (see `BusinessCalendar` for why).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from models.errors import SpecError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Offsets are sampled this often to find transitions, then each change is bisected to
# the second. Two changes within one step would be missed; the closest pair in tzdata
# 1970-2100 is 6.9 days apart (America/Boa_Vista, October 2000).
_SAMPLE_SECONDS = 86_400


class ZoneOffsets:
    """A zone's UTC offsets from `start` to `stop` (epoch seconds); immutable once built.

    `offsets[i]` seconds east of UTC hold from `transitions[i - 1]` (inclusive) to
    `transitions[i]` (exclusive); the first and last offsets extend without end. UTC -> local
    and unit boundaries are read by the calendar's compiled loops (`models.calendar_loops`).
    """

    __slots__ = ("offsets", "transitions")

    transitions: FloatArray
    offsets: FloatArray

    def __init__(self, zone: ZoneInfo, start: int, stop: int) -> None:
        self._install(*_offset_segments(zone, start, stop))

    @classmethod
    def from_arrays(cls, transitions: FloatArray, offsets: FloatArray) -> ZoneOffsets:
        """The offsets `transitions` and `offsets` (as a built one holds them), not recomputed."""
        if offsets.shape != (transitions.size + 1,):
            raise ValueError("a zone needs one more offset than transitions")
        zone = cls.__new__(cls)
        zone._install(np.array(transitions, dtype=np.float64), np.array(offsets, dtype=np.float64))
        return zone

    def _install(self, transitions: FloatArray, offsets: FloatArray) -> None:
        transitions.flags.writeable = False  # shared across requests: no edits
        offsets.flags.writeable = False
        self.transitions = transitions
        self.offsets = offsets

    def last_at(self, wall: FloatArray) -> FloatArray:
        """The first instant after which the local clock never reads earlier than `wall`.

        Segment i covers [transitions[i-1], transitions[i]) and its clock starts at
        transitions[i-1] + offsets[i]; those starts increase (checked at construction), so
        the answer lies in the last segment whose clock starts before `wall`.
        """
        transitions = np.concatenate(([-np.inf], self.transitions, [np.inf]))
        clock_starts = transitions[:-1] + self.offsets
        seg = np.searchsorted(clock_starts, wall, side="left") - 1
        return np.minimum(wall - self.offsets[seg], transitions[seg + 1])

    def floor_boundaries_below(self, limit: FloatArray, unit_s: float) -> FloatArray:
        """The last instant strictly before each `limit` whose local wall time is a multiple
        of `unit_s`."""
        transitions = np.concatenate(([-np.inf], self.transitions))
        # Segment of the instants just before `limit` (a limit on a transition belongs to
        # the segment ending there).
        seg = np.searchsorted(self.transitions, limit, side="left")
        offset = self.offsets[seg]
        boundary = (np.ceil((limit + offset) / unit_s) - 1.0) * unit_s - offset
        boundary = np.where(boundary >= limit, boundary - unit_s, boundary)
        boundary = np.where(boundary + unit_s < limit, boundary + unit_s, boundary)
        early = boundary < transitions[seg]
        while early.any():
            which = np.flatnonzero(early)
            prv = seg[which] - 1
            offset_p = self.offsets[prv]
            end_wall = transitions[prv + 1] + offset_p
            boundary[which] = (np.ceil(end_wall / unit_s) - 1.0) * unit_s - offset_p
            seg[which] = prv
            early[which] = boundary[which] < transitions[prv]
        return boundary


def _utc_offset(zone: ZoneInfo, t: int) -> float:
    offset = dt.datetime.fromtimestamp(t, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset.total_seconds()


def _offset_segments(zone: ZoneInfo, start: int, stop: int) -> tuple[FloatArray, FloatArray]:
    """The zone's UTC-offset changes in [start, stop] (epoch seconds) as (transitions, offsets):
    sample the offset and bisect each change down to the second (transitions are whole
    seconds in tzdata)."""
    from_timestamp = dt.datetime.fromtimestamp  # the sampling loop is most of construction
    samples = range(start, stop + _SAMPLE_SECONDS, _SAMPLE_SECONDS)
    sampled = [from_timestamp(t, zone).utcoffset() for t in samples]
    transitions: list[float] = []
    offsets = [_utc_offset(zone, start)]
    for k in range(1, len(sampled)):
        if sampled[k] == sampled[k - 1]:
            continue
        before, after = samples[k - 1], samples[k]  # old offset at `before`, new at `after`
        while after - before > 1:
            middle = (before + after) // 2
            if _utc_offset(zone, middle) == offsets[-1]:
                before = middle
            else:
                after = middle
        transitions.append(float(after))
        offsets.append(_utc_offset(zone, after))
    segments = (np.array(transitions, dtype=np.float64), np.array(offsets, dtype=np.float64))
    clock_starts = segments[0] + segments[1][1:]
    if (np.diff(clock_starts) <= 0).any():  # pragma: no cover - no real zone does this
        raise SpecError(f"time zone {zone.key}: a clock change undoes the previous one")
    return segments
