"""The calendar's compiled loops against a plain-Python reading of its rules (zoneinfo, no tables).

Thousands of orders drawn anywhere, on round local times and next to clock changes (London,
St John's, Lord Howe's half hour, ...), on calendars with cut-offs, closed weekdays, holidays and
late openings: clock starts, local time features and deadlines for every unit must equal
`tests.models.references`' answers, and the back half (`BusinessCalendar.promises`) must give
the deadlines `deadlines` gives.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import BusinessCalendar, CalendarSpec
from models.errors import InputError
from models.units import Unit
from tests.models.references import (
    reference_clock_start,
    reference_deadline,
    reference_local_parts,
)
from tests.models.test_calendar import UNITS, calendars, instants_us

MANY = settings(max_examples=300, deadline=None, database=None)


def _times(data: st.DataObject, cal: BusinessCalendar) -> np.ndarray:
    values = data.draw(st.lists(instants_us(cal), min_size=1, max_size=12))
    return np.array(values, dtype=np.int64) / 1e6


@MANY
@given(data=st.data())
def test_clock_starts_follow_the_rules(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    t = _times(data, cal)
    expected = [reference_clock_start(cal, float(x)) for x in t]
    np.testing.assert_array_equal(cal.clock_starts(t), expected)


@MANY
@given(data=st.data())
def test_local_parts_follow_the_rules(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    t = _times(data, cal)
    parts = cal.local_parts(t).values
    expected = np.array([reference_local_parts(cal, float(x)) for x in t])
    np.testing.assert_array_equal(parts[:, [0, 2, 3, 4]], expected[:, [0, 2, 3, 4]])
    np.testing.assert_allclose(parts[:, 1], expected[:, 1], rtol=0, atol=1e-9)


@MANY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_deadlines_follow_the_rules(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    t = _times(data, cal)
    deadline, skipped = cal.deadlines(t, unit)
    expected = [reference_deadline(cal, float(x), unit) for x in t]
    np.testing.assert_array_equal(deadline, [e[0] for e in expected])
    np.testing.assert_array_equal(skipped, [e[1] for e in expected])


@MANY
@given(data=st.data(), unit=st.sampled_from(UNITS))
def test_the_back_half_rounds_as_deadlines_do(data: st.DataObject, unit: Unit) -> None:
    cal = data.draw(calendars())
    ordered = _times(data, cal)
    start = cal.clock_starts(ordered)
    rng = np.random.default_rng(ordered.size)
    expected_hours = rng.uniform(0.0, 200.0, ordered.size)
    buffer_hours = rng.uniform(0.0, 50.0, ordered.size)
    raw = start + (expected_hours + buffer_hours) * 3600.0
    if not (raw < dt.datetime(2030, 12, 31, tzinfo=dt.UTC).timestamp()).all():
        return  # past the calendar's years: `test_range_errors_name_the_field` covers it
    deadline, skipped, units, exceeds = cal.promises(
        ordered, start, expected_hours, buffer_hours, unit, 5.0
    )
    want_deadline, want_skipped = cal.deadlines(raw, unit)
    np.testing.assert_array_equal(deadline, want_deadline)
    np.testing.assert_array_equal(skipped, want_skipped)
    if unit == "day":
        days = cal.local_day_numbers(deadline - 1.0) - cal.local_day_numbers(ordered)
        np.testing.assert_array_equal(units, days.astype(np.float64))
    else:
        np.testing.assert_array_equal(
            units, (deadline - ordered) / (3600.0 if unit == "hour" else 60.0)
        )
    np.testing.assert_array_equal(exceeds, units > 5.0 + 1e-9)


def test_range_errors_name_the_field() -> None:
    cal = BusinessCalendar(CalendarSpec("Europe/London"), 2020, 2021)
    inside = np.array([dt.datetime(2021, 6, 1, tzinfo=dt.UTC).timestamp()])
    late = np.array([dt.datetime(2023, 6, 1, tzinfo=dt.UTC).timestamp()])
    for call in (cal.clock_starts, cal.local_parts, lambda t: cal.deadlines(t, "hour")):
        with pytest.raises(InputError, match="outside the calendar's range 2020-2021"):
            call(np.concatenate([inside, late]))
        with pytest.raises(InputError, match="must be a finite time"):
            call(np.array([np.nan]))
    with pytest.raises(InputError, match="outside the calendar's range"):
        cal.promises(inside, inside, np.array([24.0 * 900]), np.zeros(1), "day", None)
