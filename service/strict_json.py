"""JSON bodies read strictly: an object that names a key twice is refused, never silently halved.

`json.loads` keeps the last of two equal keys, so `{"order": A, "order": B}` would quote B and a
retry of it would be fingerprinted as B: what the client meant is unknowable. The API's routes
read their bodies with `StrictJsonRoute`, which parses with a hook that raises
`json.JSONDecodeError` at the second occurrence; FastAPI answers that as any malformed body
(422, `invalid_input`, naming the key).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class StrictJsonRequest(Request):
    """A request whose `json()` refuses an object with a duplicate key."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # Bytes, as Starlette's own `json()` passes them (the same encodings and errors).
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_keys)
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route whose body is read by `StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One JSON object's members as a dict; `JSONDecodeError` at a key named twice."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise json.JSONDecodeError(f"duplicate key {key[:100]!r}", "", 0)
        found[key] = value
    return found
