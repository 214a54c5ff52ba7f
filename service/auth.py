"""Who may call what: API keys by role, compared in constant time.

| caller                      | quotes, outcomes | performance, model | reload | web form |
|-----------------------------|------------------|--------------------|--------|----------|
| point-of-sale key (`pos`)   | yes              | yes                | 403    | 403      |
| staff key                   | yes              | yes                | 403    | yes      |
| admin key                   | 403              | yes                | yes    | 403      |
| no key / unknown key        | 401              | 401                | 401    | 401      |

`/healthz`, `/readyz` and `/metrics` are open. A key comes as `Authorization: Bearer KEY`,
`X-API-Key: KEY`, or (web form, so a browser can ask for it) HTTP Basic with the key as the
password. With no key configured at all the service is open, but only to loopback clients
(`LoopbackOnly`), and says so loudly at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import AccessDenied
from service.settings import ApiKey, Role, Settings

OPEN_CLIENT = "open"
BASIC_CHALLENGE = 'Basic realm="Promise staff", charset="UTF-8"'

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="An API key in the X-API-Key header.",
)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    description="An API key as `Authorization: Bearer KEY`.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a role (None when the service runs open) and a stable client id."""

    role: Role | None
    client_id: str


class KeyRing:
    """The configured keys; `identify` compares a presented key with all of them."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = [(_digest(key.secret.get_secret_value()), key) for key in keys]

    def identify(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, or None; the time taken does not depend on which."""
        digest = _digest(presented)
        match = None
        for stored, key in self._keys:
            if hmac.compare_digest(digest, stored):
                match = key
        return match


def _digest(text: str) -> bytes:
    # Equal-length digests: compare_digest then leaks neither content nor length.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def require(*roles: Role, challenge: str | None = None) -> Callable[..., Caller]:
    """A dependency that returns the `Caller`, or raises `AccessDenied` (401 / 403)."""
    allowed = frozenset(roles)
    needed = " or ".join(roles)

    def check(
        request: Request,
        header_key: Annotated[str | None, Security(api_key_header)] = None,
        bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> Caller:
        settings: Settings = request.app.state.settings
        if settings.is_open:
            return Caller(role=None, client_id=OPEN_CLIENT)
        from_bearer = bearer_key.credentials if bearer_key is not None else None
        if from_bearer and header_key and from_bearer != header_key:
            raise AccessDenied(
                401,
                "two different keys were sent (Authorization and X-API-Key): send one",
                challenge,
            )
        presented = from_bearer or header_key or (_basic_password(request) if challenge else None)
        if not presented:
            raise AccessDenied(
                401,
                "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                challenge,
            )
        key: ApiKey | None = request.app.state.keyring.identify(presented)
        if key is None:
            raise AccessDenied(401, "the API key is not valid", challenge)
        if key.role not in allowed:
            raise AccessDenied(403, f"a {key.role} key cannot do this; it needs a {needed} key")
        return Caller(role=key.role, client_id=key.key_id)

    return check


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and a Unix socket, which has no address)."""
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackOnly:
    """ASGI middleware for open mode: refuse every client that is not on this machine."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if not is_loopback(client[0] if client else None):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send) -> None:
    message = (
        "this service runs without API keys and answers loopback clients only; "
        "set PROMISE_API_KEYS, PROMISE_STAFF_KEY and PROMISE_ADMIN_KEY"
    )
    body = json.dumps(
        {
            "error": "forbidden",
            "message": message,
            "field": None,
            "errors": [{"field": None, "message": message}],
        }
    ).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
