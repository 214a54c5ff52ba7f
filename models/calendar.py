"""The store's business calendar: open days, cut-off, time zone, and promise deadlines.

Everything the quote path needs is precomputed when a `BusinessCalendar` is built, and every
vector method runs one compiled loop over it (`models.calendar_loops`, built by `models.kernels`),
so one time costs about a microsecond and a batch one pass:

- a day table over the year range plus a margin, indexed by local day: whether the day is
  open, the next open day at or after it, the last open day at or before it, the UTC
  instants at which the day starts, the store opens and the cut-off falls, and the
  model's calendar features (month, day of year, days to the next closed day);
- the zone's UTC-offset transitions over the same range (`models.zone_offsets`), so UTC ->
  local is an array pass with no per-element zoneinfo call.

Vector APIs take and return float64 seconds since the Unix epoch (UTC); the datetime
conveniences (`clock_start`, `deadline`) are those APIs on one aware time.

Local wall times that do not exist (spring forward) or occur twice (fall back) are mapped
to instants one way everywhere (`ZoneOffsets.last_at`): a wall time W is the first instant after
which the clock never again reads earlier than W. So a skipped time is the transition instant, a
repeated one is its last occurrence, and a local day starts when the clock reads its midnight
for the last time. This keeps the local date monotone in time even where the clocks fall back
across midnight (America/St_Johns until 2011: 00:01 back to 23:01), which the promise
invariants (never earlier than the raw completion, monotone) need.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from models import calendar_loops as loops
from models import kernels
from models.calendar_tables import (
    DAYS_TO_CLOSED_CAP,
    SECONDS_PER_DAY,
    CalendarSpec,
    CalendarTables,
    build_tables,
    day_range,
    holiday_names,
)
from models.dates import DateStyle, default_locale
from models.errors import InputError, SpecError
from models.units import SECONDS_PER_UNIT, Unit
from models.zone_offsets import ZoneOffsets

__all__ = [
    "DAYS_TO_CLOSED_CAP",
    "TIME_PARTS",
    "BusinessCalendar",
    "CalendarSpec",
    "CalendarTables",
    "Deadline",
    "LocalParts",
]

FloatArray = NDArray[np.float64]
_A = TypeVar("_A", bound=NDArray[Any])
IntArray = NDArray[np.int64]

# The local time features of an instant (`LocalParts`), in the order the model reads them.
TIME_PARTS = ("weekday", "hour", "month", "day_of_year", "days_to_closed")
_UTC = dt.UTC


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
    """Local time features: `values` has the input's shape plus one last axis of `TIME_PARTS`,
    and each feature reads as an array of the input's shape (float64).

    `weekday` 0 = Monday; `hour` local wall-clock hours since midnight (14.5 = 14:30);
    `month` 1-12; `day_of_year` 1-366; `days_to_closed` days until the next closed day
    (0 if the day itself is closed), capped at 60.
    """

    values: FloatArray

    @property
    def weekday(self) -> FloatArray:
        return self.values[..., 0]

    @property
    def hour(self) -> FloatArray:
        return self.values[..., 1]

    @property
    def month(self) -> FloatArray:
        return self.values[..., 2]

    @property
    def day_of_year(self) -> FloatArray:
        return self.values[..., 3]

    @property
    def days_to_closed(self) -> FloatArray:
        return self.values[..., 4]


class BusinessCalendar:
    """Built once (per bundle load) from a CalendarSpec and a year range; immutable afterwards.

    Times whose local date falls outside 1 January `first_year` .. 31 December `last_year`
    raise `InputError`. A bad spec (unknown zone or holiday country, no open weekday, a
    cut-off not after `opens`) raises `SpecError`.
    """

    __slots__ = (
        "_clock",
        "_day0",
        "_days",
        "_holiday_names",
        "_range_end",
        "_range_start",
        "_table_end",
        "_table_start",
        "_tables",
        "_zone",
        "dates",
        "first_year",
        "last_year",
        "spec",
        "zone",
    )

    spec: CalendarSpec
    zone: ZoneInfo
    dates: DateStyle  # how the shop writes days and times for people (`models.dates`)
    _holiday_names: dict[int, str]  # days since 1970-01-01 -> the public holiday's name
    first_year: int
    last_year: int
    _tables: CalendarTables
    _clock: ZoneOffsets
    _day0: int
    # The day table and the zone's segments packed for the compiled loops
    # (`models.calendar_loops`).
    _days: FloatArray
    _zone: FloatArray
    _range_start: float  # UTC instants where the valid years start and end
    _range_end: float
    _table_start: float  # ... and where the day table does (margin included)
    _table_end: float

    def __init__(self, spec: CalendarSpec, first_year: int = 2000, last_year: int = 2060) -> None:
        self._set_spec(spec, first_year, last_year)
        self._holiday_names = holiday_names(spec, first_year - 1, last_year + 1)
        self._install(build_tables(spec, self.zone, first_year, last_year, self._holiday_names))

    @classmethod
    def from_tables(
        cls,
        spec: CalendarSpec,
        first_year: int,
        last_year: int,
        tables: CalendarTables,
        holidays_by_day: Mapping[int, str] | None = None,
    ) -> BusinessCalendar:
        """The calendar whose tables are `tables` (as `tables` gave them), without recomputing
        them: a bundle's calendar as it was trained, with its holidays' names (none for bundles
        made before they were kept). `SpecError` for a bad spec or years, or tables that do
        not cover the years."""
        calendar = cls.__new__(cls)
        calendar._set_spec(spec, first_year, last_year)
        calendar._holiday_names = dict(holidays_by_day or {})
        expected = day_range(first_year, last_year)
        if (tables.day0, tables.first_valid, tables.last_valid) != expected:
            raise SpecError(
                f"the calendar's tables do not cover {first_year}-{last_year} as they should"
            )
        calendar._install(tables)
        return calendar

    @property
    def tables(self) -> CalendarTables:
        """Everything this calendar computed from its spec (see `CalendarTables`)."""
        return self._tables

    @property
    def holiday_names(self) -> Mapping[int, str]:
        """The public holidays it closes for, {days since 1970-01-01: name} (`holiday_names`)."""
        return self._holiday_names

    def _set_spec(self, spec: CalendarSpec, first_year: int, last_year: int) -> None:
        self.spec = spec
        self.zone = _zone(spec.timezone)
        _check_spec(spec)
        self.dates = DateStyle.of(spec.locale or default_locale(spec.holidays_country), self.zone)
        if not dt.MINYEAR < first_year <= last_year < dt.MAXYEAR:
            raise SpecError(
                f"calendar years {first_year}-{last_year}: need "
                f"{dt.MINYEAR + 1} <= first_year <= last_year <= {dt.MAXYEAR - 1}"
            )
        self.first_year = first_year
        self.last_year = last_year

    def _install(self, tables: CalendarTables) -> None:
        clock = ZoneOffsets.from_arrays(tables.transitions, tables.offsets)
        for field in dataclasses.fields(tables):
            value = getattr(tables, field.name)
            if isinstance(value, np.ndarray):
                _frozen(value)  # the calendar is shared across requests: no edits
        self._tables = dataclasses.replace(
            tables, transitions=clock.transitions, offsets=clock.offsets
        )
        self._clock = clock
        self._day0 = tables.day0
        self._days = _frozen(_day_table(self._tables))
        self._zone = _frozen(np.column_stack((np.append(clock.transitions, np.inf), clock.offsets)))
        day_start = self._tables.day_start
        self._range_start = float(day_start[tables.first_valid])
        self._range_end = float(day_start[tables.last_valid + 1])
        self._table_start = float(day_start[0])
        self._table_end = float(day_start[-1])

    def __repr__(self) -> str:
        years = f"first_year={self.first_year}, last_year={self.last_year}"
        return f"BusinessCalendar({self.spec!r}, {years})"

    # ----------------------------------------------------------------- days

    def local_day_numbers(self, at_s: FloatArray) -> IntArray:
        """Local dates of epoch seconds `at_s` as days since 1970-01-01, same shape
        (read a day deadline's promised day as `local_day_numbers(deadline_s - 1.0)`)."""
        t, shape = _flat(at_s)
        out = np.empty(t.size, dtype=np.int64)
        bad = kernels.day_numbers(
            t, self._days, self._zone, self._day0, self._table_start, self._table_end, out
        )
        self._check(bad, t, "ordered_at")
        return out.reshape(shape)

    # ----------------------------------------------------------------- clock start

    def clock_start(self, ordered_at: dt.datetime) -> dt.datetime:
        """When work on an order placed at `ordered_at` starts counting, UTC aware.

        `ordered_at` itself if it falls on an open local day, not before `opens` and
        strictly before the cut-off; `opens` that day if earlier; else `opens` on the
        next open day (`clock_starts` for one aware time).
        """
        t = self._seconds(ordered_at, "ordered_at")
        start = float(self.clock_starts(np.array([t]))[0])
        if start == t:
            return ordered_at.astimezone(_UTC)  # exact, no float round trip
        return dt.datetime.fromtimestamp(start, _UTC)

    def clock_starts(self, ordered_at_s: FloatArray) -> FloatArray:
        """When the clock starts for orders placed at `ordered_at_s` (see `clock_start`):
        epoch seconds in, epoch seconds out, same shape."""
        t, shape = _flat(ordered_at_s)
        out = np.empty(t.size)
        bad = kernels.clock_starts(
            t, self._days, self._zone, self._day0, self._range_start, self._range_end, out
        )
        self._check(bad, t, "ordered_at")
        return out.reshape(shape)

    # ----------------------------------------------------------------- deadlines

    def deadline(self, raw_completion: dt.datetime, unit: Unit) -> Deadline:
        """The promise for an order expected to complete at `raw_completion` (aware):
        `deadlines` for one aware time.

        `day`: the promised day is the local date of `raw_completion`, moved to the next
        open day; the deadline is the local midnight that ends it. `hour`/`minute`: the
        time rounded up to the next local unit boundary; if that falls on a closed day it
        moves to `opens` on the next open day, and before `opens` on an open day to `opens`.
        """
        t = self._seconds(raw_completion, "ordered_at")
        deadline, skipped = self.deadlines(np.array([t]), unit)
        deadline_s = float(deadline[0])
        local_s = deadline_s
        if unit == "day":
            [promised] = self.local_day_numbers(deadline - 1.0)
            local_s = float(self._tables.day_start[promised - self._day0])
        return Deadline(
            deadline_at=dt.datetime.fromtimestamp(deadline_s, _UTC),
            promise_local=dt.datetime.fromtimestamp(local_s, self.zone),
            closed_days_skipped=int(skipped[0]),
        )

    def deadlines(self, raw_completion_s: FloatArray, unit: Unit) -> tuple[FloatArray, IntArray]:
        """`deadline` for many raw completions (epoch seconds).

        Returns (deadline epoch seconds, closed days skipped), both the input's shape.
        """
        unit_s = float(_unit_seconds(unit))
        t, shape = _flat(raw_completion_s)
        out = np.empty(t.size)
        skipped = np.empty(t.size, dtype=np.int64)
        bad = kernels.deadlines(
            t,
            self._days,
            self._zone,
            self._day0,
            self._range_start,
            self._range_end,
            unit_s,
            out,
            skipped,
        )
        self._check(bad, t, "ordered_at")
        return out.reshape(shape), skipped.reshape(shape)

    def promises(
        self,
        ordered_at_s: FloatArray,
        clock_start_s: FloatArray,
        expected_hours: FloatArray,
        buffer_hours: FloatArray,
        unit: Unit,
        limit_units: float | None,
    ) -> tuple[FloatArray, IntArray, FloatArray, NDArray[np.bool_]]:
        """The back half of quotes, arrays of shape (n,): each order's raw completion
        `clock_start_s + (expected_hours + buffer_hours) * 3600` to (its deadline as `deadlines`
        gives it, closed days skipped, the promise length from the order in units, whether
        that length passes `limit_units`). The length is the local days from the order's day
        to the promised day for `day`, else hours or minutes from the order to the deadline."""
        unit_s = float(_unit_seconds(unit))
        n = ordered_at_s.size
        ordered_at_s = _vector(ordered_at_s, n)
        clock_start_s = _vector(clock_start_s, n)
        expected_hours = _vector(expected_hours, n)
        buffer_hours = _vector(buffer_hours, n)
        deadline = np.empty(n)
        units = np.empty(n)
        skipped = np.empty(n, dtype=np.int64)
        exceeds = np.empty(n, dtype=np.bool_)
        bad = kernels.promises(
            ordered_at_s,
            clock_start_s,
            expected_hours,
            buffer_hours,
            self._days,
            self._zone,
            self._day0,
            self._range_start,
            self._range_end,
            unit_s,
            math.inf if limit_units is None else limit_units,
            deadline,
            units,
            skipped,
            exceeds,
        )
        if bad >= n:
            self._check(bad - n, ordered_at_s, "ordered_at")
        elif bad >= 0:
            raw = clock_start_s[bad] + (expected_hours[bad] + buffer_hours[bad]) * 3600.0
            self._raise_out_of_range(np.array([raw]), "ordered_at")
        return deadline, skipped, units, exceeds

    def promise_lengths(
        self, ordered_at_s: FloatArray, deadline_s: FloatArray, unit: Unit
    ) -> FloatArray:
        """The length from the order of promises already given (deadlines, epoch seconds) in
        units, shape (n,), counted as `promises` counts a new quote's: local days from the
        order's day to the promised day for `day`, else hours or minutes to the deadline."""
        ordered_at_s, _ = _flat(ordered_at_s)
        n = ordered_at_s.size
        deadline_s = _vector(deadline_s, n)  # the kernel reads n of each
        out = np.empty(n)
        bad = kernels.lengths(
            ordered_at_s,
            deadline_s,
            self._days,
            self._zone,
            self._day0,
            self._table_start,
            self._table_end,
            float(_unit_seconds(unit)),
            out,
        )
        if bad >= n:
            self._check(bad - n, deadline_s - 1.0, "ordered_at")
        else:
            self._check(bad, ordered_at_s, "ordered_at")
        return out

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
        tables = self._tables
        day = np.empty(f.size, dtype=np.int64)
        bad = kernels.day_numbers(
            f, self._days, self._zone, self._day0, self._range_start, self._range_end, day
        )
        self._check(bad, f, "fulfilled_at")
        day -= self._day0
        if unit_s == SECONDS_PER_DAY:
            # Met iff the promised day P satisfies day_start[P + 1] >= f, i.e. P + 1 >= j
            # with j the first day starting at or after f; P >= j - 1 iff the raw day is
            # after the last open day before j - 1.
            first = np.searchsorted(tables.day_start, f, side="left")
            return tables.day_start[tables.prev_open[first - 2] + 1].reshape(shape)
        # Promises are projections onto the open intervals [opens, end of day): met iff the
        # rounded time is at or after `limit` (f itself inside an open interval, else the
        # end of the last open day before f), iff raw > the last unit boundary before it.
        inside = tables.is_open[day] & (tables.day_open[day] < f)
        limit = np.where(inside, f, tables.day_start[tables.prev_open[day - 1] + 1])
        below = self._clock.floor_boundaries_below(limit, float(unit_s))
        return np.nextafter(below, np.inf).reshape(shape)

    # ----------------------------------------------------------------- model features

    def local_parts(self, at_s: FloatArray) -> LocalParts:
        """Local time features of epoch seconds `at_s`: see `LocalParts`."""
        t, shape = _flat(at_s)
        out = np.empty((t.size, len(TIME_PARTS)))
        self.local_parts_into(t, out, 0)
        return LocalParts(out.reshape((*shape, len(TIME_PARTS))))

    def local_parts_into(self, at_s: FloatArray, out: FloatArray, column: int) -> None:
        """`local_parts` of the times `at_s` (n,) written into out[:, column:column + 5] (a
        float64 matrix of n rows): how the model matrix gets its time columns."""
        at_s = _vector(at_s, at_s.size)
        if not (
            out.dtype == np.float64
            and out.flags.c_contiguous
            and out.flags.writeable
            and out.ndim == 2
            and out.shape[0] == at_s.size
            and 0 <= column <= out.shape[1] - len(TIME_PARTS)
        ):
            raise ValueError(f"no room for the time parts in column {column} of {out.shape}")
        bad = kernels.local_parts_into(
            at_s,
            self._days,
            self._zone,
            self._day0,
            self._range_start,
            self._range_end,
            out,
            column,
        )
        self._check(bad, at_s, "ordered_at")

    # ----------------------------------------------------------------- range errors

    def _seconds(self, at: dt.datetime, field: str) -> float:
        if not isinstance(at, dt.datetime):
            raise InputError(f"{field} must be a datetime, got {type(at).__name__}", field=field)
        if at.tzinfo is None or at.utcoffset() is None:
            raise InputError(f"{field} {at.isoformat()} has no time zone", field=field)
        return at.timestamp()

    def _check(self, bad: int, t: FloatArray, field: str) -> None:
        """Raise for the time a loop found outside its range (`bad` its index, -1: none)."""
        if bad >= 0:
            self._raise_out_of_range(t[bad : bad + 1], field)

    def _range_message(self, day: dt.date | str) -> str:
        return f"date {day} is outside the calendar's range {self.first_year}-{self.last_year}"

    def _raise_out_of_range(self, bad: FloatArray, field: str) -> None:
        t = float(bad[0])
        if not math.isfinite(t):
            raise InputError(f"{field} must be a finite time, got {t}", field=field)
        try:
            day: dt.date | str = dt.datetime.fromtimestamp(t, self.zone).date()
        except (OverflowError, OSError, ValueError):
            day = f"{t:.6g} s after 1970-01-01"
        raise InputError(self._range_message(day), field=field)


def _day_table(tables: CalendarTables) -> FloatArray:
    """The day table packed for `models.calendar_loops` (see its docstring)."""
    n_days = tables.is_open.size
    days = np.full((n_days + 1, loops.DAY_COLUMNS), np.nan)
    days[:, loops.START] = tables.day_start
    for column, values in (
        (loops.OPEN, tables.day_open),
        (loops.CUT, tables.day_cut),
        (loops.IS_OPEN, tables.is_open),
        (loops.NEXT_OPEN, tables.next_open),
        (loops.NEXT_INTAKE, tables.next_intake),
        (loops.PREV_OPEN, tables.prev_open),
        (loops.TO_CLOSED, tables.days_to_closed),
        (loops.MONTH, tables.month),
        (loops.DOY, tables.day_of_year),
    ):
        days[:n_days, column] = values
    days[n_days, loops.IS_OPEN] = 0.0
    return days


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


def _unit_seconds(unit: str) -> int:
    try:
        return SECONDS_PER_UNIT[unit]
    except KeyError:
        raise InputError(
            f"unknown unit {unit!r}; use one of {', '.join(SECONDS_PER_UNIT)}", field="unit"
        ) from None


def _vector(values: FloatArray, n: int) -> FloatArray:
    """`values` as the kernels read them: n contiguous float64 (a copy only if needed)."""
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"expected {n} values, got an array of shape {array.shape}")
    return array


def _flat(values: FloatArray) -> tuple[FloatArray, tuple[int, ...]]:
    array = np.asarray(values, dtype=np.float64)
    return array.ravel(), array.shape


def _frozen(array: _A) -> _A:
    array.flags.writeable = False  # the calendar is shared across requests: no edits
    return array
