"""Independent references the tests hold the real paths against.

- `is_open_day`: a store's open days read off its spec (weekday and public holidays), not off
  the calendar's tables;
- `local_date`: an instant's local date as the calendar's vector path reads it
  (`local_day_numbers`), for checks written with dates;
- `reference_clock_start`, `reference_deadline`, `reference_local_parts`: the calendar's rules
  read off its spec with zoneinfo datetimes, no tables, against which the compiled loops of
  `models.calendar_loops` are checked;
- `probabilities_late`: the risk of many open orders as a ratio of survivals, against which
  `models.risk.flag_elapsed_hours`' search for the moment a risk is reached is checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence

import holidays
import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.risk import RiskModel, survivals

FloatArray = NDArray[np.float64]
_EPOCH = dt.date(1970, 1, 1)


@functools.cache
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    # The years around too: a substitute day can fall in the year before or after.
    years = range(year - 1, year + 2)
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=years))


def is_open_day(calendar: BusinessCalendar, day: dt.date) -> bool:
    """Whether the store is open on local date `day`: an open weekday and no public holiday."""
    spec = calendar.spec
    if day.weekday() not in spec.open_weekdays:
        return False
    if spec.holidays_country is None:
        return True
    return day not in _holidays(spec.holidays_country, spec.holidays_subdivision, day.year)


def local_date(calendar: BusinessCalendar, at: dt.datetime) -> dt.date:
    """The store's local date at instant `at` (timezone-aware)."""
    [day] = calendar.local_day_numbers(np.array([at.timestamp()]))
    return _EPOCH + dt.timedelta(days=int(day))


def probabilities_late(
    model: RiskModel,
    keys: Sequence[str],
    expected_hours: FloatArray,
    elapsed_hours: FloatArray,
    deadline_hours: FloatArray,
) -> FloatArray:
    """P(late | still open `elapsed_hours` after the clock start) for many orders, each from
    its segment key's distribution: S(deadline - expected) / S(elapsed - expected)."""
    answer = np.ones(expected_hours.size)
    key_array = np.array(keys, dtype=object)
    for key in dict.fromkeys(keys):
        members = np.flatnonzero(key_array == key)
        dist = model.table[key]
        expected = expected_hours[members]
        still_open = survivals(dist, elapsed_hours[members] - expected)
        late = survivals(dist, deadline_hours[members] - expected)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(still_open > 0.0, np.minimum(1.0, late / still_open), 1.0)
        answer[members] = np.where(elapsed_hours[members] >= deadline_hours[members], 1.0, ratio)
    return answer


# --------------------------------------------------------------------------- calendar rules
# A plain-Python reading of the calendar's rules (`models.calendar`): zoneinfo datetimes and the
# spec, no tables. Slow (a few zoneinfo calls a minute of scanning), exact to the microsecond.


def last_at(calendar: BusinessCalendar, wall: dt.datetime) -> float:
    """The first instant (epoch seconds) after which the clock never again reads earlier than
    the naive local `wall`: its last occurrence, or the clock change that skipped it."""
    zone = calendar.zone
    later = wall.replace(tzinfo=zone, fold=1).timestamp()
    if dt.datetime.fromtimestamp(later, zone).replace(tzinfo=None) == wall:
        # Read twice: the last time, unless the clock falls back to exactly `wall` (then it
        # never reads earlier than `wall` after the first time).
        falls_back_here = (
            dt.datetime.fromtimestamp(later - 1, zone).utcoffset()
            != dt.datetime.fromtimestamp(later, zone).utcoffset()
        )
        return wall.replace(tzinfo=zone, fold=0).timestamp() if falls_back_here else later
    # Skipped: the first whole second whose wall clock reads later than `wall`.
    low = int(min(later, wall.replace(tzinfo=zone, fold=0).timestamp())) - 1
    high = int(max(later, wall.replace(tzinfo=zone, fold=0).timestamp())) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return float(high)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def day_start(calendar: BusinessCalendar, day: dt.date) -> float:
    return last_at(calendar, _midnight(day))


def reference_day(calendar: BusinessCalendar, t: float) -> dt.date:
    """The local day holding instant t: the day whose last midnight is at or before t."""
    day = dt.datetime.fromtimestamp(t, calendar.zone).date()
    return day - dt.timedelta(days=1) if t < day_start(calendar, day) else day


def _at(calendar: BusinessCalendar, day: dt.date, clock: dt.time) -> float:
    return last_at(calendar, dt.datetime.combine(day, clock))


def _next_open(calendar: BusinessCalendar, day: dt.date) -> dt.date:
    while not is_open_day(calendar, day):
        day += dt.timedelta(days=1)
    return day


def reference_clock_start(calendar: BusinessCalendar, t: float) -> float:
    """The order's time on an open day before the cut-off (not before opening), else opening
    on the next open day."""
    spec = calendar.spec
    day = reference_day(calendar, t)
    start = max(t, _at(calendar, day, spec.opens))
    cut = (
        math.inf
        if spec.cutoff is None
        else min(_at(calendar, day, spec.cutoff), day_start(calendar, day + _DAY))
    )
    if is_open_day(calendar, day) and start < cut:
        return start
    # The next open day that takes orders: its opening and cut-off not skipped to one instant.
    day = _next_open(calendar, day + _DAY)
    while spec.cutoff is not None and _at(calendar, day, spec.opens) >= min(
        _at(calendar, day, spec.cutoff), day_start(calendar, day + _DAY)
    ):
        day = _next_open(calendar, day + _DAY)
    return _at(calendar, day, spec.opens)


def reference_deadline(calendar: BusinessCalendar, raw: float, unit: str) -> tuple[float, int]:
    """(deadline, closed days skipped): the end of the next open day for `day`; else the first
    instant at or after `raw` whose wall clock reads a whole unit, found by scanning UTC minutes
    (every tested zone's offsets are whole minutes), moved off closed days and to opening."""
    if unit == "day":
        day = reference_day(calendar, raw)
        promised = _next_open(calendar, day)
        return day_start(calendar, promised + _DAY), (promised - day).days
    unit_s = 3_600 if unit == "hour" else 60
    minute = math.ceil(raw / 60.0) * 60
    while True:
        offset = dt.datetime.fromtimestamp(minute, calendar.zone).utcoffset()
        assert offset is not None
        if (minute + int(offset.total_seconds())) % unit_s == 0:
            break
        minute += 60
    boundary = float(minute)
    day = reference_day(calendar, boundary)
    opens = calendar.spec.opens
    if is_open_day(calendar, day):
        return max(boundary, _at(calendar, day, opens)), 0
    promised = _next_open(calendar, day)
    return _at(calendar, promised, opens), (promised - day).days


def reference_local_parts(calendar: BusinessCalendar, t: float) -> tuple[float, ...]:
    """(weekday, local hours since the day's midnight, month, day of year, days to closed)."""
    day = reference_day(calendar, t)
    wall = dt.datetime.fromtimestamp(t, calendar.zone).replace(tzinfo=None)
    hours = (wall - _midnight(day)).total_seconds() / 3_600.0
    to_closed = next(
        (k for k in range(60) if not is_open_day(calendar, day + dt.timedelta(days=k))), 60
    )
    return (
        float(day.weekday()),
        hours,
        float(day.month),
        float(day.timetuple().tm_yday),
        float(to_closed),
    )


_DAY = dt.timedelta(days=1)
