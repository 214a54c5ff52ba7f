"""The error handlers `create_app` installs: every expected failure becomes one `ErrorBody`.

The mapping is drawn in `service.errors`; web pages get the same status as an HTML page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from models.errors import BundleError, InputError, NotFound, PromiseError
from service.errors import AccessDenied, Conflict, InputErrors, Unavailable
from service.schemas import ErrorBody, FieldError

log = logging.getLogger(__name__)

HtmlRenderer = Callable[[Request, int, ErrorBody], Response]


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
        if isinstance(err, InputErrors):
            errors = [FieldError(field=f, message=m) for f, m in err.problems]
            return answer(
                request,
                422,
                ErrorBody(error="invalid_input", message=str(err), field=err.field, errors=errors),
            )
        if isinstance(err, InputError):
            return answer(request, 422, _body("invalid_input", str(err), err.field))
        code = "invalid_bundle" if isinstance(err, BundleError) else "invalid"
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
        code = "unauthorized" if err.status_code == 401 else "forbidden"
        headers = {"WWW-Authenticate": err.challenge} if err.challenge else None
        return answer(request, err.status_code, _body(code, str(err)), headers)

    def on_unavailable(request: Request, err: Exception) -> Response:
        return answer(
            request, 503, _body("unavailable", str(err)), {"Retry-After": str(retry_after_seconds)}
        )

    def on_database_down(request: Request, err: Exception) -> Response:
        if (
            isinstance(err, DBAPIError)
            and not isinstance(err, OperationalError)
            and not (err.connection_invalidated)
        ):
            raise err  # a bug in a query, not an outage
        log.error(
            "ledger.unavailable", extra={"error": type(err).__name__, "path": request.url.path}
        )
        return on_unavailable(
            request, Unavailable("the ledger cannot be reached; nothing was stored, retry later")
        )

    def on_http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
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
        (HTTPException, on_http_error),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, _sync(handler))


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
