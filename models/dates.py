"""Dates and times as people in the shop read them: one style, in the shop's locale.

Every staff page, the customer's slip and a promise's explanation write dates through a
`DateStyle`, and nothing else formats a date for people (the API's JSON keeps ISO 8601):

- a day: the locale's abbreviated weekday, day, month and year (CLDR skeleton `yMMMEd`):
  "Thu, 3 Dec 2026" in en_GB, "qui., 3 de dez. de 2026" in pt_BR;
- a long day, for the slip's headline only: the locale's full date, "Thursday, 3 December 2026";
- a clock time: the locale's short time, "14:05" (en_US "2:05 PM");
- a moment: its day and time in the shop's zone with the zone's abbreviation, joined as the
  locale joins them: "Thu, 3 Dec 2026, 14:05 (GMT)".

The words and patterns come from Babel's CLDR data. A style compiles its patterns once into
pieces, so writing a day costs a few microseconds (Babel's own formatter about ten): the
explanation of every quote writes one or two. A locale that does not write Latin digits goes
through Babel's formatter instead. `default_locale` chooses the locale of a holiday country
when the spec names none.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, parse_pattern, tokenize_pattern
from babel.languages import get_official_languages

from models.errors import SpecError

__all__ = ["FALLBACK_LOCALE", "DateStyle", "check_locale", "default_locale"]

# The locale of a calendar without one and without a holiday country (the style the staff
# pages had before locales: "Thu, 3 Dec 2026").
FALLBACK_LOCALE = "en_GB"
DAY_SKELETON = "yMMMEd"

_Piece = str | tuple[str, int]
_Formatter = Callable[[dt.datetime], str]


def check_locale(name: str) -> str:
    """`name` in Babel's spelling ("pt-BR" -> "pt_BR"); `SpecError` for a locale CLDR lacks."""
    try:
        return str(Locale.parse(name.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError) as err:
        raise SpecError(
            f"unknown locale {name!r}; use a language and country like 'pt_BR' or 'en_GB'"
        ) from err


def default_locale(country: str | None) -> str:
    """The locale of a shop in `country` (a `holidays` code such as "BR" -> "pt_BR"): its first
    official language there; `FALLBACK_LOCALE` without a country or a known language."""
    if not country:
        return FALLBACK_LOCALE
    for language in get_official_languages(country.upper(), de_facto=True):
        try:
            return str(Locale.parse(f"{language}_{country.upper()}"))
        except (UnknownLocaleError, ValueError):
            continue
    return FALLBACK_LOCALE


@dataclass(frozen=True, slots=True)
class DateStyle:
    """How one shop writes days, clock times and moments (see the module docstring)."""

    locale: str
    zone: ZoneInfo
    _day: _Formatter
    _long_day: _Formatter
    _clock: _Formatter
    _moment_pattern: str

    @classmethod
    def of(cls, locale: str, zone: ZoneInfo) -> DateStyle:
        """The style of `locale` (Babel's spelling, e.g. "pt_BR") for a shop in `zone`;
        `SpecError` for an unknown locale."""
        name = check_locale(locale)
        parsed = Locale.parse(name)
        day = str(parsed.datetime_skeletons[DAY_SKELETON])
        clock = str(parsed.time_formats["short"].pattern)
        joined = str(parsed.datetime_formats["medium"])
        moment = joined.replace("{1}", day, 1).replace("{0}", f"{clock} (zzz)", 1)
        return cls(
            locale=name,
            zone=zone,
            _day=_formatter(parsed, day),
            _long_day=_formatter(parsed, str(parsed.date_formats["full"].pattern)),
            _clock=_formatter(parsed, clock),
            _moment_pattern=moment,
        )

    def __reduce__(self) -> tuple[Callable[[str, ZoneInfo], DateStyle], tuple[str, ZoneInfo]]:
        # A pickled engine (`model.joblib`) carries the locale and zone; the compiled patterns
        # are made again where it loads.
        return (DateStyle.of, (self.locale, self.zone))

    def day(self, day: dt.date) -> str:
        """A day: "Thu, 3 Dec 2026" (en_GB)."""
        return self._day(_as_datetime(day))

    def long_day(self, day: dt.date) -> str:
        """A day spelt out, for the slip's headline: "Thursday, 3 December 2026" (en_GB)."""
        return self._long_day(_as_datetime(day))

    def clock(self, at: dt.datetime | dt.time) -> str:
        """A wall-clock time as it reads: "14:05" (en_GB), "2:05 PM" (en_US)."""
        if isinstance(at, dt.time):
            at = dt.datetime.combine(dt.date(2000, 1, 1), at)
        return self._clock(at)

    def in_zone(self, zone: ZoneInfo) -> DateStyle:
        """The same style for a shop in another zone (a quote given under an earlier model)."""
        return dataclasses.replace(self, zone=zone)

    def day_and_clock(self, at: dt.datetime) -> str:
        """A time whose zone goes without saying, in the shop's zone when aware:
        "Thu, 3 Dec 2026, 14:05"."""
        if at.tzinfo is not None and at.tzinfo is not self.zone:
            at = at.astimezone(self.zone)
        return f"{self.day(at)}, {self.clock(at)}"

    def moment(self, at: dt.datetime) -> str:
        """An aware instant in the shop's zone, with the zone's abbreviation:
        "Thu, 3 Dec 2026, 14:05 (GMT)" (en_GB)."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{at.isoformat()} has no time zone")
        local = at.astimezone(self.zone)
        return str(format_datetime(local, self._moment_pattern, locale=self.locale))


def _as_datetime(day: dt.date) -> dt.datetime:
    if isinstance(day, dt.datetime):
        return day
    return dt.datetime(day.year, day.month, day.day)


def _formatter(locale: Locale, pattern: str) -> _Formatter:
    """`pattern` compiled for `locale`: Babel's result, from pieces joined in plain Python when
    every field is one of the few a day or clock pattern uses and the digits are Latin."""
    pieces = _pieces(pattern)
    if pieces is None or locale.default_numbering_system != "latn":
        compiled = parse_pattern(pattern)
        return lambda at: str(compiled.apply(at, locale))
    names = _Names.of(locale)
    return lambda at: "".join(
        piece if isinstance(piece, str) else names.field(piece, at) for piece in pieces
    )


def _pieces(pattern: str) -> Sequence[_Piece] | None:
    pieces: list[_Piece] = []
    for kind, value in tokenize_pattern(pattern):
        if kind == "chars":
            pieces.append(str(value))
        elif kind == "field" and (value[0], value[1]) in _FIELDS:
            pieces.append((str(value[0]), int(value[1])))
        else:
            return None
    return tuple(pieces)


# The fields `_Names.field` writes as Babel does; any other sends a pattern to Babel.
_FIELDS = {
    *(("E", n) for n in (1, 2, 3, 4)),
    *(("d", n) for n in (1, 2)),
    *(("M", n) for n in (1, 2, 3, 4)),
    *(("L", n) for n in (1, 2, 3, 4)),
    ("y", 1),
    ("y", 2),
    ("y", 4),
    *(("H", n) for n in (1, 2)),
    *(("h", n) for n in (1, 2)),
    ("m", 2),
    ("a", 1),
}


@dataclass(frozen=True, slots=True)
class _Names:
    """A locale's weekday, month and day-period names, as the pattern fields want them."""

    weekdays_short: tuple[str, ...]  # Monday first
    weekdays_wide: tuple[str, ...]
    months_short: tuple[str, ...]  # January first
    months_wide: tuple[str, ...]
    months_short_alone: tuple[str, ...]
    months_wide_alone: tuple[str, ...]
    am: str
    pm: str

    @classmethod
    def of(cls, locale: Locale) -> _Names:
        days = locale.days["format"]
        months = locale.months["format"]
        alone = locale.months["stand-alone"]
        periods = locale.day_periods["format"]["abbreviated"]
        return cls(
            weekdays_short=tuple(str(days["abbreviated"][i]) for i in range(7)),
            weekdays_wide=tuple(str(days["wide"][i]) for i in range(7)),
            months_short=tuple(str(months["abbreviated"][i]) for i in range(1, 13)),
            months_wide=tuple(str(months["wide"][i]) for i in range(1, 13)),
            months_short_alone=tuple(str(alone["abbreviated"][i]) for i in range(1, 13)),
            months_wide_alone=tuple(str(alone["wide"][i]) for i in range(1, 13)),
            am=str(periods["am"]),
            pm=str(periods["pm"]),
        )

    def field(self, piece: tuple[str, int], at: dt.datetime) -> str:
        letter, width = piece
        if letter == "E":
            names = self.weekdays_wide if width == 4 else self.weekdays_short
            return names[at.weekday()]
        if letter == "d":
            return f"{at.day:0{width}d}"
        if letter in "ML":
            if width <= 2:
                return f"{at.month:0{width}d}"
            wide = width == 4
            if letter == "M":
                return (self.months_wide if wide else self.months_short)[at.month - 1]
            return (self.months_wide_alone if wide else self.months_short_alone)[at.month - 1]
        if letter == "y":
            return f"{at.year % 100:02d}" if width == 2 else f"{at.year:0{width}d}"
        if letter == "H":
            return f"{at.hour:0{width}d}"
        if letter == "h":
            return f"{(at.hour % 12) or 12:0{width}d}"
        if letter == "m":
            return f"{at.minute:02d}"
        return self.am if at.hour < 12 else self.pm  # "a"
