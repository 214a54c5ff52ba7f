"""Who may call what: API keys by role, compared in constant time.

| caller                | quotes, outcomes | performance, model | reload | web form | /metrics |
|-----------------------|------------------|--------------------|--------|----------|----------|
| point of sale (`pos`) | yes              | yes                | 403    | 403      | 403      |
| staff key             | yes              | yes                | 403    | yes      | 403      |
| admin key             | 403              | yes                | yes    | 403      | yes      |
| metrics key           | 403              | 403                | 403    | 403      | yes      |
| no key / unknown key  | 401              | 401                | 401    | 401      | 401      |
| too many unknown keys | 429              | 429                | 429    | 429      | 429      |

`/healthz` and `/readyz` are open; so is `/metrics` in open mode (it shows per-store figures, so
with keys configured it needs a metrics or admin key). A key comes as `Authorization: Bearer KEY`
or `X-API-Key: KEY`; staff at a browser sign in once at `/signin` and carry a session cookie
instead (`service.sessions`; never HTTP Basic, which a browser would replay for any site's
form). Keys are held as sha256 digests only (`PROMISE_KEYS_FILE` holds nothing else).
With no key configured at all the service is open, but only to this machine (`LoopbackOnly`:
loopback clients, a loopback `Host`, no write from another site), and says so loudly at start.

Failed keys are counted per client address (`service.throttle`): after
`PROMISE_AUTH_FAILURES_ALLOWED` unknown keys or failed sign-ins within
`PROMISE_AUTH_FAILURE_WINDOW_SECONDS`, every key that address presents, a correct one too, is
answered 429 with Retry-After until the window ends. A request carrying no key, or a session
cookie, is not an attempt and is never throttled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import AccessDenied, Throttled, send_error
from service.keyring import KeyRing
from service.settings import HashedKey, Role, Settings, Stores
from service.throttle import AuthThrottle

OPEN_CLIENT = "open"
# The attribute of an access-check dependency naming the roles it admits (`service.openapi`
# documents each operation's from it).
ROLES_ATTRIBUTE = "promise_roles"

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
    """Who is calling: a role (None when the service runs open), a stable client id (the key's
    id), who holds the key (`name`, what contacts and revisions record) and the stores it may
    act for (`stores`, None: every store)."""

    role: Role | None
    client_id: str
    name: str
    stores: Stores = None

    @classmethod
    def of_key(cls, key: HashedKey) -> Caller:
        return cls(role=key.role, client_id=key.key_id, name=key.name, stores=key.stores)

    def allows(self, store: str | None) -> bool:
        """True when this caller may act for `store` (an order naming no store: all-stores
        callers only)."""
        return self.stores is None or (store is not None and store in self.stores)


OPEN_CALLER = Caller(role=None, client_id=OPEN_CLIENT, name="this machine")


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency that returns the `Caller`, or raises `AccessDenied` (401 / 403)."""
    allowed = frozenset(roles)
    needed = " or ".join(roles)

    # Async: a key is checked on the event loop (a digest, a compare), not by a thread hop;
    # only the look-up that re-reads the keys file (at most once a second) goes to a thread.
    async def check(
        request: Request,
        header_key: Annotated[str | None, Security(api_key_header)] = None,
        bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> Caller:
        settings: Settings = request.app.state.settings
        if settings.is_open:
            return OPEN_CALLER
        presented = presented_key(header_key, bearer_key)
        if not presented:
            raise AccessDenied(
                401, "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            )
        keyring: KeyRing = request.app.state.keyring
        if keyring.is_due():
            await run_in_threadpool(keyring.refresh)
        return identify(request, presented, allowed, needed)

    setattr(check, ROLES_ATTRIBUTE, roles)
    return check


def presented_key(
    header_key: str | None, bearer_key: HTTPAuthorizationCredentials | None
) -> str | None:
    """The key sent in a header, if any; raises `AccessDenied` for two different ones."""
    from_bearer = bearer_key.credentials if bearer_key is not None else None
    if from_bearer and header_key and from_bearer != header_key:
        raise AccessDenied(
            401, "two different keys were sent (Authorization and X-API-Key): send one"
        )
    return from_bearer or header_key or None


def identify(request: Request, presented: str, allowed: frozenset[Role], needed: str) -> Caller:
    """The caller a presented key makes; raises `AccessDenied` for an unknown or wrong key, and
    `Throttled` (429) while the client's address has failed too often."""
    keyring: KeyRing = request.app.state.keyring
    host = _client_host(request)
    _refuse_when_throttled(request, host)
    key = keyring.identify(presented)
    if key is None:
        _throttle(request).failed(host)
        raise AccessDenied(401, "the API key is not valid")
    if key.role not in allowed:
        raise AccessDenied(403, f"a {key.role} key cannot do this; it needs a {needed} key")
    return Caller.of_key(key)


def sign_in_key(request: Request, presented: str) -> HashedKey | None:
    """The staff key a sign-in form presents, or None for any other text (counted as a failed
    attempt unless blank); raises `Throttled` (429) while the address has failed too often."""
    host = _client_host(request)
    _refuse_when_throttled(request, host)
    keyring: KeyRing = request.app.state.keyring
    key = keyring.identify(presented)
    if key is not None and key.role == "staff":
        return key
    if presented.strip():
        _throttle(request).failed(host)
    return None


def _throttle(request: Request) -> AuthThrottle:
    throttle: AuthThrottle = request.app.state.throttle
    return throttle


def _client_host(request: Request) -> str | None:
    # The direct peer, never X-Forwarded-For (see `service.throttle`).
    return request.client.host if request.client is not None else None


def _refuse_when_throttled(request: Request, host: str | None) -> None:
    seconds = _throttle(request).retry_after(host)
    if seconds is not None:
        raise Throttled(
            f"too many failed keys from this address; try again in {seconds} seconds",
            seconds,
        )


@lru_cache(maxsize=4096)  # a client's address repeats from request to request
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and a Unix socket, which has no address)."""
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What a browser may send without asking: a page on another site can make these too, but
# their answers never reach it, and none of them changes anything here.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_READ_HEADERS = frozenset({b"host", b"origin", b"sec-fetch-site"})


class LoopbackOnly:
    """ASGI middleware for open mode: this machine only, in every sense.

    A client not on loopback is refused; so is a request whose `Host` is not `localhost`,
    `127.0.0.1` or `[::1]` (a web page reaching the service through a DNS name rebound to
    127.0.0.1), and a write that a browser marks as coming from another site (`Origin` not on
    loopback, or `Sec-Fetch-Site: cross-site`): any page the user opens could send one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _open_mode_problem(scope)
            if problem is not None:
                await send_error(send, 403, "forbidden", f"{problem}; {_OPEN_MODE_ADVICE}")
                return
        await self.app(scope, receive, send)


_OPEN_MODE_ADVICE = (
    "this service runs without API keys and answers loopback clients only; "
    "set PROMISE_API_KEYS, PROMISE_STAFF_KEY and PROMISE_ADMIN_KEY"
)


def _open_mode_problem(scope: Scope) -> str | None:
    """Why open mode refuses this request, or None."""
    client = scope.get("client")
    if not is_loopback(client[0] if client else None):
        return "the client is not on loopback"
    # Only the three headers read, each decoded once (the last one sent wins, as in a dict).
    wanted: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        key = name.lower()
        if key in _READ_HEADERS:
            wanted[key] = value.decode("latin-1")
    host = wanted.get(b"host", "")
    if _host_name(host) not in _LOOPBACK_NAMES:
        return f"Host {host[:100]!r} is not localhost, 127.0.0.1 or [::1]"
    if scope["method"] in _SAFE_METHODS:
        return None
    if wanted.get(b"sec-fetch-site", "").lower() == "cross-site":
        return "a write from another site (Sec-Fetch-Site: cross-site) is refused"
    origin = wanted.get(b"origin")
    if origin is not None and _origin_name(origin) not in _LOOPBACK_NAMES:
        return f"a write from another site (Origin {origin[:100]!r}) is refused"
    return None


def _host_name(host: str) -> str:
    """The name in a `Host` header, without its port (`[::1]:8000` -> `::1`)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_name(origin: str) -> str | None:
    """The host of an `Origin` header (None for `null` or anything unreadable)."""
    try:
        return urlsplit(origin.strip()).hostname
    except ValueError:
        return None
