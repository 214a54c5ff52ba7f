"""What a store's calendar is built from (its spec) and what it builds (its tables).

`holiday_names` reads the public holidays of the spec's country (the `holidays` package,
substitute days included) and `build_tables` the spec with them: open weekdays less those
holidays, the zone's UTC-offset changes (`models.zone_offsets`), and
for every local day the instants it starts, the store opens and the cut-off falls, with the
model's calendar features. `models.calendar.BusinessCalendar` quotes from these tables only, so
a calendar stored as its tables (`models.serving_form`) quotes as it was trained, whatever the
`holidays` and tzdata versions where it is loaded. The holidays' names travel beside the tables
(the explanation says "on Christmas Day (bank holiday)"), never read on the quote path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import holidays
import numpy as np
from numpy.typing import NDArray

from models.errors import SpecError
from models.zone_offsets import ZoneOffsets

__all__ = [
    "DAYS_TO_CLOSED_CAP",
    "SECONDS_PER_DAY",
    "CalendarSpec",
    "CalendarTables",
    "build_tables",
    "day_range",
    "holiday_names",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SECONDS_PER_DAY = 86_400
DAYS_TO_CLOSED_CAP = 60  # keeps the model feature's range the same for every calendar
# Days of table kept before the first and after the last year: room for a promise moved
# past New Year, for the 60-day look-ahead of `days_to_closed`, and for the open day
# before a fulfilment early on 1 January (earliest_raw_meeting).
_MARGIN_DAYS = 70
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


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
    # How staff and customers read dates (`models.dates`), e.g. "pt_BR"; None: the locale of
    # `holidays_country` (`models.dates.default_locale`).
    locale: str | None = None


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


def day_range(first_year: int, last_year: int) -> tuple[int, int, int]:
    """(day0, first_valid, last_valid) of the day table for the years (see `CalendarTables`)."""
    first_day = dt.date(first_year, 1, 1).toordinal() - _EPOCH_ORDINAL
    last_day = dt.date(last_year, 12, 31).toordinal() - _EPOCH_ORDINAL
    day0 = first_day - _MARGIN_DAYS
    return day0, first_day - day0, last_day - day0


def build_tables(
    spec: CalendarSpec,
    zone: ZoneInfo,
    first_year: int,
    last_year: int,
    holidays_by_day: Mapping[int, str],
) -> CalendarTables:
    """The day table and the zone's offsets for the years, computed from the spec and its
    public holidays (`holiday_names` of the years around them: days since 1970-01-01)."""
    # Day table: index i is local day `day0 + i` (days since 1970-01-01).
    day0, first_valid, last_valid = day_range(first_year, last_year)
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
    holiday = np.fromiter(holidays_by_day, dtype=np.int64, count=len(holidays_by_day)) - day0
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


def _seconds_of(clock: dt.time) -> float:
    return clock.hour * 3_600.0 + clock.minute * 60.0 + clock.second + clock.microsecond / 1e6


def holiday_names(spec: CalendarSpec, first_year: int, last_year: int) -> dict[int, str]:
    """Public holidays of the spec's country (including substitute days) in the years, as
    {days since 1970-01-01: name}, the names in English where the `holidays` package has it
    ("Christmas Day", "Boxing Day (observed)"); empty without a country."""
    if spec.holidays_country is None:
        return {}
    try:
        kind = holidays.country_holidays(spec.holidays_country).__class__
        language = "en_US" if "en_US" in kind.supported_languages else None
        language = "en_GB" if "en_GB" in kind.supported_languages else language
        table = holidays.country_holidays(
            spec.holidays_country,
            subdiv=spec.holidays_subdivision,
            years=range(first_year, last_year + 1),
            language=language,
        )
    except NotImplementedError as err:  # how `holidays` says "unknown country/subdivision"
        raise SpecError(f"holidays: {err}") from err
    return {day.toordinal() - _EPOCH_ORDINAL: str(name) for day, name in sorted(table.items())}
