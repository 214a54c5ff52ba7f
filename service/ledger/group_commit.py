"""Group commit: the writes of concurrent requests stored in one transaction, one fsync.

A request's write (`GroupCommitter.run(write)`) joins a queue. The first thread to find no
commit under way leads: it takes every write waiting, opens one `write_transaction` (on SQLite
one `BEGIN IMMEDIATE`, so the file lock is taken once per group), runs the writes, commits, and
wakes the group. Writes that arrive meanwhile wait for the next leader, one of themselves
(leader/follower: no thread of its own, nothing to start or stop).

Each write keeps its own outcome: one that raises (a unique Idempotency-Key already taken, a
lost revision race, a value the database refuses) rolls the group's transaction back, and the
group is written again with each write in its own SAVEPOINT (savepoints cost two statements a
write, so they are paid only then): the refused write is rolled back to its savepoint and its
exception is raised to its own caller after the commit, never failing the others. A failure
of the storage itself (`service.health.classify`: a full disk, a lost connection, a lock held
past the busy timeout) or of the COMMIT fails the whole group, and every caller gets it: none
was acknowledged. A group that PostgreSQL aborts as a deadlock or a serialization failure (two
groups inserting twins in crossed order) is written again one write per transaction.

`run` returns only once the transaction holding the write has committed, with the engine's
durability (SQLite `synchronous = FULL`, PostgreSQL's `synchronous_commit`): an answered
request's quotes survive a power cut.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

from service.database import write_transaction
from service.health import classify

T = TypeVar("T")

MAX_GROUP = 256  # writes per transaction at most (a batch request is one write)
# PostgreSQL aborts one of two transactions waiting on each other: the group is written again.
_RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


@dataclass(eq=False, slots=True)
class _Pending(Generic[T]):
    """One caller's write and, once its group ended, its result or its exception; `wake` is
    set once, when its group ended or when it is to lead the next group (`leads`)."""

    write: Callable[[Connection], T]
    is_done: bool = False
    leads: bool = False
    result: T | None = None
    error: BaseException | None = field(default=None)
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommitter:
    """The group commit of one engine's writes, shared by the threads of one process."""

    def __init__(self, engine: Engine, max_group: int = MAX_GROUP) -> None:
        self.engine = engine
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Pending[object]] = []
        self._is_leading = False
        self.transactions = 0  # group transactions begun (each write alone counts, retried)
        self.writes = 0  # writes run

    def run(self, write: Callable[[Connection], T]) -> T:
        """Run `write(conn)` inside a group's transaction and return its result once that
        transaction has committed; raise what `write` raised (rolled back alone), or the
        storage's failure when the group's transaction failed."""
        pending: _Pending[T] = _Pending(write)
        with self._lock:
            self._queue.append(pending)  # type: ignore[arg-type]  # results are per item
            pending.leads = not self._is_leading
            self._is_leading = True
        if not pending.leads:
            # Each waiter is woken once, by its own event: when its group ended, or to lead
            # the next one (a condition's notify_all woke every waiter at every group).
            pending.wake.wait()
        if not pending.is_done:  # it leads: it is the first of the queue, so in the group
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]  # set when no error was

    def _lead(self) -> None:
        """Write the group at the head of the queue, wake its writers, and hand the lead to
        the first writer still queued (or end leading when none is)."""
        with self._lock:
            group = self._queue[: self.max_group]
            del self._queue[: self.max_group]
        successor: _Pending[object] | None = None
        try:
            self._write(group)
        finally:
            with self._lock:
                for done in group:
                    done.is_done = True
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                else:
                    self._is_leading = False
            for done in group:
                done.wake.set()
            if successor is not None:
                successor.wake.set()

    def waiting(self) -> int:
        """Writes queued for the next group (tests wait on it to make a group)."""
        with self._lock:
            return len(self._queue)

    def _write(self, group: list[_Pending[object]]) -> None:
        """Write `group` in one transaction; every item ends with a result or an error."""
        try:
            self._transaction(group)
        except Exception as err:
            if len(group) > 1 and _is_retried(err):
                for pending in group:
                    self._write([pending])
                return
            for pending in group:
                pending.result, pending.error = None, err

    def _transaction(self, group: list[_Pending[object]]) -> None:
        """Write `group` in one transaction, each write as it comes: a savepoint per write is
        two more statements each, paid only when a write is refused (then the transaction is
        rolled back and the group written again, each write in its own savepoint)."""
        self.transactions += 1
        results: list[object] = []
        try:
            with write_transaction(self.engine) as conn:
                for pending in group:
                    self.writes += 1
                    try:
                        results.append(pending.write(conn))
                    except Exception as err:
                        if classify(err) is not None:
                            raise  # the storage failed: the whole group fails
                        raise _Refused(pending, err) from err
        except _Refused as refused:
            if len(group) == 1:  # rolled back: nothing else was in it
                refused.pending.result, refused.pending.error = None, refused.error
                return
            self._isolated(group)
            return
        for pending, result in zip(group, results, strict=True):
            pending.result, pending.error = result, None

    def _isolated(self, group: list[_Pending[object]]) -> None:
        """Write `group` in one transaction, each write in its own SAVEPOINT: one refused is
        rolled back alone and its error kept for its caller."""
        self.transactions += 1
        for pending in group:
            pending.result, pending.error = None, None
        with write_transaction(self.engine) as conn:
            for pending in group:
                self.writes += 1
                try:
                    with conn.begin_nested():
                        pending.result = pending.write(conn)
                except Exception as err:
                    if classify(err) is not None:
                        raise  # the storage failed: the whole group fails
                    pending.error = err  # this write alone: rolled back to its savepoint


class _Refused(Exception):
    """A write of a group refused for itself alone (a key taken, a value refused): the group's
    transaction is rolled back, to be written again with savepoints."""

    def __init__(self, pending: _Pending[object], error: Exception) -> None:
        super().__init__(str(error))
        self.pending = pending
        self.error = error


def _is_retried(err: BaseException) -> bool:
    orig = getattr(err, "orig", None)
    return getattr(orig, "sqlstate", None) in _RETRIED_SQLSTATES
