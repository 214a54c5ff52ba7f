"""The API's lists: their paged answers (`total`, `count`, `next_cursor`) and the parameters
only lists take (an ISO 8601 duration for `within`).

Every list answers one page: `count` items of `total` matching the caller's query within the
stores its key acts for, and `next_cursor` (null on the last page) to send back as `cursor=`
for the next one (`service.cursor`).
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, Field

from models.errors import InputError
from service.schemas import QuoteResponse, RiskResponse

# What `within` accepts, exactly: weeks, days, hours, minutes and seconds of ISO 8601 (years
# and months have no fixed length, so they are refused rather than guessed).
_DURATION = re.compile(
    r"P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.ASCII,  # \d is 0-9 only, as in the ECMA pattern the document states
)
# The same expression as the OpenAPI document states it (ECMA 262: no group names).
ISO_DURATION_PATTERN = "^" + re.sub(r"\?P<\w+>", "", _DURATION.pattern) + "$"
MAX_DURATION_CHARS = 40


def iso_duration(text: str, field: str) -> dt.timedelta:
    """The span an ISO 8601 duration such as `P7D`, `PT12H` or `P1DT6H30M` names; `InputError`
    on `field` for anything else (a bare number, `7d`, years or months)."""
    found = _DURATION.fullmatch(text) if len(text) <= MAX_DURATION_CHARS else None
    if found is None and text.isascii() and text.isdigit() and len(text) < 12:
        raise InputError(
            f"{field} takes an ISO 8601 duration, not a number of seconds: "
            f"{text} seconds is {_iso(dt.timedelta(seconds=int(text)))}",
            field=field,
        )
    if found is None:
        raise InputError(
            f"{field} must be an ISO 8601 duration such as P7D, PT12H or P1DT6H "
            f"(weeks, days, hours, minutes, seconds); got {text[:MAX_DURATION_CHARS]!r}",
            field=field,
        )
    parts = {name: float(value) for name, value in found.groupdict().items() if value}
    try:
        return dt.timedelta(**parts)
    except OverflowError as err:
        raise InputError(f"{field} is far too long", field=field) from err


def _iso(span: dt.timedelta) -> str:
    days, rest = divmod(int(span.total_seconds()), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return f"P{days}D" + (f"T{time}" if time else "") if days or not time else f"PT{time}"


class AtRiskResponse(BaseModel):
    """One page of the call list: open orders likely to break their promise, soonest deadline
    first (the likelier first at equal deadlines)."""

    at: dt.datetime = Field(
        description="The moment the risks are judged at; every page of one list is judged at "
        "its first page's moment."
    )
    min_probability: float
    within_hours: float
    store: str | None
    total: int = Field(
        description="Orders on the whole list (every page), for this key: of the 20,000 open "
        "orders due soonest, the most one list is drawn from."
    )
    count: int = Field(description="Orders on this page (at most `limit`).")
    next_cursor: str | None = Field(
        description="Send as `cursor` for the next page; null on the last page."
    )
    orders: list[RiskResponse]
    unassessed: int = Field(
        default=0,
        description="Open orders in the window whose quoting model can no longer be loaded: "
        "their risk is not judged (by another model) and they are not listed.",
    )
    unassessed_versions: list[str] = Field(
        default_factory=list, description="The model versions of those orders."
    )


class QuoteListResponse(BaseModel):
    """One page of the quotes given for the shop's own order reference, newest first
    (revisions included: each names its original in `revision_of`)."""

    reference: str
    total: int = Field(description="Quotes with this reference (every page), for this key.")
    count: int = Field(description="Quotes on this page (at most `limit`).")
    next_cursor: str | None = Field(
        description="Send as `cursor` for the next page; null on the last page."
    )
    quotes: list[QuoteResponse]
