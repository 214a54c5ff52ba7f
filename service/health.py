"""Can the ledger write? The outcome of each engine's latest write, and what a failure means.

`service.database.write_transaction` reports every write here (`WriteHealth.of(engine)`):
a commit is a success; a failure of the storage itself is classified by `classify`:

```
disk_full    SQLite SQLITE_FULL ("database or disk is full"), PostgreSQL 53100 disk_full,
             OSError ENOSPC / EDQUOT
read_only    SQLite SQLITE_READONLY ("attempt to write a readonly database"), PostgreSQL
             25006 read_only_sql_transaction (a standby, default_transaction_read_only),
             OSError EROFS
unreachable  the connection failed or broke (PostgreSQL class 08, 57P01-57P03, SQLite
             SQLITE_CANTOPEN, a connection SQLAlchemy invalidated)
busy         a lock held past the busy timeout (SQLITE_BUSY / SQLITE_LOCKED), PostgreSQL
             55P03 lock_not_available, no pooled connection free in time
other        any other operational error of the database
```

Anything else raised inside a write (a unique constraint, a `Conflict`) says nothing about
the storage and leaves the state as it was. `/readyz` reads the state and, when no write has
reported for a while, makes one itself (`service.ops`). The state is per process (per worker).
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

FailureKind = Literal["disk_full", "read_only", "unreachable", "busy", "other"]

# What each kind means, as the answers say it ("not writable: the disk is full").
REASONS: dict[FailureKind, str] = {
    "disk_full": "the disk is full",
    "read_only": "the database is read-only",
    "unreachable": "the database cannot be reached",
    "busy": "the database is busy (a lock or every connection was held too long)",
    "other": "the database refused the write",
}

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_KINDS: dict[int, FailureKind] = {
    5: "busy",  # SQLITE_BUSY
    6: "busy",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    13: "disk_full",  # SQLITE_FULL
    14: "unreachable",  # SQLITE_CANTOPEN
}
_SQLSTATE_KINDS: dict[str, FailureKind] = {
    "53100": "disk_full",
    "25006": "read_only",
    "55P03": "busy",
    "57P01": "unreachable",  # admin_shutdown
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now
}
_ERRNO_KINDS: dict[int, FailureKind] = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EROFS: "read_only",
}


def classify(err: BaseException) -> FailureKind | None:
    """What a failed write says about the storage, or None when it says nothing (a bug, a
    constraint, a user mistake): the exception, its driver error and their causes."""
    for cause in _chain(err):
        kind = _kind_of(cause)
        if kind is not None:
            return kind
    if isinstance(err, DBAPIError):
        if err.connection_invalidated:
            return "unreachable"
        if isinstance(err, OperationalError):
            return "other"
    return None


def _kind_of(err: BaseException) -> FailureKind | None:
    if isinstance(err, PoolTimeout):
        return "busy"
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _SQLITE_KINDS.get(code & 0xFF)
        return None
    if isinstance(err, OSError) and err.errno is not None:
        return _ERRNO_KINDS.get(err.errno)
    # psycopg only where it is loaded: an error of it cannot exist before (a SQLite worker
    # never imports the PostgreSQL driver, ~0.1 s of its start).
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(err, psycopg.Error):
        if err.sqlstate is None:
            # No SQLSTATE: the server never answered (refused, dropped, timed out).
            return "unreachable" if isinstance(err, psycopg.OperationalError) else None
        if err.sqlstate.startswith("08"):
            return "unreachable"
        return _SQLSTATE_KINDS.get(err.sqlstate)
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, the driver's error it wraps, and their causes (each once)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None]
        pending += [current.__cause__, current.__context__]


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How the latest write ended: `failure` None for a commit, else its kind; `error` the
    exception's class name; `at_monotonic` when (`time.monotonic()`)."""

    failure: FailureKind | None
    error: str | None
    at_monotonic: float

    @property
    def is_ok(self) -> bool:
        return self.failure is None

    @property
    def reason(self) -> str:
        """What is wrong in words ("the disk is full"); "ok" for a success."""
        return "ok" if self.failure is None else REASONS[self.failure]


class WriteHealth:
    """The latest write outcome of one engine, shared by the threads of one process."""

    # One tracker per engine, found from the engine alone: `write_transaction` is given nothing
    # else. Weak keys: a disposed and dropped engine takes its tracker with it.
    _of: ClassVar[weakref.WeakKeyDictionary[Engine, WriteHealth]] = weakref.WeakKeyDictionary()
    _of_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: WriteOutcome | None = None

    @classmethod
    def of(cls, engine: Engine) -> WriteHealth:
        """The tracker of `engine` (made on first use; it lives as long as the engine)."""
        with cls._of_lock:
            health = cls._of.get(engine)
            if health is None:
                health = cls._of[engine] = cls()
            return health

    def succeeded(self) -> None:
        """A write transaction committed."""
        self._set(WriteOutcome(None, None, self._clock()))

    def failed(self, err: BaseException) -> FailureKind | None:
        """A write transaction raised `err`: record it when it is a storage failure; returns
        its kind (None: the storage is not to blame and nothing changes)."""
        kind = classify(err)
        if kind is not None:
            self._set(WriteOutcome(kind, type(err).__name__, self._clock()))
        return kind

    def latest(self) -> WriteOutcome | None:
        """The latest write's outcome, or None before the first write."""
        with self._lock:
            return self._latest

    def is_stale(self, max_age_seconds: float) -> bool:
        """True when no write has reported in the last `max_age_seconds` (a probe is due)."""
        latest = self.latest()
        return latest is None or self._clock() - latest.at_monotonic >= max_age_seconds

    def _set(self, outcome: WriteOutcome) -> None:
        with self._lock:
            # Threads finish out of order: keep the outcome of the write that ended last.
            if self._latest is None or outcome.at_monotonic >= self._latest.at_monotonic:
                self._latest = outcome
