"""Staff sessions: one row per sign-in, found by its token's sha256 (never the token itself),
ended once and for good (signed out, idle, too old, or its key removed).

The row is what makes a session revocable: every worker reads it (one primary-key read per
request), so a session ended by one worker is refused by all of them at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from service.database import write_transaction
from service.ledger.rows import utc
from service.tables import staff_sessions

EndReason = Literal["signed_out", "idle", "expired", "key_removed"]


@dataclass(frozen=True, slots=True)
class StaffSession:
    """A session as the ledger holds it: whose key, when it started and was last seen, and
    when and why it ended (None while it is open)."""

    token_sha256: str
    key_id: str
    started_at: dt.datetime
    last_seen_at: dt.datetime
    ended_at: dt.datetime | None = None
    ended_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class SessionBook:
    """The staff sessions; each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self, token_sha256: str, key_id: str, now_utc: dt.datetime) -> StaffSession:
        """Record a new session for the staff key `key_id`, started (and last seen) now."""
        session = StaffSession(token_sha256, key_id, now_utc, now_utc)
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(staff_sessions).values(
                    token_sha256=token_sha256,
                    key_id=key_id,
                    started_at=now_utc,
                    last_seen_at=now_utc,
                )
            )
        return session

    def get(self, token_sha256: str) -> StaffSession | None:
        """The session with this token digest, open or ended; None when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(staff_sessions).where(staff_sessions.c.token_sha256 == token_sha256)
            ).first()
        if row is None:
            return None
        return StaffSession(
            token_sha256=row.token_sha256,
            key_id=row.key_id,
            started_at=utc(row.started_at),
            last_seen_at=utc(row.last_seen_at),
            ended_at=None if row.ended_at is None else utc(row.ended_at),
            ended_reason=row.ended_reason,
        )

    def touch(self, token_sha256: str, now_utc: dt.datetime) -> None:
        """Mark an open session seen now (an ended one, or one seen later already, is left)."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(staff_sessions)
                .where(
                    staff_sessions.c.token_sha256 == token_sha256,
                    staff_sessions.c.ended_at.is_(None),
                    staff_sessions.c.last_seen_at < now_utc,
                )
                .values(last_seen_at=now_utc)
            )

    def end(self, token_sha256: str, reason: EndReason, now_utc: dt.datetime) -> bool:
        """End an open session for `reason`; False when it had already ended (the first end
        and its reason stay) or is unknown."""
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(staff_sessions)
                .where(
                    staff_sessions.c.token_sha256 == token_sha256,
                    staff_sessions.c.ended_at.is_(None),
                )
                .values(ended_at=now_utc, ended_reason=reason)
            )
        return bool(result.rowcount)
