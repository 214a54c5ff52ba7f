"""The service's own errors, and how every error becomes one answer.

```
PromiseError (models.errors)      -> 4xx, the user can fix it
├── InputError                    -> 422 with `field`
│   └── InputErrors (here)        -> 422 with one entry per bad field (a batch)
├── NotFound                      -> 404
├── Conflict (here)               -> 409: an outcome or Idempotency-Key already used differently,
│                                      an order already fulfilled or revised meanwhile
├── NoRiskModel                   -> 409: the served model keeps no open-order risks
└── SpecError, BundleError        -> 422
AccessDenied (here)               -> 401 without a key, 403 with the wrong one
└── Throttled (here)              -> 429 + Retry-After: too many failed keys from one address
Unavailable (here)                -> 503 + Retry-After: no model loaded, ledger unreachable
RequestValidationError (FastAPI)  -> 422, same shape
HTTPException (Starlette)         -> its status (404 route, 405, 408 body too slow, 413 body
                                     too large), same shape
sqlalchemy OperationalError       -> 503 + Retry-After: nothing was stored; the message says
  (and DBAPIError, pool timeout,     what is wrong (`service.health`): the disk is full, the
   OSError ENOSPC / EROFS)           database is read-only, cannot be reached, is busy
```

Every error body is `ErrorBody`: `{"error": code, "message": text, "field": name|null,
"errors": [{"field", "message"}]}`; `install_error_handlers` registers the handlers `create_app`
uses. Web pages get the same status with an HTML page instead. Routes hold no `try`; anything
else is a bug and propagates (a 500).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import Send

from models.errors import BundleError, InputError, NoRiskModel, NotFound, PromiseError
from service.health import FailureKind, classify

log = logging.getLogger(__name__)


class Conflict(PromiseError):
    """The request contradicts what the ledger already holds (answered 409)."""

    code = "conflict"


class InputErrors(InputError):
    """Several bad fields at once (a batch); `field` is the first one's."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        first_field, first_message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first_field}: {first_message}{more}", field=first_field)
        self.problems = list(problems)


class AccessDenied(Exception):
    """No key (401) or a key without the needed role (403)."""

    def __init__(self, status_code: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.challenge = challenge


class Throttled(AccessDenied):
    """Too many failed authentications from one client address (answered 429); retry after
    `retry_after_seconds`."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(429, message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(Exception):
    """The service cannot answer now (no model loaded, ledger down); retry later."""


class FieldError(BaseModel):
    """One problem: the field it is in (dotted JSON path) and what is wrong."""

    field: str | None
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a code, a sentence, the first bad field, and all problems."""

    error: str = Field(examples=["invalid_input"])
    message: str
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


HtmlRenderer = Callable[[Request, int, ErrorBody], Response]


async def send_error(
    send: Send, status: int, code: str, message: str, *, close_connection: bool = False
) -> None:
    """Answer with an `ErrorBody` straight from ASGI middleware, where the app's handlers do
    not reach (a refused client, a body too large)."""
    body = json.dumps(_body(code, message).model_dump(mode="json")).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    if close_connection:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(
    app: FastAPI, retry_after_seconds: int, render_html: HtmlRenderer
) -> None:
    """Register the handlers that turn every expected failure into `ErrorBody` (or HTML)."""

    def answer(
        request: Request, status: int, body: ErrorBody, headers: dict[str, str] | None = None
    ) -> Response:
        if _wants_html(request):
            response = render_html(request, status, body)
            response.headers.update(headers or {})
            return response
        return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)

    def on_promise_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, PromiseError)
        if isinstance(err, NotFound):
            return answer(request, 404, _body("not_found", str(err)))
        if isinstance(err, Conflict):
            return answer(request, 409, _body(err.code, str(err)))
        if isinstance(err, NoRiskModel):
            return answer(request, 409, _body(Conflict.code, str(err)))
        if isinstance(err, InputErrors):
            errors = [FieldError(field=f, message=m) for f, m in err.problems]
            return answer(
                request,
                422,
                ErrorBody(error="invalid_input", message=str(err), field=err.field, errors=errors),
            )
        if isinstance(err, InputError):
            return answer(request, 422, _body("invalid_input", str(err), err.field))
        code = "invalid_bundle" if isinstance(err, BundleError) else "invalid_input"
        return answer(request, 422, _body(code, str(err)))

    def on_validation_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError)
        errors = [_field_error(item) for item in err.errors()]
        if not errors:
            errors = [FieldError(field=None, message="the request is invalid")]
        first = errors[0]
        where = f"{first.field}: " if first.field else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return answer(
            request,
            422,
            ErrorBody(
                error="invalid_input",
                message=f"{where}{first.message}{more}",
                field=first.field,
                errors=errors,
            ),
        )

    def on_access_denied(request: Request, err: Exception) -> Response:
        assert isinstance(err, AccessDenied)
        if isinstance(err, Throttled):
            retry = {"Retry-After": str(err.retry_after_seconds)}
            return answer(request, 429, _body("too_many_requests", str(err)), retry)
        code = "unauthorized" if err.status_code == 401 else "forbidden"
        headers = {"WWW-Authenticate": err.challenge} if err.challenge else None
        return answer(request, err.status_code, _body(code, str(err)), headers)

    def on_unavailable(request: Request, err: Exception) -> Response:
        return answer(
            request, 503, _body("unavailable", str(err)), {"Retry-After": str(retry_after_seconds)}
        )

    def on_database_down(request: Request, err: Exception) -> Response:
        kind = classify(err)
        if kind is None:
            raise err  # a bug in a query (or a file), not an outage of the storage
        log.error(
            "ledger.unavailable",
            extra={"error": type(err).__name__, "kind": kind, "path": request.url.path},
        )
        return on_unavailable(request, Unavailable(_OUTAGES[kind]))

    def on_http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        codes = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            408: "timeout",
            413: "too_large",
        }
        message = str(err.detail) if err.detail else "error"
        if err.status_code == 404 and message == "Not Found":
            message = f"no such page: {request.url.path}"
        return answer(
            request,
            err.status_code,
            _body(codes.get(err.status_code, "http_error"), message),
            dict(err.headers) if err.headers else None,
        )

    handlers: list[tuple[type[Exception], Callable[[Request, Exception], Any]]] = [
        (PromiseError, on_promise_error),
        (RequestValidationError, on_validation_error),
        (AccessDenied, on_access_denied),
        (Unavailable, on_unavailable),
        (OperationalError, on_database_down),
        (DBAPIError, on_database_down),
        (PoolTimeout, on_database_down),
        (OSError, on_database_down),  # only ENOSPC / EROFS: anything else is re-raised
        (HTTPException, on_http_error),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, _sync(handler))


_NOTHING_STORED = "nothing was stored, retry later"
_OUTAGES: dict[FailureKind, str] = {
    "disk_full": f"the ledger cannot write: the disk is full; {_NOTHING_STORED}",
    "read_only": f"the ledger cannot write: the database is read-only; {_NOTHING_STORED}",
    "unreachable": f"the ledger cannot be reached; {_NOTHING_STORED}",
    "busy": "the ledger is busy (a lock or every connection was held too long); " + _NOTHING_STORED,
    "other": f"the ledger failed to answer; {_NOTHING_STORED}",
}


def _sync(
    handler: Callable[[Request, Exception], Response],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def run(request: Request, err: Exception) -> Response:
        return handler(request, err)

    return run


def _body(code: str, message: str, field: str | None = None) -> ErrorBody:
    return ErrorBody(
        error=code, message=message, field=field, errors=[FieldError(field=field, message=message)]
    )


def _field_error(item: Any) -> FieldError:
    loc = [part for part in item.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = _dotted(loc) or None
    message = str(item.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if item.get("type") == "missing":
        message = "this field is required"
    elif item.get("type") == "json_invalid":
        ctx = item.get("ctx") or {}
        field = None
        message = f"the body is not valid JSON: {ctx.get('error', 'decode error')}"
    return FieldError(field=field, message=message)


def _dotted(loc: Sequence[object]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith(("/v1", "/healthz", "/readyz", "/metrics", "/docs", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")
