"""Which rule of the calendar moved a promise, in words, for the explanation.

`clock_start_reason` says why an order's clock starts later than the order ("after the 16:00
cut-off", "on Sunday, when the shop is closed", "on Christmas Day (bank holiday)"), and
`closed_days_text` names the closed days a promise skips. Both read only what the calendar
already holds (its day table, spec and holidays' names), and only the explanation calls them:
the quote's numbers never depend on these words.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from models.calendar import BusinessCalendar

__all__ = ["clock_start_reason", "closed_day_name", "closed_days_text"]

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# What a country calls the public holidays its shops close on; "public holiday" elsewhere.
HOLIDAY_WORDS = {"GB": "bank holiday", "UK": "bank holiday", "IE": "bank holiday"}
# Closed days named one by one in the explanation; a longer run is only counted.
MAX_NAMED_DAYS = 4
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def clock_start_reason(calendar: BusinessCalendar, ordered_at: dt.datetime) -> str:
    """Why an order placed at `ordered_at` (aware) starts its clock later, to follow "The order
    came in": "after the 16:00 cut-off", "before the shop opens at 09:00", or the closed day
    it came in on ("on Sunday, when the shop is closed")."""
    tables = calendar.tables
    t = ordered_at.timestamp()
    # The local day as the calendar counts it: the last day that starts at or before t.
    i = int(np.searchsorted(tables.day_start, t, side="right")) - 1
    spec = calendar.spec
    if not tables.is_open[i]:
        return f"on {closed_day_name(calendar, tables.day0 + i)}"
    if spec.cutoff is not None and t >= float(tables.day_cut[i]):
        return f"after the {calendar.dates.clock(spec.cutoff)} cut-off"
    if t < float(tables.day_open[i]):
        return f"before the shop opens at {calendar.dates.clock(spec.opens)}"
    return "on a day whose opening hours the clocks skip"  # both fall in a clock change


def closed_day_name(calendar: BusinessCalendar, day: int) -> str:
    """A closed local day (days since 1970-01-01) as the explanation names it: "Sunday, when
    the shop is closed", "Christmas Day (bank holiday)", else "a day the shop is closed"."""
    weekday = dt.date.fromordinal(day + _EPOCH_ORDINAL).weekday()
    if weekday not in calendar.spec.open_weekdays:
        return f"{WEEKDAY_NAMES[weekday]}, when the shop is closed"
    word = HOLIDAY_WORDS.get(calendar.spec.holidays_country or "", "public holiday")
    name = calendar.holiday_names.get(day)
    if name is None:
        return f"a {word}" if calendar.spec.holidays_country else "a day the shop is closed"
    return name if word.casefold() in name.casefold() else f"{name} ({word})"


def closed_days_text(calendar: BusinessCalendar, promised_day: dt.date, skipped: int) -> str:
    """The `skipped` closed days just before the local `promised_day` that a promise moved over:
    "Saturday and Sunday" or "Christmas Day and Boxing Day", each named once; "" when there are
    more than `MAX_NAMED_DAYS`."""
    if not 0 < skipped <= MAX_NAMED_DAYS:
        return ""
    last = promised_day.toordinal() - _EPOCH_ORDINAL
    names = []
    for day in range(last - skipped, last):
        weekday = dt.date.fromordinal(day + _EPOCH_ORDINAL).weekday()
        if weekday not in calendar.spec.open_weekdays:
            names.append(WEEKDAY_NAMES[weekday])
        else:
            names.append(calendar.holiday_names.get(day) or "a holiday")
    unique = list(dict.fromkeys(names))
    return unique[0] if len(unique) == 1 else f"{', '.join(unique[:-1])} and {unique[-1]}"
