"""The business calendar: hand-checked promises, then invariants for any calendar.

Hand-checked cases use a GB shop (Europe/London, England's bank holidays, open Monday to
Saturday, cut-off 16:00). The properties draw calendars from a pool of seeded random
specs (zone, open weekdays, holidays, cut-off, opening time) plus edge cases, and times
anywhere, on round minutes or around clock changes. They check what the quoting layer
relies on: a promise is never earlier than the raw completion, lands on an open day, is
monotone in the raw completion, `earliest_raw_meeting` inverts it exactly, and the
scalar and vectorised paths give the same numbers. Open days and local dates are checked with
`tests.models.references`.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import BusinessCalendar, CalendarSpec, Deadline
from models.errors import InputError, SpecError
from models.units import SECONDS_PER_UNIT, Unit
from tests.models.references import is_open_day, local_date

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
MON_TO_SAT = (0, 1, 2, 3, 4, 5)
ZONES = (
    "UTC",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/St_Johns",
    "Australia/Lord_Howe",  # half-hour clock changes
)
COUNTRIES = (None, "GB", "US", "DE", "FR")
UNITS: tuple[Unit, ...] = ("day", "hour", "minute")
# Property tests use a shorter range than production: construction is cheaper, and
# 2005-2011 still has St John's old 00:01 clock changes (a fall-back across midnight).
FIRST_YEAR, LAST_YEAR = 2005, 2030
# Leave a month at the start: earliest_raw_meeting looks back to the last open day.
LOW_US = int(dt.datetime(FIRST_YEAR, 2, 1, tzinfo=UTC).timestamp()) * 1_000_000
HIGH_US = int(dt.datetime(LAST_YEAR, 12, 30, tzinfo=UTC).timestamp()) * 1_000_000
PROPERTY = settings(max_examples=200, deadline=None, database=None)


@functools.cache
def gb_calendar() -> BusinessCalendar:
    spec = CalendarSpec(
        timezone="Europe/London",
        open_weekdays=MON_TO_SAT,
        holidays_country="GB",
        holidays_subdivision="ENG",
        cutoff=dt.time(16, 0),
    )
    return BusinessCalendar(spec)


@functools.cache
def calendar(
    zone: str = "UTC",
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6),
    country: str | None = None,
    cutoff: dt.time | None = None,
    opens: dt.time = dt.time(0, 0),
    years: tuple[int, int] = (FIRST_YEAR, LAST_YEAR),
) -> BusinessCalendar:
    """One calendar per distinct spec: holiday and offset tables are built once."""
    spec = CalendarSpec(zone, weekdays, country, None, cutoff, opens)
    return BusinessCalendar(spec, *years)


def london(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=LONDON)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=UTC)


def of_us(us: int) -> dt.datetime:
    """Microseconds since the epoch as an exact aware datetime (no float rounding)."""
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us)


def seconds(*times: dt.datetime) -> np.ndarray:
    return np.array([t.timestamp() for t in times])


# ----------------------------------------------------------------- strategies


OPENS = (dt.time(0, 0), dt.time(1, 30), dt.time(8, 0), dt.time(9, 30))  # 01:30: London's gap/fold
EDGE_SPECS = (
    CalendarSpec("Europe/London", MON_TO_SAT, "GB", "ENG", dt.time(16, 0)),
    CalendarSpec(
        "Europe/London", (0, 1, 2, 3, 4, 5, 6), None, None, dt.time(1, 45), dt.time(1, 30)
    ),
    CalendarSpec("America/St_Johns", (6,), "US", None, dt.time(0, 30)),
    CalendarSpec("Australia/Sydney", (0, 1, 2, 3, 4), "FR", None, dt.time(17, 30), dt.time(9, 30)),
)
POOL_SIZE = 150


@functools.cache
def pooled_calendar(number: int) -> BusinessCalendar:
    """Calendar `number` of a fixed pool: a few edge cases, then seeded random specs.

    Building a calendar takes ~20 ms, so the properties draw from a pool built once per
    session rather than building one per example; the pool spans every zone, holiday
    country, open-weekday pattern size, opening time and cut-off kind.
    """
    if number < len(EDGE_SPECS):
        return BusinessCalendar(EDGE_SPECS[number], FIRST_YEAR, LAST_YEAR)
    rng = random.Random(number)
    weekdays = tuple(sorted(rng.sample(range(7), rng.randint(1, 7))))
    opens = rng.choice(OPENS)
    cutoff = rng.choice([None, dt.time(rng.randint(10, 23), rng.choice([0, 15, 30, 45]))])
    if opens == dt.time(0, 0) and rng.random() < 0.2:
        cutoff = dt.time(0, 30)  # just after midnight, near St John's old 00:01 changes
    return calendar(rng.choice(ZONES), weekdays, rng.choice(COUNTRIES), cutoff, opens)


def calendars() -> st.SearchStrategy[BusinessCalendar]:
    return st.integers(0, POOL_SIZE - 1).map(pooled_calendar)


@functools.cache
def clock_changes(zone: str) -> tuple[int, ...]:
    """Microsecond instants of the zone's offset changes within the property range."""
    tz = ZoneInfo(zone)

    def offset(second: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(second, tz).utcoffset()

    changes = []
    for day in range(LOW_US // 86_400_000_000, HIGH_US // 86_400_000_000):
        before, after = day * 86_400, (day + 1) * 86_400
        if offset(before) != offset(after):
            old = offset(before)
            while after - before > 1:
                middle = (before + after) // 2
                before, after = (middle, after) if offset(middle) == old else (before, middle)
            changes.append(after * 1_000_000)
    return tuple(changes)


@st.composite
def instants_us(draw: st.DrawFn, cal: BusinessCalendar) -> int:
    """Microseconds: anywhere, on round local times, or near a clock change."""
    changes = clock_changes(cal.spec.timezone)
    anywhere = st.integers(LOW_US, HIGH_US)
    round_minute = st.integers(LOW_US // 60_000_000, HIGH_US // 60_000_000).map(
        lambda m: m * 60_000_000
    )
    strategies = [anywhere, round_minute]
    if changes:
        near_change = st.tuples(
            st.sampled_from(changes), st.integers(-2 * 86_400, 2 * 86_400), st.integers(0, 2)
        ).map(lambda c: c[0] + c[1] * 1_000_000 - c[2])  # whole seconds, or just before
        strategies.append(near_change)
    return draw(st.one_of(strategies))


@st.composite
def instant_arrays(draw: st.DrawFn, cal: BusinessCalendar) -> np.ndarray:
    values = draw(st.lists(instants_us(cal), min_size=1, max_size=40))
    return np.array(values, dtype=np.int64) / 1e6


# ----------------------------------------------------------------- hand-checked: clock start


def test_order_on_saturday_after_cutoff_starts_monday() -> None:
    start = gb_calendar().clock_start(london(2024, 6, 8, 17, 0))
    assert start == london(2024, 6, 10, 0, 0)
    assert start.tzinfo is UTC


def test_order_before_cutoff_starts_at_once_and_at_cutoff_next_day() -> None:
    cal = gb_calendar()
    assert cal.clock_start(london(2024, 6, 8, 15, 59, 59)) == london(2024, 6, 8, 15, 59, 59)
    assert cal.clock_start(london(2024, 6, 7, 16, 0)) == london(2024, 6, 8, 0, 0)


def test_order_on_sunday_starts_monday() -> None:
    assert gb_calendar().clock_start(london(2024, 6, 9, 10, 0)) == london(2024, 6, 10, 0, 0)


def test_order_on_christmas_eve_after_cutoff_skips_christmas_and_boxing_day() -> None:
    assert gb_calendar().clock_start(london(2024, 12, 24, 17, 0)) == london(2024, 12, 27, 0, 0)


def test_order_before_opening_starts_at_opening() -> None:
    cal = calendar("Europe/London", MON_TO_SAT, "GB", dt.time(16), dt.time(9, 30))
    assert cal.clock_start(london(2024, 6, 10, 7, 0)) == london(2024, 6, 10, 9, 30)
    assert cal.clock_start(london(2024, 6, 8, 16, 30)) == london(2024, 6, 10, 9, 30)


# ----------------------------------------------------------------- hand-checked: deadlines


def test_day_promise_on_sunday_moves_to_monday() -> None:
    promise = gb_calendar().deadline(london(2024, 6, 9, 11, 0), "day")
    assert promise == Deadline(
        deadline_at=london(2024, 6, 11, 0, 0).astimezone(UTC),
        promise_local=london(2024, 6, 10, 0, 0),
        closed_days_skipped=1,
    )


def test_day_promise_on_open_day_ends_at_its_midnight() -> None:
    promise = gb_calendar().deadline(london(2024, 6, 8, 23, 59), "day")
    assert promise.deadline_at == london(2024, 6, 9, 0, 0)
    assert promise.promise_local.date() == dt.date(2024, 6, 8)
    assert promise.closed_days_skipped == 0


def test_hour_promise_on_sunday_moves_to_monday_opening() -> None:
    promise = gb_calendar().deadline(london(2024, 6, 9, 14, 20), "hour")
    assert promise.deadline_at == london(2024, 6, 10, 0, 0)
    assert promise.promise_local == london(2024, 6, 10, 0, 0)
    assert promise.closed_days_skipped == 1


def test_hour_promise_before_opening_moves_to_opening() -> None:
    # Opening time, not midnight: otherwise a later raw time (Sunday 23:30 -> Monday
    # 00:00) would get an earlier promise than Sunday 22:30 (-> Monday opening).
    cal = calendar("Europe/London", MON_TO_SAT, None, None, dt.time(9, 30))
    assert cal.deadline(london(2024, 6, 9, 23, 30), "hour").deadline_at == london(
        2024, 6, 10, 9, 30
    )
    assert cal.deadline(london(2024, 6, 10, 9, 10), "hour").deadline_at == london(
        2024, 6, 10, 10, 0
    )


@pytest.mark.parametrize(
    ("raw", "promised", "skipped"),
    [
        (london(2024, 12, 24, 20, 0), dt.date(2024, 12, 24), 0),
        (london(2024, 12, 25, 9, 0), dt.date(2024, 12, 27), 2),  # Christmas, Boxing Day
        (london(2021, 12, 31, 23, 30), dt.date(2021, 12, 31), 0),
        # 1 Jan 2025 is a Wednesday: the promise moves to the 2nd.
        (london(2025, 1, 1, 12, 0), dt.date(2025, 1, 2), 1),
        # 1 Jan 2023 is a Sunday: Monday 2nd is the substitute bank holiday.
        (london(2023, 1, 1, 12, 0), dt.date(2023, 1, 3), 2),
        # 1 Jan 2022 is a Saturday, 2 Jan a Sunday, and Monday 3rd the substitute holiday.
        (london(2022, 1, 1, 12, 0), dt.date(2022, 1, 4), 3),
    ],
)
def test_christmas_and_new_year(raw: dt.datetime, promised: dt.date, skipped: int) -> None:
    promise = gb_calendar().deadline(raw, "day")
    assert promise.promise_local == london(promised.year, promised.month, promised.day)
    next_day = promised + dt.timedelta(days=1)
    assert promise.deadline_at == london(next_day.year, next_day.month, next_day.day)
    assert promise.closed_days_skipped == skipped


def test_day_deadline_on_spring_forward_day_is_23_hours_after_its_start() -> None:
    cal = calendar("Europe/London", years=(2000, 2060))  # 31 Mar 2024 is a Sunday
    promise = cal.deadline(london(2024, 3, 31, 12, 0), "day")
    assert promise.deadline_at == utc(2024, 3, 31, 23, 0)  # midnight BST
    assert promise.deadline_at - promise.promise_local == dt.timedelta(hours=23)


def test_a_day_whose_order_window_falls_in_the_clock_change_takes_no_orders() -> None:
    # Opens 01:30, cut-off 01:45: on 27 March 2005 London skips 01:00-02:00, so both land on
    # 02:00 BST and the day has no window; orders count from the next day's opening, and a
    # clock start is a clock start again (it was 02:00 BST, then moved again).
    cal = calendar("Europe/London", cutoff=dt.time(1, 45), opens=dt.time(1, 30))
    after_cutoff = utc(2005, 3, 26, 1, 45)
    expected = london(2005, 3, 28, 1, 30)
    for ordered in (after_cutoff, london(2005, 3, 27, 0, 30), london(2005, 3, 27, 3, 0)):
        start = cal.clock_start(ordered)
        assert start == expected
        assert cal.clock_start(start) == start
        assert cal.clock_starts(np.array([ordered.timestamp()]))[0] == expected.timestamp()
    assert cal.clock_start(london(2005, 3, 26, 1, 40)) == london(2005, 3, 26, 1, 40)


def test_day_deadline_on_fall_back_day_is_25_hours_after_its_start() -> None:
    cal = calendar("Europe/London", years=(2000, 2060))
    promise = cal.deadline(london(2024, 10, 27, 12, 0), "day")
    assert promise.deadline_at == utc(2024, 10, 28, 0, 0)  # midnight GMT
    assert promise.deadline_at - promise.promise_local == dt.timedelta(hours=25)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # 01:00-02:00 GMT does not exist on 31 Mar 2024: the next local hour is 02:00 BST.
        (utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0)),
        (utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 0)),
        # 01:00-02:00 happens twice on 27 Oct 2024: 01:30 BST rounds to the second 01:00.
        (utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 0)),
        (utc(2024, 10, 27, 1, 30), utc(2024, 10, 27, 2, 0)),
    ],
)
def test_hour_rounding_across_london_clock_changes(raw: dt.datetime, expected: dt.datetime) -> None:
    cal = calendar("Europe/London", years=(2000, 2060))
    promise = cal.deadline(raw, "hour")
    assert promise.deadline_at == expected
    assert (promise.promise_local.minute, promise.promise_local.second) == (0, 0)


@pytest.mark.parametrize(
    ("zone", "raw", "unit", "expected_local"),
    [
        ("Asia/Kolkata", dt.datetime(2024, 6, 10, 10, 10), "hour", dt.datetime(2024, 6, 10, 11)),
        (
            "Asia/Kolkata",
            dt.datetime(2024, 6, 10, 10, 10, 1),
            "minute",
            dt.datetime(2024, 6, 10, 10, 11),
        ),
        (
            "America/St_Johns",
            dt.datetime(2024, 1, 10, 10, 10),
            "hour",
            dt.datetime(2024, 1, 10, 11),
        ),
        ("America/St_Johns", dt.datetime(2024, 6, 10, 23, 10), "hour", dt.datetime(2024, 6, 11, 0)),
    ],
)
def test_hour_rounding_in_half_hour_zones_is_on_local_hours(
    zone: str, raw: dt.datetime, unit: Unit, expected_local: dt.datetime
) -> None:
    tz = ZoneInfo(zone)
    promise = calendar(zone, years=(2000, 2060)).deadline(raw.replace(tzinfo=tz), unit)
    assert promise.promise_local == expected_local.replace(tzinfo=tz)
    assert promise.deadline_at == expected_local.replace(tzinfo=tz)


def test_st_johns_old_fall_back_across_midnight_keeps_days_in_order() -> None:
    # On 2 Nov 2008 St John's clocks went from 00:01 NDT back to 23:01 NST on 1 Nov: the
    # day of 1 Nov ends when the clock reads midnight for the last time (03:30 UTC), 25
    # hours after it began.
    tz = ZoneInfo("America/St_Johns")
    cal = calendar("America/St_Johns")
    promise = cal.deadline(dt.datetime(2008, 11, 1, 12, tzinfo=tz), "day")
    assert promise.deadline_at == utc(2008, 11, 2, 3, 30)
    assert promise.deadline_at - promise.promise_local == dt.timedelta(hours=25)
    assert local_date(cal, utc(2008, 11, 2, 2, 40)) == dt.date(2008, 11, 1)  # 23:10 NST again
    assert local_date(cal, utc(2008, 11, 2, 3, 30)) == dt.date(2008, 11, 2)


def test_vectorised_deadlines_match_hand_checked_ones() -> None:
    raw = seconds(london(2024, 6, 9, 11, 0), london(2024, 12, 25, 9, 0), london(2024, 6, 8, 9))
    deadline_s, skipped = gb_calendar().deadlines(raw, "day")
    expected = seconds(london(2024, 6, 11), london(2024, 12, 28), london(2024, 6, 9))
    np.testing.assert_array_equal(deadline_s, expected)
    np.testing.assert_array_equal(skipped, [1, 2, 0])
    assert skipped.dtype == np.int64


# ----------------------------------------------------------------- hand-checked: inversion


@pytest.mark.parametrize(
    ("fulfilled", "earliest"),
    [
        # Raw completions from Sunday on are promised for Monday (Sunday is closed).
        (london(2024, 6, 10, 10, 0), london(2024, 6, 9, 0, 0)),
        # Fulfilled exactly at the end of Monday still meets a Monday promise.
        (london(2024, 6, 11, 0, 0), london(2024, 6, 9, 0, 0)),
        (london(2024, 6, 11, 0, 0, 1), london(2024, 6, 11, 0, 0)),
        # After Christmas: anything raw from Christmas Day on is promised the 27th.
        (london(2024, 12, 27, 15, 0), london(2024, 12, 25, 0, 0)),
    ],
)
def test_earliest_raw_meeting_by_day(fulfilled: dt.datetime, earliest: dt.datetime) -> None:
    cal = gb_calendar()
    [found] = cal.earliest_raw_meeting(seconds(fulfilled), "day")
    assert found == earliest.timestamp()
    assert cal.deadline(earliest, "day").deadline_at >= fulfilled
    assert cal.deadline(earliest - dt.timedelta(microseconds=1), "day").deadline_at < fulfilled


def test_earliest_raw_meeting_by_hour_is_just_after_a_boundary() -> None:
    cal = gb_calendar()
    # Fulfilled at 10:20: a raw 10:00 is promised 10:00 (late), anything later 11:00.
    [found] = cal.earliest_raw_meeting(seconds(london(2024, 6, 10, 10, 20)), "hour")
    assert found == math.nextafter(london(2024, 6, 10, 10, 0).timestamp(), math.inf)
    # Fulfilled at Monday 00:00: a raw time after Saturday 23:00 rounds into Sunday and
    # is promised for Monday's opening.
    [found] = cal.earliest_raw_meeting(seconds(london(2024, 6, 10, 0, 0)), "hour")
    assert found == math.nextafter(london(2024, 6, 8, 23, 0).timestamp(), math.inf)


# ----------------------------------------------------------------- days and features


def promised_day(cal: BusinessCalendar, day: dt.date) -> dt.date:
    """The day a day promise due at noon on `day` is given for: `day` itself iff it is open,
    else the next open day."""
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=cal.zone)
    return cal.deadline(noon, "day").promise_local.date()


def test_a_promise_on_a_closed_day_moves_to_the_next_open_day() -> None:
    cal = gb_calendar()
    assert promised_day(cal, dt.date(2024, 6, 8)) == dt.date(2024, 6, 8)  # open, itself
    assert promised_day(cal, dt.date(2024, 6, 9)) != dt.date(2024, 6, 9)  # Sunday
    assert promised_day(cal, dt.date(2024, 8, 26)) != dt.date(2024, 8, 26)  # bank holiday
    assert promised_day(cal, dt.date(2024, 12, 25)) == dt.date(2024, 12, 27)


def test_scotland_has_its_own_holidays() -> None:
    spec = CalendarSpec("Europe/London", MON_TO_SAT, "GB", "SCT")
    cal = BusinessCalendar(spec, 2024, 2024)
    # 2nd January, Scotland only
    assert promised_day(cal, dt.date(2024, 1, 2)) != dt.date(2024, 1, 2)
    assert promised_day(gb_calendar(), dt.date(2024, 1, 2)) == dt.date(2024, 1, 2)


def test_local_parts_of_a_gb_order() -> None:
    cal = gb_calendar()
    at = london(2024, 12, 20, 14, 30)  # Friday, five days before Christmas
    parts = cal.local_parts(seconds(at))
    assert (parts.weekday[0], parts.hour[0], parts.month[0]) == (4.0, 14.5, 12.0)
    assert parts.day_of_year[0] == 355.0
    assert parts.days_to_closed[0] == 2.0  # Sunday 22nd
    assert tuple(parts.values[0]) == (4.0, 14.5, 12.0, 355.0, 2.0)


def test_days_to_closed_is_capped_at_60() -> None:
    cal = calendar()  # always open
    assert tuple(cal.local_parts(seconds(utc(2020, 6, 1))).values[0]) == (
        0.0,
        0.0,
        6.0,
        153.0,
        60.0,
    )


def test_local_parts_keep_the_input_shape() -> None:
    at = np.full((2, 3), utc(2020, 6, 1, 12).timestamp())
    parts = calendar().local_parts(at)
    assert parts.hour.shape == (2, 3)
    assert calendar().clock_starts(at).shape == (2, 3)


def test_promised_days_beyond_the_range_can_be_looked_up() -> None:
    cal = calendar(weekdays=(0,), years=(2020, 2020))
    promise = cal.deadline(utc(2020, 12, 31, 12), "day")  # a Thursday
    [promised] = cal.local_day_numbers(seconds(promise.deadline_at) - 1.0)
    assert dt.date(1970, 1, 1) + dt.timedelta(days=int(promised)) == dt.date(2021, 1, 4)
    assert is_open_day(cal, dt.date(2021, 1, 4))
    assert local_date(cal, promise.deadline_at) == dt.date(2021, 1, 5)
    with pytest.raises(InputError, match="outside"):
        cal.clock_start(promise.deadline_at)  # orders must fall within the year range


# ----------------------------------------------------------------- errors


def test_naive_time_is_refused() -> None:
    with pytest.raises(InputError, match="no time zone") as caught:
        gb_calendar().clock_start(dt.datetime(2024, 6, 8, 17, 0))
    assert caught.value.field == "ordered_at"


def test_times_outside_the_range_are_refused() -> None:
    cal = gb_calendar()
    with pytest.raises(InputError, match=r"date 2150-01-01 is outside .* range 2000-2060"):
        cal.deadline(london(2150, 1, 1, 12), "day")
    with pytest.raises(InputError, match="1999-12-31") as caught:
        cal.clock_starts(seconds(london(2024, 1, 1), london(1999, 12, 31, 23, 59)))
    assert caught.value.field == "ordered_at"
    with pytest.raises(InputError, match="finite"):
        cal.local_parts(np.array([np.nan]))
    with pytest.raises(InputError) as caught:
        cal.earliest_raw_meeting(np.array([1e12]), "day")
    assert caught.value.field == "fulfilled_at"


def test_unknown_unit_is_refused() -> None:
    with pytest.raises(InputError, match="unknown unit") as caught:
        gb_calendar().deadlines(np.array([1.7e9]), "week")  # type: ignore[arg-type]
    assert caught.value.field == "unit"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (CalendarSpec(timezone="Mars/Olympus"), "unknown time zone"),
        (CalendarSpec(open_weekdays=()), "open_weekdays"),
        (CalendarSpec(open_weekdays=(7,)), "open_weekdays"),
        (CalendarSpec(holidays_country="XX"), "holidays"),
        (CalendarSpec(holidays_country="GB", holidays_subdivision="XX"), "holidays"),
        (CalendarSpec(holidays_subdivision="ENG"), "without a holidays_country"),
        (CalendarSpec(cutoff=dt.time(9), opens=dt.time(9)), "must be after opens"),
        (CalendarSpec(cutoff=dt.time(16, tzinfo=UTC)), "without a zone"),
    ],
)
def test_bad_specs_are_refused(spec: CalendarSpec, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        BusinessCalendar(spec, 2024, 2024)


def test_bad_year_range_is_refused() -> None:
    with pytest.raises(SpecError, match="first_year"):
        BusinessCalendar(CalendarSpec(), 2030, 2020)


# ----------------------------------------------------------------- properties


@PROPERTY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_a_promise_is_never_early_and_lands_on_an_open_day(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    raw = of_us(data.draw(instants_us(cal)))
    promise = cal.deadline(raw, unit)
    assert promise.deadline_at >= raw
    local = promise.promise_local
    if unit == "day":
        day = local.date()
        assert is_open_day(cal, day)
        assert local_date(cal, local) == day
        assert (day - local_date(cal, raw)).days == promise.closed_days_skipped
        assert local_date(cal, promise.deadline_at) == day + dt.timedelta(days=1)
        assert local_date(cal, promise.deadline_at - dt.timedelta(microseconds=1)) == day
    else:
        assert local.timestamp() == promise.deadline_at.timestamp()  # == is False in folds
        assert is_open_day(cal, local_date(cal, promise.deadline_at))
        on_boundary = local.second == 0 and local.microsecond == 0
        if unit == "hour":
            on_boundary = on_boundary and local.minute == 0
        assert on_boundary or local.time() == cal.spec.opens  # a local boundary, or opening


@PROPERTY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_promises_are_monotone_in_the_raw_completion(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    raw = np.sort(data.draw(instant_arrays(cal)))
    # Neighbours a few seconds and a few hours apart, where rounding and moves interact.
    raw = np.sort(np.concatenate([raw, raw + 1.5, raw + 3_599.0, raw + 3 * 3_600.0]))
    deadline_s, _ = cal.deadlines(raw, unit)
    assert (deadline_s >= raw).all()
    assert (np.diff(deadline_s) >= 0).all()


@PROPERTY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_earliest_raw_meeting_inverts_the_deadline(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    fulfilled = data.draw(instant_arrays(cal))
    earliest = cal.earliest_raw_meeting(fulfilled, unit)
    back = data.draw(st.lists(st.integers(0, 5 * 86_400_000_000), min_size=1, max_size=10))
    # Raw times before each fulfilment (where the answer matters), plus the edges.
    raw = np.concatenate(
        [fulfilled[:, None] - np.array(back)[None, :] / 1e6, earliest[:, None]], axis=1
    )
    raw = np.concatenate(
        [raw, np.nextafter(earliest, -np.inf)[:, None], earliest[:, None] + 1e-3], axis=1
    )
    deadline_s, _ = cal.deadlines(raw.ravel(), unit)
    meets = deadline_s.reshape(raw.shape) >= fulfilled[:, None]
    np.testing.assert_array_equal(meets, raw >= earliest[:, None])


@PROPERTY
@given(data=st.data())
def test_the_clock_starts_at_or_after_the_order_on_an_open_day(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    ordered = of_us(data.draw(instants_us(cal)))
    start = cal.clock_start(ordered)
    assert start >= ordered
    assert is_open_day(cal, local_date(cal, start))
    if local_date(cal, start).year <= LAST_YEAR:  # orders beyond the range are refused
        assert cal.clock_start(start) == start  # idempotent
    local = start.astimezone(cal.zone).time()
    if start > ordered:  # moved to an opening (later on the clock if it opens in a gap)
        assert local >= cal.spec.opens
    elif cal.spec.cutoff is not None:
        assert local < cal.spec.cutoff


@PROPERTY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_scalar_and_vectorised_agree(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    values_us = data.draw(st.lists(instants_us(cal), min_size=1, max_size=20))
    times = [of_us(us) for us in values_us]
    t = np.array(values_us, dtype=np.int64) / 1e6

    deadline_s, skipped = cal.deadlines(t, unit)
    promises = [cal.deadline(at, unit) for at in times]
    np.testing.assert_array_equal(deadline_s, [p.deadline_at.timestamp() for p in promises])
    np.testing.assert_array_equal(skipped, [p.closed_days_skipped for p in promises])

    np.testing.assert_array_equal(
        cal.clock_starts(t), [cal.clock_start(at).timestamp() for at in times]
    )
    parts = cal.local_parts(t)
    vector = np.stack(
        [parts.weekday, parts.hour, parts.month, parts.day_of_year, parts.days_to_closed], axis=1
    )
    np.testing.assert_array_equal(vector, [cal.local_parts(seconds(at)).values[0] for at in times])


@PROPERTY
@given(data=st.data())
def test_local_parts_agree_with_zoneinfo(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    at = of_us(data.draw(instants_us(cal)))
    local = at.astimezone(cal.zone)
    weekday, hour, month, day_of_year, days_to_closed = cal.local_parts(seconds(at)).values[0]
    if local_date(cal, at) == local.date():  # else St John's old minute at 00:00-00:01 NDT
        assert weekday == local.weekday()
        assert hour == pytest.approx(
            local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600,
            abs=1e-9,
        )
        assert (month, day_of_year) == (local.month, local.timetuple().tm_yday)
    day = local_date(cal, at)
    closed_in = next((k for k in range(60) if not is_open_day(cal, day + dt.timedelta(days=k))), 60)
    assert days_to_closed == closed_in


def test_unit_table_is_what_the_calendar_rounds_to() -> None:
    assert SECONDS_PER_UNIT == {"day": 86_400, "hour": 3_600, "minute": 60}
