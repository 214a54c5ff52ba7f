"""The calendar's rules in words: why a clock starts later, which closed days a promise skips."""

from __future__ import annotations

import datetime as dt

from models.calendar import BusinessCalendar, CalendarSpec
from models.calendar_words import clock_start_reason, closed_day_name, closed_days_text

EPOCH = dt.date(1970, 1, 1).toordinal()


def _day(day: dt.date) -> int:
    return day.toordinal() - EPOCH


def _calendar(country: str | None, weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)) -> BusinessCalendar:
    spec = CalendarSpec(
        timezone="America/New_York" if country == "US" else "Europe/London",
        open_weekdays=weekdays,
        holidays_country=country,
        cutoff=dt.time(15, 30),
        opens=dt.time(8),
    )
    return BusinessCalendar(spec, 2025, 2027)


def test_a_holiday_is_named_with_what_the_country_calls_it() -> None:
    us = _calendar("US")
    thanksgiving = _day(dt.date(2026, 11, 26))
    assert closed_day_name(us, thanksgiving) == "Thanksgiving Day (public holiday)"
    gb = _calendar("GB")
    assert closed_day_name(gb, _day(dt.date(2026, 5, 25))) == "Spring Bank Holiday"
    assert closed_day_name(gb, _day(dt.date(2026, 12, 6))) == "Sunday, when the shop is closed"


def test_a_calendar_loaded_without_holiday_names_still_says_why() -> None:
    gb = _calendar("GB")
    old = BusinessCalendar.from_tables(gb.spec, gb.first_year, gb.last_year, gb.tables)
    assert closed_day_name(old, _day(dt.date(2026, 12, 25))) == "a bank holiday"
    assert closed_days_text(old, dt.date(2026, 12, 29), 2) == "Sunday and a holiday"


def test_the_cut_off_and_the_opening_time_read_in_the_shops_clock() -> None:
    us = _calendar("US")
    late = dt.datetime(2026, 12, 2, 21, tzinfo=dt.UTC)  # 16:00 in New York
    # In the shop's locale, en_US for a US shop (CLDR puts a narrow space before PM).
    assert clock_start_reason(us, late) == "after the 3:30\u202fPM cut-off"
    early = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)  # 07:00 in New York
    assert clock_start_reason(us, early) == "before the shop opens at 8:00\u202fAM"
    saturday = dt.datetime(2026, 12, 5, 15, tzinfo=dt.UTC)
    assert clock_start_reason(us, saturday) == "on Saturday, when the shop is closed"


def test_a_long_run_of_closed_days_is_only_counted() -> None:
    gb = _calendar("GB")
    assert closed_days_text(gb, dt.date(2026, 12, 7), 2) == "Saturday and Sunday"
    assert closed_days_text(gb, dt.date(2026, 12, 29), 5) == ""
