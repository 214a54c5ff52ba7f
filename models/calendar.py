"""The store's business calendar: open days, cut-off, time zone, and promise deadlines.

Everything the quote path needs is precomputed when a `BusinessCalendar` is built, so a
scalar call costs a few microseconds and a vectorised call a few array passes:

- a day table over the year range plus a margin, indexed by local day: whether the day is
  open, the next open day at or after it, the last open day at or before it, the UTC
  instants at which the day starts, the store opens and the cut-off falls, and the
  model's calendar features (month, day of year, days to the next closed day);
- the zone's UTC-offset transitions over the same range (`models.zone_offsets`), so UTC ->
  local is an array pass with no per-element zoneinfo call.

Vector APIs take and return float64 seconds since the Unix epoch (UTC); scalar APIs take
timezone-aware `datetime`s and give the same numbers (the tests compare them).

Local wall times that do not exist (spring forward) or occur twice (fall back) are mapped
to instants one way everywhere (`ZoneOffsets.last_at`): a wall time W is the first instant after
which the clock never again reads earlier than W. So a skipped time is the transition instant, a
repeated one is its last occurrence, and a local day starts when the clock reads its midnight
for the last time. This keeps the local date monotone in time even where the clocks fall back
across midnight (America/St_Johns until 2011: 00:01 back to 23:01), which the promise
invariants (never earlier than the raw completion, monotone) need.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import numpy as np
from numpy.typing import NDArray

from models.errors import InputError, SpecError
from models.units import SECONDS_PER_UNIT, Unit
from models.zone_offsets import ZoneOffsets

__all__ = ["BusinessCalendar", "CalendarSpec", "CalendarTables", "Deadline", "LocalParts"]

FloatArray = NDArray[np.float64]
_A = TypeVar("_A", bound=NDArray[Any])
IntArray = NDArray[np.int64]

SECONDS_PER_DAY = 86_400
DAYS_TO_CLOSED_CAP = 60  # keeps the model feature's range the same for every calendar
# Days of table kept before the first and after the last year: room for a promise moved
# past New Year, for the 60-day look-ahead of `days_to_closed`, and for the open day
# before a fulfilment early on 1 January (earliest_raw_meeting).
_MARGIN_DAYS = 70
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """How the store keeps time: its zone, open weekdays, public holidays and cut-off.

    `cutoff` and `opens` are naive local clock times, `cutoff` later than `opens`; orders
    at or after `cutoff` count from `opens` on the next open day.
    """

    timezone: str = "UTC"
    open_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0
    holidays_country: str | None = None  # a `holidays` country code, e.g. "GB"
    holidays_subdivision: str | None = None  # e.g. "ENG"
    cutoff: dt.time | None = None  # local; orders at or after it count from the next open day
    # Local time the clock starts on an open day after a cut-off or closed day; also where
    # an hour/minute promise falling on a closed day (or before opening) is moved to.
    opens: dt.time = dt.time(0, 0)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A promise for one order.

    `deadline_at` is UTC: the promise is kept iff `fulfilled_at <= deadline_at`.
    `promise_local` is in the store's zone: for `day` promises the start of the promised
    day (its date is the promise date), for `hour`/`minute` promises the promised time.
    `closed_days_skipped` counts the closed days the promise was moved over.
    """

    deadline_at: dt.datetime
    promise_local: dt.datetime
    closed_days_skipped: int


@dataclass(frozen=True, slots=True)
class LocalParts:
    """Local time features, one float64 per input time, same shape as the input.

    `weekday` 0 = Monday; `hour` local wall-clock hours since midnight (14.5 = 14:30);
    `month` 1-12; `day_of_year` 1-366; `days_to_closed` days until the next closed day
    (0 if the day itself is closed), capped at 60.
    """

    weekday: FloatArray
    hour: FloatArray
    month: FloatArray
    day_of_year: FloatArray
    days_to_closed: FloatArray


@dataclass(frozen=True, slots=True)
class CalendarTables:
    """What a `BusinessCalendar` computes from its spec, as plain numbers and arrays: a serving
    bundle stores these (`models.serving_form`), so a calendar loads exactly as it was trained,
    whatever the `holidays` and tzdata versions where it is loaded.

    Day table index i is local day `day0 + i` (days since 1970-01-01); the valid range is
    [first_valid, last_valid], the rest is margin. `day_start` has one extra entry at the end;
    `transitions` and `offsets` are the zone's UTC offsets (`models.zone_offsets.ZoneOffsets`).
    """

    day0: int
    first_valid: int
    last_valid: int
    is_open: NDArray[np.bool_]
    next_open: IntArray
    next_intake: IntArray  # the next open day whose order window is not empty
    prev_open: IntArray
    day_start: FloatArray  # UTC instant each day starts
    day_open: FloatArray  # UTC instant of `opens`
    day_cut: FloatArray  # UTC instant of `cutoff` (inf without one)
    days_to_closed: FloatArray
    month: FloatArray
    day_of_year: FloatArray
    transitions: FloatArray
    offsets: FloatArray


class BusinessCalendar:
    """Built once (per bundle load) from a CalendarSpec and a year range; immutable afterwards.

    Times whose local date falls outside 1 January `first_year` .. 31 December `last_year`
    raise `InputError`. A bad spec (unknown zone or holiday country, no open weekday, a
    cut-off not after `opens`) raises `SpecError`.
    """

    __slots__ = (
        "_clock",
        "_day0",
        "_day_cut",
        "_day_cut_t",
        "_day_doy_t",
        "_day_month_t",
        "_day_open",
        "_day_open_t",
        "_day_start",
        "_day_start_t",
        "_days_to_closed",
        "_days_to_closed_t",
        "_doy",
        "_first_valid",
        "_is_open",
        "_is_open_t",
        "_last_valid",
        "_month",
        "_next_intake",
        "_next_intake_t",
        "_next_open",
        "_next_open_t",
        "_prev_open",
        "_range_end",
        "_range_start",
        "first_year",
        "last_year",
        "spec",
        "zone",
    )

    spec: CalendarSpec
    zone: ZoneInfo
    first_year: int
    last_year: int
    # Day table, index i = local day `_day0 + i` (days since 1970-01-01); the valid range
    # is [_first_valid, _last_valid], the rest is margin. Arrays for the vector path...
    _day0: int
    _first_valid: int
    _last_valid: int
    _is_open: NDArray[np.bool_]
    _next_open: IntArray
    _next_intake: IntArray  # the next open day whose order window is not empty
    _prev_open: IntArray
    _day_start: FloatArray  # UTC instant each day starts; one extra entry at the end
    _day_open: FloatArray  # UTC instant of `opens`
    _day_cut: FloatArray  # UTC instant of `cutoff` (inf without one)
    _days_to_closed: FloatArray
    _month: FloatArray
    _doy: FloatArray
    _clock: ZoneOffsets
    _range_start: float
    _range_end: float
    # ...and the same values as tuples of Python scalars for the scalar path.
    _is_open_t: tuple[bool, ...]
    _next_open_t: tuple[int, ...]
    _next_intake_t: tuple[int, ...]
    _day_start_t: tuple[float, ...]
    _day_open_t: tuple[float, ...]
    _day_cut_t: tuple[float, ...]
    _days_to_closed_t: tuple[float, ...]
    _day_month_t: tuple[float, ...]
    _day_doy_t: tuple[float, ...]

    def __init__(self, spec: CalendarSpec, first_year: int = 2000, last_year: int = 2060) -> None:
        self._set_spec(spec, first_year, last_year)
        self._install(_build_tables(spec, self.zone, first_year, last_year))

    @classmethod
    def from_tables(
        cls, spec: CalendarSpec, first_year: int, last_year: int, tables: CalendarTables
    ) -> BusinessCalendar:
        """The calendar whose tables are `tables` (as `tables` gave them), without recomputing
        them: a bundle's calendar as it was trained. `SpecError` for a bad spec or years, or
        tables that do not cover the years."""
        calendar = cls.__new__(cls)
        calendar._set_spec(spec, first_year, last_year)
        expected = _day_range(first_year, last_year)
        if (tables.day0, tables.first_valid, tables.last_valid) != expected:
            raise SpecError(
                f"the calendar's tables do not cover {first_year}-{last_year} as they should"
            )
        calendar._install(tables)
        return calendar

    @property
    def tables(self) -> CalendarTables:
        """Everything this calendar computed from its spec (see `CalendarTables`)."""
        return CalendarTables(
            day0=self._day0,
            first_valid=self._first_valid,
            last_valid=self._last_valid,
            is_open=self._is_open,
            next_open=self._next_open,
            next_intake=self._next_intake,
            prev_open=self._prev_open,
            day_start=self._day_start,
            day_open=self._day_open,
            day_cut=self._day_cut,
            days_to_closed=self._days_to_closed,
            month=self._month,
            day_of_year=self._doy,
            transitions=self._clock.transitions,
            offsets=self._clock.offsets,
        )

    def _set_spec(self, spec: CalendarSpec, first_year: int, last_year: int) -> None:
        self.spec = spec
        self.zone = _zone(spec.timezone)
        _check_spec(spec)
        if not dt.MINYEAR < first_year <= last_year < dt.MAXYEAR:
            raise SpecError(
                f"calendar years {first_year}-{last_year}: need "
                f"{dt.MINYEAR + 1} <= first_year <= last_year <= {dt.MAXYEAR - 1}"
            )
        self.first_year = first_year
        self.last_year = last_year

    def _install(self, tables: CalendarTables) -> None:
        self._day0 = tables.day0
        self._first_valid = tables.first_valid
        self._last_valid = tables.last_valid
        self._clock = ZoneOffsets.from_arrays(tables.transitions, tables.offsets)
        self._is_open = _frozen(tables.is_open)
        self._next_open = _frozen(tables.next_open)
        self._next_intake = _frozen(tables.next_intake)
        self._prev_open = _frozen(tables.prev_open)
        self._days_to_closed = _frozen(tables.days_to_closed)
        self._day_start = _frozen(tables.day_start)
        self._day_open = _frozen(tables.day_open)
        self._day_cut = _frozen(tables.day_cut)
        self._month = _frozen(tables.month)
        self._doy = _frozen(tables.day_of_year)
        self._range_start = float(self._day_start[self._first_valid])
        self._range_end = float(self._day_start[self._last_valid + 1])

        # Tuples of Python scalars for the scalar path: indexing them is ~20x cheaper than
        # indexing numpy arrays, and they hold the very same float64 values.
        self._day_start_t = tuple(self._day_start.tolist())
        self._day_open_t = tuple(self._day_open.tolist())
        self._day_cut_t = tuple(self._day_cut.tolist())
        self._is_open_t = tuple(self._is_open.tolist())
        self._next_open_t = tuple(self._next_open.tolist())
        self._next_intake_t = tuple(self._next_intake.tolist())
        self._days_to_closed_t = tuple(self._days_to_closed.tolist())
        self._day_month_t = tuple(self._month.tolist())
        self._day_doy_t = tuple(self._doy.tolist())

    def __repr__(self) -> str:
        years = f"first_year={self.first_year}, last_year={self.last_year}"
        return f"BusinessCalendar({self.spec!r}, {years})"

    # ----------------------------------------------------------------- days

    def local_day_numbers(self, at_s: FloatArray) -> IntArray:
        """Local dates of epoch seconds `at_s` as days since 1970-01-01, same shape
        (read a day deadline's promised day as `local_day_numbers(deadline_s - 1.0)`)."""
        t, shape = _flat(at_s)
        inside = (t >= self._day_start[0]) & (t < self._day_start[-1])
        if not inside.all():
            self._raise_out_of_range(t[~inside], "ordered_at")
        return (self._wall_day_indices(t, self._clock.walls(t)) + self._day0).reshape(shape)

    # ----------------------------------------------------------------- clock start

    def clock_start(self, ordered_at: dt.datetime) -> dt.datetime:
        """When work on an order placed at `ordered_at` starts counting, UTC aware.

        `ordered_at` itself if it falls on an open local day, not before `opens` and
        strictly before the cut-off; `opens` that day if earlier; else `opens` on the
        next open day.
        """
        t = self._seconds(ordered_at, "ordered_at")
        start = self.clock_start_s(t)
        if start == t:
            return ordered_at.astimezone(_UTC)  # exact, no float round trip
        return dt.datetime.fromtimestamp(start, _UTC)

    def clock_starts(self, ordered_at_s: FloatArray) -> FloatArray:
        """`clock_start` for many orders: epoch seconds in, epoch seconds out, same shape."""
        t, shape = _flat(ordered_at_s)
        day = self._day_indices(t, "ordered_at")
        start = np.maximum(t, self._day_open[day])
        same_day = self._is_open[day] & (start < self._day_cut[day])
        later = self._day_open[self._next_intake[day + 1]]
        return np.where(same_day, start, later).reshape(shape)

    def clock_start_s(self, t: float) -> float:
        """`clock_starts` for one order time, epoch seconds in and out (no datetime round trip,
        which would round to microseconds)."""
        day = self._day_index(t, "ordered_at")
        start = max(t, self._day_open_t[day])
        if self._is_open_t[day] and start < self._day_cut_t[day]:
            return start
        return self._day_open_t[self._next_intake_t[day + 1]]

    # ----------------------------------------------------------------- deadlines

    def deadline(self, raw_completion: dt.datetime, unit: Unit) -> Deadline:
        """The promise for an order expected to complete at `raw_completion` (aware).

        `day`: the promised day is the local date of `raw_completion`, moved to the next
        open day; the deadline is the local midnight that ends it. `hour`/`minute`: the
        time rounded up to the next local unit boundary; if that falls on a closed day it
        moves to `opens` on the next open day, and before `opens` on an open day to `opens`.
        """
        t = self._seconds(raw_completion, "ordered_at")
        deadline_s, skipped, promised = self.deadline_s(t, unit)
        local_s = self._day_start_t[promised] if promised >= 0 else deadline_s
        return Deadline(
            deadline_at=dt.datetime.fromtimestamp(deadline_s, _UTC),
            promise_local=dt.datetime.fromtimestamp(local_s, self.zone),
            closed_days_skipped=skipped,
        )

    def deadline_s(self, raw_completion_s: float, unit: Unit) -> tuple[float, int, int]:
        """`deadline` for one raw completion in epoch seconds: (deadline epoch seconds, closed
        days skipped, the promised day's `day_index`, -1 unless `unit` is day)."""
        unit_s = _unit_seconds(unit)
        day = self._day_index(raw_completion_s, "ordered_at")
        if unit_s == SECONDS_PER_DAY:
            promised = self._next_open_t[day]
            return self._day_start_t[promised + 1], promised - day, promised
        deadline_s, skipped = self._round_up_open(raw_completion_s, unit_s)
        return deadline_s, skipped, -1

    def deadlines(self, raw_completion_s: FloatArray, unit: Unit) -> tuple[FloatArray, IntArray]:
        """`deadline` for many raw completions (epoch seconds).

        Returns (deadline epoch seconds, closed days skipped), both the input's shape.
        """
        unit_s = _unit_seconds(unit)
        t, shape = _flat(raw_completion_s)
        day = self._day_indices(t, "ordered_at")
        if unit_s == SECONDS_PER_DAY:
            promised = self._next_open[day]
            return (
                self._day_start[promised + 1].reshape(shape),
                (promised - day).reshape(shape),
            )
        boundary, seg = self._clock.ceil_boundaries(t, float(unit_s))
        bday = self._wall_day_indices(boundary, boundary + self._clock.offsets[seg])
        is_open = self._is_open[bday]
        open_at = self._day_open[bday]
        promised = self._next_open[bday]
        deadline_s = np.where(is_open, np.maximum(boundary, open_at), self._day_open[promised])
        return deadline_s.reshape(shape), (promised - bday).reshape(shape)

    def _round_up_open(self, t: float, unit_s: int) -> tuple[float, int]:
        """Scalar hour/minute deadline: (epoch seconds, closed days skipped)."""
        boundary, seg = self._clock.ceil_boundary(t, float(unit_s))
        bday = self._wall_day_index(boundary, boundary + self._clock.offsets_t[seg])
        if self._is_open_t[bday]:
            return max(boundary, self._day_open_t[bday]), 0
        promised = self._next_open_t[bday]
        return self._day_open_t[promised], promised - bday

    # ----------------------------------------------------------------- inversion

    def earliest_raw_meeting(self, fulfilled_s: FloatArray, unit: Unit) -> FloatArray:
        """The earliest raw completion whose promise is met by a fulfilment at `fulfilled_s`.

        Epoch seconds in and out, same shape. For every float t:
        `deadlines(t) >= fulfilled  <=>  t >= earliest_raw_meeting(fulfilled)`, for every
        unit (for `hour`/`minute` the answer is the float just after a local unit boundary,
        since a raw time exactly on the boundary rounds to it).
        """
        unit_s = _unit_seconds(unit)
        f, shape = _flat(fulfilled_s)
        day = self._day_indices(f, "fulfilled_at")
        if unit_s == SECONDS_PER_DAY:
            # Met iff the promised day P satisfies day_start[P + 1] >= f, i.e. P + 1 >= j
            # with j the first day starting at or after f; P >= j - 1 iff the raw day is
            # after the last open day before j - 1.
            first = np.searchsorted(self._day_start, f, side="left")
            return self._day_start[self._prev_open[first - 2] + 1].reshape(shape)
        # Promises are projections onto the open intervals [opens, end of day): met iff the
        # rounded time is at or after `limit` (f itself inside an open interval, else the
        # end of the last open day before f), iff raw > the last unit boundary before it.
        inside = self._is_open[day] & (self._day_open[day] < f)
        limit = np.where(inside, f, self._day_start[self._prev_open[day - 1] + 1])
        below = self._clock.floor_boundaries_below(limit, float(unit_s))
        return np.nextafter(below, np.inf).reshape(shape)

    # ----------------------------------------------------------------- model features

    def local_parts(self, at_s: FloatArray) -> LocalParts:
        """Local time features of epoch seconds `at_s`: see `LocalParts`."""
        t, shape = _flat(at_s)
        self._check_range(t, "ordered_at")
        wall = self._clock.walls(t)
        day = self._wall_day_indices(t, wall)
        return LocalParts(
            weekday=((day + self._day0 + 3) % 7).astype(np.float64).reshape(shape),
            hour=((wall - (day + self._day0) * float(SECONDS_PER_DAY)) / 3_600.0).reshape(shape),
            month=self._month[day].reshape(shape),
            day_of_year=self._doy[day].reshape(shape),
            days_to_closed=self._days_to_closed[day].reshape(shape),
        )

    def local_parts_one(self, at: dt.datetime) -> tuple[float, float, float, float, float]:
        """`local_parts` for one aware time: (weekday, hour, month, day_of_year, days_to_closed)."""
        t = self._seconds(at, "ordered_at")
        day = self._day_index(t, "ordered_at")
        wall = self._clock.wall(t)
        return (
            float((day + self._day0 + 3) % 7),
            (wall - (day + self._day0) * float(SECONDS_PER_DAY)) / 3_600.0,
            self._day_month_t[day],
            self._day_doy_t[day],
            self._days_to_closed_t[day],
        )

    # ----------------------------------------------------------------- local days

    def _seconds(self, at: dt.datetime, field: str) -> float:
        if not isinstance(at, dt.datetime):
            raise InputError(f"{field} must be a datetime, got {type(at).__name__}", field=field)
        if at.tzinfo is None or at.utcoffset() is None:
            raise InputError(f"{field} {at.isoformat()} has no time zone", field=field)
        return at.timestamp()

    def _range_message(self, day: dt.date | str) -> str:
        return f"date {day} is outside the calendar's range {self.first_year}-{self.last_year}"

    def day_index(self, t: float, field: str = "ordered_at") -> int:
        """The table index of the local day holding epoch second `t` (consecutive days have
        consecutive indices); `InputError` naming `field` outside the calendar's years."""
        return self._day_index(t, field)

    def _day_index(self, t: float, field: str) -> int:
        """Table index of the local day holding epoch second `t`; InputError if out of range."""
        if not self._range_start <= t < self._range_end:
            self._raise_out_of_range(np.array([t]), field)
        return self._wall_day_index(t, self._clock.wall(t))

    def _wall_day_index(self, t: float, wall: float) -> int:
        day = math.floor(wall / SECONDS_PER_DAY) - self._day0
        # The clock can still read day `day` before it reads its midnight for the last
        # time (a fall-back across midnight); such instants belong to the day before.
        return day - 1 if t < self._day_start_t[day] else day

    def _day_indices(self, t: FloatArray, field: str) -> IntArray:
        self._check_range(t, field)
        return self._wall_day_indices(t, self._clock.walls(t))

    def _wall_day_indices(self, t: FloatArray, wall: FloatArray) -> IntArray:
        day = np.floor(wall / SECONDS_PER_DAY).astype(np.int64) - self._day0
        return day - (t < self._day_start[day])

    def _check_range(self, t: FloatArray, field: str) -> None:
        inside = (t >= self._range_start) & (t < self._range_end)  # False for NaN
        if not inside.all():
            self._raise_out_of_range(t[~inside], field)

    def _raise_out_of_range(self, bad: FloatArray, field: str) -> None:
        t = float(bad[0])
        if not math.isfinite(t):
            raise InputError(f"{field} must be a finite time, got {t}", field=field)
        try:
            day: dt.date | str = dt.datetime.fromtimestamp(t, self.zone).date()
        except (OverflowError, OSError, ValueError):
            day = f"{t:.6g} s after 1970-01-01"
        raise InputError(self._range_message(day), field=field)


def _day_range(first_year: int, last_year: int) -> tuple[int, int, int]:
    """(day0, first_valid, last_valid) of the day table for the years (see `CalendarTables`)."""
    first_day = dt.date(first_year, 1, 1).toordinal() - _EPOCH_ORDINAL
    last_day = dt.date(last_year, 12, 31).toordinal() - _EPOCH_ORDINAL
    day0 = first_day - _MARGIN_DAYS
    return day0, first_day - day0, last_day - day0


def _build_tables(
    spec: CalendarSpec, zone: ZoneInfo, first_year: int, last_year: int
) -> CalendarTables:
    """The day table and the zone's offsets for the years, computed from the spec."""
    # Day table: index i is local day `day0 + i` (days since 1970-01-01).
    day0, first_valid, last_valid = _day_range(first_year, last_year)
    n_days = last_valid + _MARGIN_DAYS + 1
    days = np.arange(day0, day0 + n_days, dtype=np.int64)

    # UTC-offset segments: offsets[i] holds on [transitions[i-1], transitions[i]).
    clock = ZoneOffsets(zone, (day0 - 2) * SECONDS_PER_DAY, (day0 + n_days + 2) * SECONDS_PER_DAY)
    walls = days.astype(np.float64) * SECONDS_PER_DAY
    day_start = clock.last_at(np.append(walls, walls[-1] + SECONDS_PER_DAY))
    day_open = clock.last_at(walls + _seconds_of(spec.opens))
    if spec.cutoff is None:
        day_cut = np.full(n_days, np.inf)
    else:
        # A cut-off skipped by a clock change never falls later than the day's end.
        day_cut = np.minimum(clock.last_at(walls + _seconds_of(spec.cutoff)), day_start[1:])

    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    is_open = np.isin(weekday, np.asarray(spec.open_weekdays, dtype=np.int64))
    holiday = _holiday_days(spec, first_year - 1, last_year + 1) - day0
    is_open[holiday[(holiday >= 0) & (holiday < n_days)]] = False
    # A day whose opening time never shows on its clocks (a day skipped by a date-line
    # move, Pacific/Apia 2011-12-30) cannot hold a promise: treat it as closed.
    is_open &= day_open < day_start[1:]

    index = np.arange(n_days, dtype=np.int64)
    # n_days and -1 mark "no open day within the table"; checked just below.
    next_open = np.minimum.accumulate(np.where(is_open, index, n_days)[::-1])[::-1]
    prev_open = np.maximum.accumulate(np.where(is_open, index, -1))
    # A day whose whole order window falls in a clock change (opens and cut-off skipped
    # to the same instant) is open but takes no orders: they count from the next day.
    takes_orders = is_open & (day_open < day_cut)
    next_intake = np.minimum.accumulate(np.where(takes_orders, index, n_days)[::-1])[::-1]
    if next_intake[last_valid + 1] >= n_days or prev_open[first_valid - 2] < 0:
        raise SpecError(
            f"the calendar has no open day within {_MARGIN_DAYS} days of "
            f"{first_year}-{last_year}'s ends; check open_weekdays and holidays"
        )
    next_closed = np.minimum.accumulate(
        np.where(is_open, n_days + DAYS_TO_CLOSED_CAP, index)[::-1]
    )[::-1]
    days_to_closed = np.minimum(next_closed - index, DAYS_TO_CLOSED_CAP).astype(np.float64)

    civil = days.astype("datetime64[D]")
    years = civil.astype("datetime64[Y]")
    months = civil.astype("datetime64[M]") - years.astype("datetime64[M]")
    return CalendarTables(
        day0=day0,
        first_valid=first_valid,
        last_valid=last_valid,
        is_open=is_open,
        next_open=next_open,
        next_intake=next_intake,
        prev_open=prev_open,
        day_start=day_start,
        day_open=day_open,
        day_cut=day_cut,
        days_to_closed=days_to_closed,
        month=months.astype(np.float64) + 1.0,
        day_of_year=(civil - years.astype("datetime64[D]")).astype(np.float64) + 1.0,
        transitions=clock.transitions,
        offsets=clock.offsets,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise SpecError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/London'"
        ) from err


def _check_spec(spec: CalendarSpec) -> None:
    days = spec.open_weekdays
    if not days or any(not isinstance(d, int) or not 0 <= d <= 6 for d in days):
        raise SpecError(f"open_weekdays {days!r}: give one or more of 0 (Monday) .. 6 (Sunday)")
    for name, clock in (("cutoff", spec.cutoff), ("opens", spec.opens)):
        if clock is not None and clock.tzinfo is not None:
            raise SpecError(f"{name} {clock} must be a local clock time without a zone")
    if spec.cutoff is not None and spec.cutoff <= spec.opens:
        raise SpecError(f"cutoff {spec.cutoff} must be after opens {spec.opens}")
    if spec.holidays_subdivision is not None and spec.holidays_country is None:
        raise SpecError("holidays_subdivision is given without a holidays_country")


def _seconds_of(clock: dt.time) -> float:
    return clock.hour * 3_600.0 + clock.minute * 60.0 + clock.second + clock.microsecond / 1e6


def _unit_seconds(unit: str) -> int:
    try:
        return SECONDS_PER_UNIT[unit]
    except KeyError:
        raise InputError(
            f"unknown unit {unit!r}; use one of {', '.join(SECONDS_PER_UNIT)}", field="unit"
        ) from None


def _flat(values: FloatArray) -> tuple[FloatArray, tuple[int, ...]]:
    array = np.asarray(values, dtype=np.float64)
    return array.ravel(), array.shape


def _frozen(array: _A) -> _A:
    array.flags.writeable = False  # the calendar is shared across requests: no edits
    return array


def _holiday_days(spec: CalendarSpec, first_year: int, last_year: int) -> IntArray:
    """Public holidays (including substitute days) as days since 1970-01-01."""
    if spec.holidays_country is None:
        return np.empty(0, dtype=np.int64)
    try:
        table = holidays.country_holidays(
            spec.holidays_country,
            subdiv=spec.holidays_subdivision,
            years=range(first_year, last_year + 1),
        )
    except NotImplementedError as err:  # how `holidays` says "unknown country/subdivision"
        raise SpecError(f"holidays: {err}") from err
    return np.fromiter(
        (day.toordinal() - _EPOCH_ORDINAL for day in table), dtype=np.int64, count=len(table)
    )
