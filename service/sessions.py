"""Staff sign-in for the web form: server-side sessions that sign-out, idleness, age and key
removal end at once on every worker, and a CSRF token per session.

Staff sign in once at `/signin` with their staff key (a named account of the keys file, see
`service.keyring`). Signing in makes a random 256-bit token, stores only its sha256 in the
ledger's `staff_sessions` table (with the key's id, never the key) and sets `promise_session`:
the token signed with itsdangerous (HttpOnly, SameSite=Strict, Secure over HTTPS, expiring with
the session's lifetime). The signature lets a worker refuse a forged cookie without a query;
the row is what makes the session real. Every request with the cookie reads that row (one
primary-key read) and is refused (401: the sign-in page on a page, JSON for API callers) when
the session is unknown, has ended, was idle longer than `PROMISE_SESSION_IDLE_MINUTES`, is older
than `PROMISE_SESSION_LIFETIME_HOURS`, or when its staff key is no longer configured (removed
from the keys file, or rotated to a new hash). Those last three end the row when seen
(`ended_reason` idle, expired, key_removed); `POST /signout` ends it as `signed_out`. All workers
share the ledger, so a session ended by one is refused by all of them at once. While the ledger
cannot be reached the check answers 503 (retry), never 401. `last_seen_at` is written at most
once a minute per session (more often only when the idle timeout is under four minutes), not on
every request, so the idle timeout holds to within a minute.

The CSRF token is derived from the session's token, HMAC-SHA256 keyed with the token: it is the
same on every worker without being stored, dies with the session, and a token leaked from a
page reveals neither the session's token nor the digest the ledger keeps. Every form POST
carries it in a hidden field and is refused (403) without it, on top of the same-origin check.

The cookie's signing secret is `PROMISE_SESSION_SECRET`; without it one is derived from the
environment's keys (so all workers agree), or made at random when keys come from the file only
(each worker then refuses the others' cookies: set the secret for several workers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from itsdangerous import BadSignature, URLSafeTimedSerializer

from service.auth import (
    OPEN_CALLER,
    ROLES_ATTRIBUTE,
    Caller,
    api_key_header,
    bearer,
    identify,
    presented_key,
)
from service.errors import AccessDenied
from service.keyring import KeyRing
from service.ledger import Ledger
from service.ledger.sessions import EndReason, StaffSession
from service.settings import HashedKey, Settings

log = logging.getLogger(__name__)

COOKIE = "promise_session"
CSRF_FIELD = "csrf_token"
TOKEN_BYTES = 32
# `last_seen_at` is written at most this often per session (a write per request would make
# every page view a ledger write).
TOUCH_EVERY = dt.timedelta(minutes=1)
SIGN_IN_AGAIN = "your session has ended; please sign in again with your staff key"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in staff member: the staff key (named account) the session was made with, the
    session's CSRF token, and the digest of its token (what the ledger knows it by)."""

    key: HashedKey
    csrf_token: str
    token_sha256: str

    @property
    def key_id(self) -> str:
        return self.key.key_id

    @property
    def name(self) -> str:
        """Who is signed in ("Ann Lee")."""
        return self.key.name


class Sessions:
    """Starts, checks and ends staff sessions kept in the ledger."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self._ledger = ledger
        self._signer = URLSafeTimedSerializer(_secret(settings), salt="promise-staff-session")
        self._idle = dt.timedelta(minutes=settings.session_idle_minutes)
        self._lifetime = dt.timedelta(hours=settings.session_lifetime_hours)
        self._touch_every = min(TOUCH_EVERY, self._idle / 4)
        self._cookie_seconds = math.ceil(self._lifetime.total_seconds())  # never 0: "delete"

    def start(
        self,
        response: Response,
        request: Request,
        key: HashedKey,
        now_utc: dt.datetime | None = None,
    ) -> Session:
        """Record a new session for the staff `key` and set its cookie on `response` (a ledger
        write: call it from a worker thread)."""
        token, session = self.open(key, now_utc or _now())
        response.set_cookie(
            COOKIE,
            self._signer.dumps({"t": token}),
            max_age=self._cookie_seconds,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return session

    def open(self, key: HashedKey, now_utc: dt.datetime) -> tuple[str, Session]:
        """A new session for the staff `key`: its token (what the cookie carries) and itself."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._ledger.ensure_migrated()
        self._ledger.sessions.start(_digest(token), key.key_id, now_utc)
        log.info("session.started", extra={"key_id": key.key_id})
        return token, _session(token, key)

    def token(self, request: Request) -> str | None:
        """The session token the request's cookie carries, or None (no cookie, a forged one, or
        one past the session's lifetime)."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=self._cookie_seconds + 1)
        except BadSignature:
            return None
        token = data.get("t") if isinstance(data, dict) else None
        return token if isinstance(token, str) and token else None

    def resume(self, token: str, keyring: KeyRing, now_utc: dt.datetime) -> Session:
        """The open session of `token`; raises `AccessDenied` (401) when there is none, and
        ends one seen too old, idle or with its key gone. A SQLAlchemy error (answered 503)
        while the ledger cannot be reached."""
        digest = _digest(token)
        self._ledger.ensure_migrated()
        stored = self._ledger.sessions.get(digest)
        if stored is None or not stored.is_open:
            raise AccessDenied(401, SIGN_IN_AGAIN)
        key = keyring.find(stored.key_id, "staff")  # removed from the keys file, or rotated
        if key is None:
            self._end(stored, "key_removed", now_utc)
            raise AccessDenied(401, SIGN_IN_AGAIN)
        reason = self._end_reason(stored, now_utc)
        if reason is not None:
            self._end(stored, reason, now_utc)
            raise AccessDenied(401, SIGN_IN_AGAIN)
        if now_utc - stored.last_seen_at >= self._touch_every:
            self._ledger.sessions.touch(digest, now_utc)
        return _session(token, key)

    def end(self, request: Request, response: Response, now_utc: dt.datetime | None = None) -> None:
        """Sign out: end the request's session in the ledger (every worker refuses it from now
        on) and delete its cookie on `response`. A ledger write: call it from a worker thread."""
        token = self.token(request)
        if token is not None:
            self._ledger.ensure_migrated()
            if self._ledger.sessions.end(_digest(token), "signed_out", now_utc or _now()):
                log.info("session.ended", extra={"reason": "signed_out"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def _end_reason(self, stored: StaffSession, now_utc: dt.datetime) -> EndReason | None:
        if now_utc - stored.started_at >= self._lifetime:
            return "expired"
        if now_utc - stored.last_seen_at >= self._idle:
            return "idle"
        return None

    def _end(self, stored: StaffSession, reason: EndReason, now_utc: dt.datetime) -> None:
        if self._ledger.sessions.end(stored.token_sha256, reason, now_utc):
            log.info("session.ended", extra={"reason": reason, "key_id": stored.key_id})


def require_staff(
    request: Request,
    header_key: Annotated[str | None, Security(api_key_header)] = None,
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Caller:
    """The staff caller of a web page: a staff key in a header, or an open session (kept on
    `request.state.staff_session` for the CSRF check and the page); its name and stores are
    the named account's as configured now. Raises `AccessDenied` (401 / 403)."""
    if request.app.state.settings.is_open:
        return OPEN_CALLER
    presented = presented_key(header_key, bearer_key)
    if presented:
        return identify(request, presented, frozenset({"staff"}), "staff")
    sessions: Sessions = request.app.state.sessions
    token = sessions.token(request)
    if token is None:
        raise AccessDenied(401, "please sign in with your staff key")
    session = sessions.resume(token, request.app.state.keyring, _now())
    request.state.staff_session = session
    return Caller.of_key(session.key)


setattr(require_staff, ROLES_ATTRIBUTE, ("staff",))


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


def _session(token: str, key: HashedKey) -> Session:
    csrf = hmac.new(
        token.encode("utf-8", "surrogatepass"), b"promise-csrf", hashlib.sha256
    ).hexdigest()
    return Session(key=key, csrf_token=csrf, token_sha256=_digest(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
