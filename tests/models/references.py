"""Independent references the tests hold the real paths against.

- `is_open_day`: a store's open days read off its spec (weekday and public holidays), not off
  the calendar's tables;
- `local_date`: an instant's local date as the calendar's vector path reads it
  (`local_day_numbers`), for checks written with dates;
- `probabilities_late`: the risk of many open orders as a ratio of survivals, against which
  `models.risk.flag_elapsed_hours`' search for the moment a risk is reached is checked.
"""

from __future__ import annotations

import datetime as dt
import functools
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
