"""Dates in the shop's locale: one style, Babel's words, carried by the calendar and its bundle."""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from babel.dates import format_datetime

from models.calendar import BusinessCalendar, CalendarSpec
from models.dates import DateStyle, check_locale, default_locale
from models.errors import SpecError
from models.serving_form import engine_form, engine_from_form
from tests.models.test_quoting import engine_with, shop_calendar

LONDON = ZoneInfo("Europe/London")
LOCALES = ["en_GB", "en_US", "pt_BR", "de_DE", "fr_FR", "es_ES", "ja_JP", "ko_KR", "fi_FI"]
TIMES = [
    dt.datetime(2026, 12, 3, 14, 5),
    dt.datetime(2026, 1, 4, 0, 7),
    dt.datetime(1999, 6, 30, 23, 59),
    dt.datetime(2026, 5, 17, 12, 0),
]


@pytest.mark.parametrize("locale", LOCALES)
def test_a_style_writes_what_babel_writes_for_its_locale(locale: str) -> None:
    style = DateStyle.of(locale, LONDON)
    cldr = Locale.parse(locale)
    for at in TIMES:
        assert style.day(at) == format_datetime(at, cldr.datetime_skeletons["yMMMEd"], locale=cldr)
        assert style.long_day(at.date()) == format_datetime(
            at, cldr.date_formats["full"].pattern, locale=cldr
        )
        assert style.clock(at) == format_datetime(
            at, cldr.time_formats["short"].pattern, locale=cldr
        )


def test_portuguese_and_english_days() -> None:
    day = dt.date(2026, 12, 3)
    assert DateStyle.of("pt_BR", LONDON).day(day) == "qui., 3 de dez. de 2026"
    assert DateStyle.of("pt_BR", LONDON).long_day(day) == "quinta-feira, 3 de dezembro de 2026"
    assert DateStyle.of("en_GB", LONDON).day(day) == "Thu, 3 Dec 2026"
    assert DateStyle.of("en_GB", LONDON).long_day(day) == "Thursday, 3 December 2026"


def test_a_moment_is_read_in_the_shops_zone_with_its_abbreviation() -> None:
    at = dt.datetime(2026, 7, 3, 23, 30, tzinfo=dt.UTC)
    assert DateStyle.of("en_GB", LONDON).moment(at) == "Sat, 4 Jul 2026, 00:30 (BST)"
    sao_paulo = DateStyle.of("pt_BR", ZoneInfo("America/Sao_Paulo"))
    assert sao_paulo.moment(at) == "sex., 3 de jul. de 2026 20:30 (BRT)"
    with pytest.raises(ValueError, match="no time zone"):
        sao_paulo.moment(dt.datetime(2026, 7, 3, 23, 30))


def test_the_default_locale_follows_the_holiday_country() -> None:
    assert default_locale("BR") == "pt_BR"
    assert default_locale("GB") == "en_GB"
    assert default_locale("DE") == "de_DE"
    assert default_locale(None) == "en_GB"
    assert check_locale("pt-BR") == "pt_BR"
    with pytest.raises(SpecError, match="unknown locale 'xx_YY'"):
        check_locale("xx_YY")


def test_a_calendar_writes_in_its_locale_or_its_countrys() -> None:
    brazil = BusinessCalendar(
        CalendarSpec(timezone="America/Sao_Paulo", holidays_country="BR"), 2025, 2027
    )
    assert brazil.dates.locale == "pt_BR"
    chosen = BusinessCalendar(CalendarSpec(holidays_country="BR", locale="en_GB"), 2025, 2027)
    assert chosen.dates.locale == "en_GB"
    with pytest.raises(SpecError, match="unknown locale"):
        BusinessCalendar(CalendarSpec(locale="nonsense"), 2025, 2027)


def test_a_pickled_style_is_the_same_style() -> None:
    style = DateStyle.of("pt_BR", LONDON)
    again = pickle.loads(pickle.dumps(style))
    assert (again.locale, again.zone, again.day(TIMES[0])) == ("pt_BR", LONDON, style.day(TIMES[0]))


def test_the_bundle_carries_the_locale_and_the_holidays_names() -> None:
    engine = engine_with(shop_calendar("pt_BR"), "day", 0.0)
    document, arrays = engine_form(engine)
    loaded = engine_from_form(document, arrays).calendar
    assert loaded.dates.locale == "pt_BR"
    christmas = dt.date(2026, 12, 25).toordinal() - dt.date(1970, 1, 1).toordinal()
    assert loaded.holiday_names[christmas] == "Christmas Day"


def test_a_bundle_made_before_locales_loads_in_its_countrys_locale() -> None:
    engine = engine_with(shop_calendar(), "day", 0.0)
    engine = replace(engine, calendar=BusinessCalendar(replace(engine.calendar.spec), 2025, 2027))
    document, arrays = engine_form(engine)
    calendar = dict(document["calendar"])
    calendar["spec"] = {k: v for k, v in calendar["spec"].items() if k != "locale"}
    del calendar["holiday_names"]
    loaded = engine_from_form({**document, "calendar": calendar}, arrays).calendar
    assert loaded.dates.locale == "en_GB"  # from its holidays country, GB
    assert loaded.holiday_names == {}
