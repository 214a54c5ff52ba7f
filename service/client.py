"""A Python client for point-of-sale systems: the retry, idempotency and error handling every
integrator would otherwise write again.

    from service.client import PromiseClient

    with PromiseClient("https://promise.example", key="pos-key-...") as promise:
        quote = promise.create_quote({"store_id": "MAN", ...}, reference="PO-1234")
        promise.record_outcome(quote["quote_id"], fulfilled_at)

- **Retries are safe.** Every request that creates something carries an `Idempotency-Key`
  (a new UUID unless given) and keeps it across retries, so a retry after a lost answer gets
  the stored quote back, never a second one. Connection failures, timeouts, 503 and 429 are
  retried up to `retries` times, waiting what `Retry-After` says (capped) or a growing pause.
- **One exception per error code.** An answer's `error` code picks the exception
  (`NotFound`, `Conflict`, `NoRevisionNeeded`, `InvalidInput` with `field`, ...), all
  `PromiseApiError`; the message is the service's. The codes are those the OpenAPI document
  lists (`x-error-codes`); an unlisted one raises the class of its HTTP status.
- **Lists come a page at a time** (`at_risk`, `find_quotes`: `total`, `count`,
  `next_cursor`); `at_risk_pages` and `quote_pages` follow the cursors to the last page.
- Answers are the JSON bodies the OpenAPI document describes (`/openapi.json`), as dicts.

```
PromiseApiError
├── BadRequest 400      ├── TooLarge 413
├── Unauthorized 401    ├── InvalidInput 422 (`field`, `errors`)
├── Forbidden 403       │   └── InvalidBundle (a reload's bundle cannot be served)
├── NotFound 404        ├── TooManyRequests 429
├── RequestTimeout 408  └── Unavailable 503
└── Conflict 409
    ├── NoRevisionNeeded
    └── ModelUnavailable
```

It needs httpx alone: it uses no other Promise module.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

RETRIED_STATUSES = frozenset({429, 503})
MAX_WAIT_SECONDS = 30.0


class PromiseApiError(Exception):
    """An error answer: its HTTP status, `error` code, message and the field it names."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = list(errors)


class BadRequest(PromiseApiError):
    """400: the body cannot be read."""


class Unauthorized(PromiseApiError):
    """401: no key, or an unknown one."""


class Forbidden(PromiseApiError):
    """403: the key may not do this (its role, or a store it does not act for)."""


class NotFound(PromiseApiError):
    """404: no such quote (or one of a store the key does not act for)."""


class RequestTimeout(PromiseApiError):
    """408: the body did not arrive in time."""


class Conflict(PromiseApiError):
    """409: contradicts what the ledger holds (an outcome recorded differently, a key reused
    for another request, an order revised meanwhile)."""


class NoRevisionNeeded(Conflict):
    """409 `no_revision_needed`: the promise still keeps the target."""


class ModelUnavailable(Conflict):
    """409 `model_unavailable`: the model that quoted the order can no longer be loaded."""


class TooLarge(PromiseApiError):
    """413: the body is over the service's limit."""


class InvalidInput(PromiseApiError):
    """422: invalid input; `field` names it (`errors` lists every bad field of a batch)."""


class InvalidBundle(InvalidInput):
    """422 `invalid_bundle`: a reload's promoted bundle cannot be served (the old one serves)."""


class TooManyRequests(PromiseApiError):
    """429: too many failed keys from this address."""


class Unavailable(PromiseApiError):
    """503: no model loaded, or the ledger cannot take the request now."""


ERRORS: Mapping[str, type[PromiseApiError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "timeout": RequestTimeout,
    "conflict": Conflict,
    "no_revision_needed": NoRevisionNeeded,
    "model_unavailable": ModelUnavailable,
    "too_large": TooLarge,
    "invalid_input": InvalidInput,
    "invalid_bundle": InvalidBundle,
    "too_many_requests": TooManyRequests,
    "unavailable": Unavailable,
}
BY_STATUS: Mapping[int, type[PromiseApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    413: TooLarge,
    422: InvalidInput,
    429: TooManyRequests,
    503: Unavailable,
}


class PromiseClient:
    """The Promise API over one httpx client (pass `http` to reuse one, e.g. in tests)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        key: str | None = None,
        *,
        http: httpx.Client | None = None,
        retries: int = 3,
        timeout_seconds: float = 10.0,
        backoff_seconds: float = 0.5,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._owned = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_seconds)
        self._headers = headers
        self.retries = retries
        self.backoff_seconds = backoff_seconds

    def __enter__(self) -> PromiseClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    # --- quotes ---------------------------------------------------------------------------

    def create_quote(
        self,
        order: Mapping[str, Any],
        *,
        ordered_at: dt.datetime | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Quote one order (stored before it is answered); a retry gets the same quote."""
        body = _request_body(order, ordered_at, reference)
        return self._send("POST", "/v1/quotes", body, idempotency_key or _new_key())

    def create_quotes(
        self,
        orders: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Quote many orders at once, all or none: `orders` are request bodies
        (`{"order": {...}, "ordered_at": ..., "reference": ...}`) or plain feature mappings."""
        bodies = [dict(o) if "order" in o else {"order": dict(o)} for o in orders]
        answer = self._send(
            "POST", "/v1/quotes/batch", {"orders": bodies}, idempotency_key or _new_key()
        )
        quotes: list[dict[str, Any]] = answer["quotes"]
        return quotes

    def get_quote(self, quote_id: str) -> dict[str, Any]:
        return self._send("GET", f"/v1/quotes/{quote_id}")

    def find_quotes(
        self, reference: str | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """A page of the quotes given for your own order `reference`, newest first (`total`,
        `count`, `quotes`, `next_cursor`); pass a page's `next_cursor` for the next one."""
        params: dict[str, Any] = {"limit": limit}
        if reference is not None:
            params["reference"] = reference
        if cursor is not None:
            params["cursor"] = cursor
        return self._send("GET", "/v1/quotes", params=params)

    def quote_pages(self, reference: str, *, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every page of `find_quotes(reference)`, to the last."""
        page = self.find_quotes(reference, limit=limit)
        yield page
        while page["next_cursor"] is not None:
            page = self.find_quotes(cursor=page["next_cursor"], limit=limit)
            yield page

    # --- outcomes -------------------------------------------------------------------------

    def record_outcome(self, quote_id: str, fulfilled_at: dt.datetime) -> dict[str, Any]:
        """Record when the order was fulfilled (the same outcome again is answered as it was)."""
        body = {"fulfilled_at": _aware(fulfilled_at).isoformat()}
        return self._send("POST", f"/v1/quotes/{quote_id}/outcome", body)

    def correct_outcome(
        self, quote_id: str, fulfilled_at: dt.datetime, reason: str
    ) -> dict[str, Any]:
        """Correct a recorded outcome, with the reason the ledger keeps."""
        body = {"fulfilled_at": _aware(fulfilled_at).isoformat(), "reason": reason}
        return self._send("PUT", f"/v1/quotes/{quote_id}/outcome", body)

    def get_outcome(self, quote_id: str) -> dict[str, Any]:
        return self._send("GET", f"/v1/quotes/{quote_id}/outcome")

    # --- orders at risk -------------------------------------------------------------------

    def get_risk(self, quote_id: str) -> dict[str, Any]:
        return self._send("GET", f"/v1/quotes/{quote_id}/risk")

    def at_risk(
        self,
        *,
        min_probability: float | None = None,
        within: dt.timedelta | None = None,
        store: str | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """A page of the call list: open orders likely to break their promise, soonest first
        (`total`, `count`, `orders`, `next_cursor`); a cursor keeps the first page's filters."""
        params: dict[str, Any] = {"limit": limit}
        if min_probability is not None:
            params["min_probability"] = min_probability
        if within is not None:
            params["within"] = _iso_duration(within)
        if store is not None:
            params["store"] = store
        if cursor is not None:
            params["cursor"] = cursor
        return self._send("GET", "/v1/at-risk", params=params)

    def at_risk_pages(
        self,
        *,
        min_probability: float | None = None,
        within: dt.timedelta | None = None,
        store: str | None = None,
        limit: int = 200,
    ) -> Iterator[dict[str, Any]]:
        """Every page of the call list, to the last (all judged at the first page's moment)."""
        page = self.at_risk(
            min_probability=min_probability, within=within, store=store, limit=limit
        )
        yield page
        while page["next_cursor"] is not None:
            page = self.at_risk(cursor=page["next_cursor"], limit=limit)
            yield page

    def revise(self, quote_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Give the order its honest new promise (`NoRevisionNeeded` while it keeps)."""
        return self._send(
            "POST", f"/v1/quotes/{quote_id}/revise", None, idempotency_key or _new_key()
        )

    def record_contact(self, quote_id: str, note: str | None = None) -> dict[str, Any]:
        return self._send("POST", f"/v1/quotes/{quote_id}/contacts", {"note": note})

    # --- reports --------------------------------------------------------------------------

    def performance(
        self, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, Any]:
        params = {
            name: _aware(value).isoformat()
            for name, value in (("since", since), ("until", until))
            if value is not None
        }
        return self._send("GET", "/v1/performance", params=params)

    def model(self) -> dict[str, Any]:
        return self._send("GET", "/v1/model")

    def reload_model(self, *, force: bool = False) -> dict[str, Any]:
        """Serve the promoted model (an admin key); `force` even one taking other orders."""
        return self._send("POST", "/v1/model/reload", params={"force": str(force).lower()})

    # --- the one way every request goes -----------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        idempotency_key: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=body if body is not None else None,
                    params=params,
                    headers=headers,
                )
            except (httpx.TransportError, httpx.TimeoutException):
                if attempt >= self.retries:
                    raise
                self._pause(attempt, None)
                attempt += 1
                continue
            if response.status_code in RETRIED_STATUSES and attempt < self.retries:
                self._pause(attempt, response.headers.get("Retry-After"))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise error_of(response)
            answer: dict[str, Any] = response.json()
            return answer

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        wait = self.backoff_seconds * 2**attempt
        if retry_after is not None and retry_after.strip().isdigit():
            wait = float(retry_after)
        time.sleep(min(wait, MAX_WAIT_SECONDS))


def error_of(response: httpx.Response) -> PromiseApiError:
    """The exception an error answer stands for (by its `error` code, else its status)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or "")
    kind = ERRORS.get(code) or BY_STATUS.get(response.status_code, PromiseApiError)
    return kind(
        response.status_code,
        code or f"http_{response.status_code}",
        str(body.get("message") or response.text[:200]),
        body.get("field"),
        body.get("errors") or (),
    )


def _request_body(
    order: Mapping[str, Any], ordered_at: dt.datetime | None, reference: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"order": dict(order)}
    if ordered_at is not None:
        body["ordered_at"] = _aware(ordered_at).isoformat()
    if reference is not None:
        body["reference"] = reference
    return body


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone: give an aware datetime")
    return at


def _iso_duration(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86_400)
    return f"P{days}DT{rest}S" if rest else f"P{days}D"


def _new_key() -> str:
    return str(uuid.uuid4())
