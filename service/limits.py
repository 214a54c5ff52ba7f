"""Request body limits: 413 before parsing, whether the size is declared or streamed, and 408
for a body that does not arrive in time (a client trickling bytes holds a worker's request)."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import send_error

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised while reading a body that grew past the limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: refuse a declared Content-Length over `max_bytes` at once, and stop
    reading a streamed body as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            message = (
                f"the request body is larger than {self.max_bytes} bytes"
                if status == 413
                else "Content-Length is not a number"
            )
            code = "too_large" if status == 413 else "bad_request"
            await send_error(send, status, code, message, close_connection=True)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class BodyReadTimeout(HTTPException):
    """Raised to the app when the body did not arrive in time (the client got a 408)."""

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(408, _too_slow(timeout_seconds), headers={"Connection": "close"})


class BodyTimeout:
    """ASGI middleware: the whole request body must arrive within `timeout_seconds` of the
    request's headers. When it does not, the client is answered 408 (an `ErrorBody`, then the
    connection is closed), the app's next read of the body raises `BodyReadTimeout`, and
    whatever the app answers after that is dropped. A request whose body the app never reads
    is not timed; nor is the wait for a disconnect once the body is in."""

    def __init__(self, app: ASGIApp, timeout_seconds: float) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_seconds
        body_done = timed_out = started = False

        async def timed() -> Message:
            nonlocal body_done, timed_out, started
            if body_done:
                return await receive()
            if timed_out:
                raise BodyReadTimeout(self.timeout_seconds)
            try:
                # asyncio's own timeout (one timer handle), not anyio's cancel scope: this runs
                # for every request with a body, and the scope cost 3% of a quote's CPU.
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                client = scope.get("client")
                log.warning(
                    "request.body_timeout",
                    extra={
                        "path": str(scope.get("path", ""))[:200],
                        "client": client[0] if client else None,
                        "timeout_seconds": self.timeout_seconds,
                    },
                )
                if not started:
                    started = True
                    await send_error(
                        send, 408, "timeout", _too_slow(self.timeout_seconds), close_connection=True
                    )
                raise BodyReadTimeout(self.timeout_seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the client was answered 408 already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed, guarded)
        except BodyReadTimeout:
            if not timed_out:
                raise
            # Answered already: the app let the timeout through instead of answering it.


def _too_slow(timeout_seconds: float) -> str:
    return f"the request body did not arrive within {timeout_seconds:g} seconds"
