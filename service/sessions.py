"""Staff sign-in for the web form: a signed session cookie and a CSRF token per session.

Staff sign in once at `/signin` with the staff key; the answer sets `promise_session`, a cookie
signed with itsdangerous (HttpOnly, SameSite=Strict, Secure over HTTPS, 12 hours) holding the
key's id (never the key) and a random CSRF token. Every form POST carries that token in a hidden
field and is refused (403) without it, on top of the same-origin check. A session ends when the
staff key it was made with is removed from the configuration.

The signing secret is `PROMISE_SESSION_SECRET`; without it one is derived from the configured
keys (so all workers agree), or made at random for keys from a file only (sessions then do not
survive a restart, and each worker has its own: set the secret for several workers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from itsdangerous import BadSignature, URLSafeTimedSerializer

from service.auth import OPEN_CALLER, Caller, api_key_header, bearer, identify, presented_key
from service.errors import AccessDenied
from service.ledger import Ledger
from service.settings import HashedKey, Settings

log = logging.getLogger(__name__)

COOKIE = "promise_session"
CSRF_FIELD = "csrf_token"
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in staff member: the key's id and the session's CSRF token."""

    key_id: str
    csrf_token: str


class Sessions:
    """Makes and reads signed session cookies."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self._ledger = ledger
        self._signer = URLSafeTimedSerializer(_secret(settings), salt="promise-staff-session")

    def start(self, response: Response, request: Request, key: HashedKey) -> None:
        """Set a new session cookie for the staff `key` on `response`."""
        value = self._signer.dumps({"k": key.key_id, "c": secrets.token_urlsafe(24)})
        response.set_cookie(
            COOKIE,
            value,
            max_age=MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def read(self, request: Request) -> Session | None:
        """The request's session, or None (no cookie, a forged or expired one)."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        if not (isinstance(data, dict) and isinstance(data.get("k"), str)):
            return None
        token = data.get("c")
        return Session(key_id=data["k"], csrf_token=token) if isinstance(token, str) else None

    def end(self, request: Request, response: Response) -> None:
        """End the request's session: its cookie is deleted on `response`."""
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def require_staff(
    request: Request,
    header_key: Annotated[str | None, Security(api_key_header)] = None,
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Caller:
    """The staff caller of a web page: a staff key in a header, or a signed-in session (kept on
    `request.state.staff_session` for the CSRF check); raises `AccessDenied` (401 / 403)."""
    if request.app.state.settings.is_open:
        return OPEN_CALLER
    presented = presented_key(header_key, bearer_key)
    if presented:
        return identify(request, presented, frozenset({"staff"}), "staff")
    session = request.app.state.sessions.read(request)
    key = None if session is None else request.app.state.keyring.find(session.key_id, "staff")
    if key is None:
        raise AccessDenied(401, "please sign in with the staff key")
    request.state.staff_session = session
    return Caller.of_key(key)


def check_csrf(request: Request, presented: object) -> None:
    """Refuse (403) a form post made with a session cookie but without the session's token."""
    session: Session | None = getattr(request.state, "staff_session", None)
    if session is not None and not csrf_matches(session, presented):
        raise AccessDenied(403, "the form has expired or was not sent from this site; reload it")


def csrf_matches(session: Session, presented: object) -> bool:
    """True when a posted form carries the session's token (compared in constant time)."""
    return isinstance(presented, str) and hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), session.csrf_token.encode("ascii")
    )


def _secret(settings: Settings) -> bytes:
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode("utf-8")
    env_keys = settings.configured_keys()
    if env_keys:
        joined = "\n".join(sorted(key.secret.get_secret_value() for key in env_keys))
        return hashlib.sha256(b"promise-session\n" + joined.encode("utf-8")).digest()
    if not settings.is_open:
        log.warning(
            "auth.session_secret_random",
            extra={"detail": "set PROMISE_SESSION_SECRET so sessions work across workers"},
        )
    return secrets.token_bytes(32)
