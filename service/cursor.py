"""Page cursors: the opaque `next_cursor` of a list, and reading one back as `cursor=`.

The call list's pages follow `call_order` (deadline, the likelier first, quote id) and the
quotes of a reference newest first (`created_at`, then quote id): both keys are unique.

A cursor names where the next page starts by the last item's sort key (keyset paging, never an
offset), so quotes stored meanwhile before that point never shift the pages after it. It is
base64url JSON holding the list it belongs to, a fingerprint of the key it was given to, the
query it pages (its filters), the position after which the next page starts and, for a list
judged at a moment (the call list's risks), that moment.

A cursor grants nothing: every page is read within the caller's stores whatever the cursor
says, so it needs no signature. A cursor that cannot be read, or that was given to another key
or for another list, is refused with an `InputError` on field `cursor` (422).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.errors import InputError
from models.revision import OrderRisk
from service.auth import Caller
from service.ledger.records import StoredQuote
from service.risk import AtRiskQuery
from service.tables import storable_text

AT_RISK_LIST = "at-risk"
QUOTES_LIST = "quotes"
# Room for the longest filters a list takes (a 200-character reference or store, 4 bytes a
# character in UTF-8, base64 adding a third), with its position.
MAX_CURSOR_CHARS = 4_000
# A call list's pages are judged at its first page's moment: a cursor older than this pages a
# list too stale to call from.
MAX_CURSOR_AGE = dt.timedelta(hours=24)
CURSOR_FORMAT = 1
CURSOR_FIELD = "cursor"


def key_fingerprint(caller: Caller) -> str:
    """A short, stable fingerprint of the caller's key (its id is not written into cursors)."""
    return hashlib.sha256(caller.client_id.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where the next page of list `list_name` starts: after `after` (the last item's sort
    key, JSON values), for `query` (the list's filters), judged at `at` (None: not judged)."""

    list_name: str
    key: str
    query: Mapping[str, Any]
    after: tuple[Any, ...]
    at: dt.datetime | None = None

    def encode(self) -> str:
        """The cursor as the API answers it: url-safe text without padding."""
        body = {
            "v": CURSOR_FORMAT,
            "list": self.list_name,
            "key": self.key,
            "query": dict(self.query),
            "after": list(self.after),
            "at": None if self.at is None else self.at.isoformat(),
        }
        text = json.dumps(
            body, separators=(",", ":"), sort_keys=True, allow_nan=False, ensure_ascii=False
        )
        return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def read_cursor(text: str, list_name: str, caller: Caller) -> PageCursor:
    """The cursor `text` for list `list_name` and this caller; `InputError` (field `cursor`)
    when it cannot be read, or was given for another list or to another key."""
    body = _decoded(text)
    if body.get("list") != list_name:
        # The cursor's own text is not echoed: it may not be storable (a lone surrogate).
        raise InputError(f"this cursor pages another list, not {list_name}", field=CURSOR_FIELD)
    if body.get("key") != key_fingerprint(caller):
        raise InputError(
            "this cursor was given to another API key: page with the cursors of your own "
            "answers, or start again without one",
            field=CURSOR_FIELD,
        )
    query, after, at = body.get("query"), body.get("after"), body.get("at")
    if not isinstance(query, dict) or not isinstance(after, list):
        raise _unreadable()
    return PageCursor(list_name, body["key"], query, tuple(after), _moment(at))


def at_risk_fields(query: AtRiskQuery) -> dict[str, Any]:
    """The filters of a call list, as its cursor keeps them (`within` in seconds)."""
    return {
        "min_probability": query.min_probability,
        "within_seconds": query.within.total_seconds(),
        "store": query.store,
    }


def judged_at(cursor: PageCursor, now_utc: dt.datetime, skew: dt.timedelta) -> dt.datetime:
    """The moment a call list's cursor judges its pages at; `InputError` on `cursor` when it
    holds none, or one ahead of `now_utc` (by more than `skew`) or older than MAX_CURSOR_AGE."""
    at = cursor.at
    if at is None or at > now_utc + skew:
        raise _unreadable()
    if at < now_utc - MAX_CURSOR_AGE:
        raise InputError(
            f"this cursor pages the call list as of {at.isoformat(timespec='seconds')}, more "
            f"than {MAX_CURSOR_AGE.total_seconds() / 3600:g} hours ago: start again without one",
            field=CURSOR_FIELD,
        )
    return at


def at_risk_filters(cursor: PageCursor) -> tuple[float, dt.timedelta, str | None]:
    """The filters a call list's cursor keeps: min_probability, within and store."""
    query = cursor.query
    store = query.get("store")
    if store is not None:
        store = _text(store)
    within = _number(query.get("within_seconds"))
    min_probability = _number(query.get("min_probability"))
    if not 0.0 <= min_probability <= 1.0:
        raise _unreadable()
    try:
        return min_probability, dt.timedelta(seconds=within), store
    except OverflowError as err:
        raise _unreadable() from err


def call_order(item: tuple[StoredQuote, OrderRisk]) -> tuple[dt.datetime, float, str]:
    """The call list's sort key: soonest deadline, likelier first, then quote id (unique)."""
    quote, outlook = item
    return (quote.promise.deadline_at, -outlook.probability_late, quote.quote_id)


def risk_cursor_position(key: tuple[dt.datetime, float, str]) -> tuple[Any, ...]:
    """A call-list sort key as a cursor holds it (the probability itself, not its negative)."""
    deadline_at, minus_probability, quote_id = key
    return (deadline_at.isoformat(), -minus_probability, quote_id)


def risk_position(cursor: PageCursor) -> tuple[dt.datetime, float, str]:
    """The call-list sort key a cursor holds; `InputError` when it holds none."""
    deadline_at, probability, quote_id = _position(cursor, 3)
    return (_datetime(deadline_at), -_number(probability), _text(quote_id))


def reference_position(cursor: PageCursor) -> tuple[dt.datetime, str]:
    """The (created_at, quote id) a cursor of the quotes of a reference holds."""
    created_at, quote_id = _position(cursor, 2)
    return (_datetime(created_at), _text(quote_id))


def _position(cursor: PageCursor, size: int) -> tuple[Any, ...]:
    if len(cursor.after) != size:
        raise _unreadable()
    return cursor.after


def _datetime(value: Any) -> dt.datetime:
    moment = _moment(value)
    if moment is None:
        raise _unreadable()
    return moment


def _text(value: Any) -> str:
    if not isinstance(value, str) or not storable_text(value):
        raise _unreadable()
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _unreadable()
    try:
        number = float(value)  # an integer too big for a float overflows
    except OverflowError as err:
        raise _unreadable() from err
    if not math.isfinite(number):
        raise _unreadable()
    return number


def _decoded(text: str) -> dict[str, Any]:
    if len(text) > MAX_CURSOR_CHARS:
        raise _unreadable()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise _unreadable() from err  # RecursionError: JSON nested too deep to read
    if not isinstance(body, dict) or body.get("v") != CURSOR_FORMAT:
        raise _unreadable()
    return body


def _moment(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _unreadable()
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as err:
        raise _unreadable() from err
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _unreadable()
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError as err:
        raise _unreadable() from err


def _unreadable() -> InputError:
    return InputError(
        "this cursor cannot be read: send the `next_cursor` of a previous answer unchanged",
        field=CURSOR_FIELD,
    )
