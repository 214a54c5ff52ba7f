"""The loops over a calendar's day table, as source: clock starts, local time features, deadlines.

`models.calendar.BusinessCalendar` packs its tables into two float64 arrays, and every vector
method of the calendar runs on these loops, compiled ahead of time by `models.kernels` (plain
Python in numba's nopython subset, like `models.tree_loops`; never called from Python):

- `days` (n_days + 1, `DAY_COLUMNS`): row i is local day `day0 + i`, its columns the
  `START`... constants below (integers such as the next open day are stored exactly as floats;
  the last row holds only the `START` of the day after the table);
- `zone` (n_segments, 2): offset segment i ends (exclusive) at `zone[i, 0]` (inf for the
  last) and its clock reads UTC + `zone[i, 1]` seconds.

Each loop checks its times against a range first and returns the index of the first time
outside it (NaN included), or -1: the calendar turns that into `InputError`. The arithmetic is
the float64 operations of the rules (no fast-math), so a number is the same however it is
reached; `tests/models/references.py` holds a plain-Python reading of the rules against them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Columns of the day table.
START, OPEN, CUT, IS_OPEN, NEXT_OPEN, NEXT_INTAKE, PREV_OPEN, TO_CLOSED, MONTH, DOY = range(10)
DAY_COLUMNS = 10
# The time features `local_parts_into` writes, in this order.
N_PARTS = 5
_DAY_S = 86_400.0


def _segment(zone: FloatArray, t: float) -> int:
    """The offset segment holding instant `t`: the first whose end is after it."""
    lo = 0
    hi = zone.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if zone[mid, 0] > t:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _day_at(days: FloatArray, day0: int, t: float, wall: float) -> int:
    """The table row of the local day holding `t`, whose wall clock reads `wall`."""
    day = int(np.floor(wall / _DAY_S)) - day0
    # The clock can still read day `day` before it reads its midnight for the last time
    # (a fall-back across midnight); such instants belong to the day before.
    if t < days[day, START]:
        day -= 1
    return day


def _day_of(days: FloatArray, zone: FloatArray, day0: int, t: float) -> int:
    """The table row of the local day holding instant `t`."""
    return _day_at(days, day0, t, t + zone[_segment(zone, t), 1])


def _first_outside(t: FloatArray, low: float, high: float) -> int:
    """The index of the first time not in [low, high) (NaN is in no range), or -1."""
    for i in range(t.shape[0]):
        if not (low <= t[i] < high):
            return i
    return -1


def _ceil_boundary(zone: FloatArray, t: float, unit_s: float) -> tuple[float, int]:
    """The first instant at or after `t` whose local wall time is a multiple of `unit_s`, and
    the offset segment it lies in (a boundary past its segment's end is not on that segment's
    clock: the next segment's first boundary is taken instead)."""
    seg = _segment(zone, t)
    offset = zone[seg, 1]
    boundary = np.ceil((t + offset) / unit_s) * unit_s - offset
    # t + offset can round onto a boundary just below it; the comparison in UTC is exact.
    if boundary < t:
        boundary += unit_s
    while boundary >= zone[seg, 0]:
        seg += 1
        offset = zone[seg, 1]
        boundary = np.ceil((zone[seg - 1, 0] + offset) / unit_s) * unit_s - offset
    return boundary, seg


def _deadline(
    days: FloatArray, zone: FloatArray, day0: int, raw: float, unit_s: float
) -> tuple[float, int]:
    """(deadline, closed days skipped) of one raw completion: for a day unit the end of the
    next open day at or after its local day; else the next local unit boundary, moved to
    `opens` on the next open day from a closed day, and to `opens` before opening."""
    if unit_s == _DAY_S:
        day = _day_of(days, zone, day0, raw)
        promised = int(days[day, NEXT_OPEN])
        return days[promised + 1, START], promised - day
    boundary, seg = _ceil_boundary(zone, raw, unit_s)
    bday = _day_at(days, day0, boundary, boundary + zone[seg, 1])
    promised = int(days[bday, NEXT_OPEN])
    if days[bday, IS_OPEN] != 0.0:
        return max(boundary, days[bday, OPEN]), promised - bday
    return days[promised, OPEN], promised - bday


def _clock_starts(
    t: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    out: FloatArray,
) -> int:
    """When each order's clock starts: the order time on an open day before the cut-off (not
    before opening), else opening on the next day that takes orders. -1, or the first bad index."""
    bad = _first_outside(t, low, high)
    if bad >= 0:
        return bad
    for i in range(t.shape[0]):
        x = t[i]
        day = _day_of(days, zone, day0, x)
        start = max(x, days[day, OPEN])
        if days[day, IS_OPEN] != 0.0 and start < days[day, CUT]:
            out[i] = start
        else:
            out[i] = days[int(days[day + 1, NEXT_INTAKE]), OPEN]
    return -1


def _local_parts_into(
    t: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    out: FloatArray,
    column: int,
) -> int:
    """The time features of each instant into out[i, column:column + N_PARTS]: weekday, local
    hours since midnight, month, day of year, days to the next closed day. -1, or the first
    bad index."""
    bad = _first_outside(t, low, high)
    if bad >= 0:
        return bad
    for i in range(t.shape[0]):
        x = t[i]
        wall = x + zone[_segment(zone, x), 1]
        day = _day_at(days, day0, x, wall)
        number = day + day0
        out[i, column] = float((number + 3) % 7)  # 1970-01-01 was a Thursday
        out[i, column + 1] = (wall - float(number) * _DAY_S) / 3_600.0
        out[i, column + 2] = days[day, MONTH]
        out[i, column + 3] = days[day, DOY]
        out[i, column + 4] = days[day, TO_CLOSED]
    return -1


def _day_numbers(
    t: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    out: IntArray,
) -> int:
    """Each instant's local date as days since 1970-01-01. -1, or the first bad index."""
    bad = _first_outside(t, low, high)
    if bad >= 0:
        return bad
    for i in range(t.shape[0]):
        out[i] = _day_of(days, zone, day0, t[i]) + day0
    return -1


def _deadlines(
    raw: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    unit_s: float,
    out: FloatArray,
    skipped: IntArray,
) -> int:
    """`_deadline` of each raw completion into `out` and `skipped`. -1, or the first bad index."""
    bad = _first_outside(raw, low, high)
    if bad >= 0:
        return bad
    for i in range(raw.shape[0]):
        out[i], skipped[i] = _deadline(days, zone, day0, raw[i], unit_s)
    return -1


def _length_in_units(
    days: FloatArray, zone: FloatArray, day0: int, ordered: float, deadline: float, unit_s: float
) -> float:
    """A promise's length from its order: for a day unit the local days from the order's day to
    the promised day (the one whose closing midnight is the deadline), else `unit_s` seconds
    from the order to the deadline."""
    if unit_s == _DAY_S:
        promised = _day_of(days, zone, day0, deadline - 1.0)
        return float(promised - _day_of(days, zone, day0, ordered))
    return (deadline - ordered) / unit_s


def _lengths(
    ordered: FloatArray,
    deadline: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    unit_s: float,
    out: FloatArray,
) -> int:
    """`_length_in_units` of each (order time, deadline). -1; or for a day unit, whose days
    are read, the first index whose order time is outside [low, high), or n plus the first
    whose deadline (less a second) is."""
    n: int = ordered.shape[0]
    if unit_s == _DAY_S:
        bad = _first_outside(ordered, low, high)
        if bad >= 0:
            return bad
        for i in range(n):
            if not (low <= deadline[i] - 1.0 < high):
                return n + i
    for i in range(n):
        out[i] = _length_in_units(days, zone, day0, ordered[i], deadline[i], unit_s)
    return -1


def _promises(
    ordered: FloatArray,
    start: FloatArray,
    expected_hours: FloatArray,
    buffer_hours: FloatArray,
    days: FloatArray,
    zone: FloatArray,
    day0: int,
    low: float,
    high: float,
    unit_s: float,
    limit_units: float,
    deadline: FloatArray,
    units: FloatArray,
    skipped: IntArray,
    exceeds: NDArray[np.bool_],
) -> int:
    """The back half of a quote: each order's raw completion (its clock start plus expected and
    buffer hours) to its deadline and closed days skipped (`_deadline`), its promise length in
    units (`_length_in_units`) and whether that passes `limit_units` (inf: no
    limit). -1; or the first index whose raw completion is outside [low, high); or n plus the
    first index whose order time is outside the day table (day unit)."""
    n: int = ordered.shape[0]
    for i in range(n):
        raw = start[i] + (expected_hours[i] + buffer_hours[i]) * 3600.0
        if not (low <= raw < high):
            return i
    if unit_s == _DAY_S:  # the order's own day is read too
        first = days[0, START]
        last = days[days.shape[0] - 1, START]
        for i in range(n):
            if not (first <= ordered[i] < last):
                return n + i
    for i in range(n):
        raw = start[i] + (expected_hours[i] + buffer_hours[i]) * 3600.0
        deadline[i], skipped[i] = _deadline(days, zone, day0, raw, unit_s)
        units[i] = _length_in_units(days, zone, day0, ordered[i], deadline[i], unit_s)
        exceeds[i] = units[i] > limit_units + 1e-9
    return -1
