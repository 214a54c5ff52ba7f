"""Group commit: the writes of concurrent requests stored in one transaction, one fsync.

A request's write joins a queue (`GroupCommitter.run(write)` from a thread, `await
GroupCommitter.run_async(write)` on the event loop: the same queue, two ways to wait). One
writer thread per committer, started with its first write, takes every write waiting, opens
one `write_transaction` (on SQLite one `BEGIN IMMEDIATE`, so the file lock is taken once per
group), runs the writes, commits, and wakes the group; writes that arrive meanwhile wait for
the next group. A request on the event loop costs no thread hop of its own: the loop is woken
once per group, not per request.

Each write keeps its own outcome: one that raises (a unique Idempotency-Key already taken, a
lost revision race, a value the database refuses) rolls the group's transaction back, and the
group is written again with each write in its own SAVEPOINT (savepoints cost two statements a
write, so they are paid only then): the refused write is rolled back to its savepoint and its
exception is raised to its own caller after the commit, never failing the others. A failure
of the storage itself (`service.health.classify`: a full disk, a lost connection, a lock held
past the busy timeout) or of the COMMIT fails the whole group, and every caller gets it: none
was acknowledged. A group that PostgreSQL aborts as a deadlock or a serialization failure (two
groups inserting twins in crossed order) is written again one write per transaction.

A caller is answered only once the transaction holding its write has committed, with the
engine's durability (SQLite `synchronous = FULL`, PostgreSQL's `synchronous_commit`): an
answered request's quotes survive a power cut. A process that dies mid-group answered none of
it.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """One caller's write and, once its group ended, its result or its exception. A thread
    waits on `event`; a coroutine on `future`, resolved on its `loop`."""

    write: Callable[[Connection], T]
    result: T | None = None
    error: BaseException | None = None
    event: threading.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = field(default=None)

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set when no error was


class GroupCommitter:
    """The group commit of one engine's writes, shared by the threads and the event loop of
    one process; its writer thread ends with `close()` (or the process)."""

    def __init__(self, engine: Engine, max_group: int = MAX_GROUP) -> None:
        self.engine = engine
        self.max_group = max_group
        self._wanted = threading.Condition(threading.Lock())
        self._queue: list[_Pending[object]] = []
        self._writer: threading.Thread | None = None
        self._is_closing = False  # `close()` asked the writer to end once the queue is empty
        self.transactions = 0  # group transactions begun (each write alone counts, retried)
        self.writes = 0  # writes run

    def run(self, write: Callable[[Connection], T]) -> T:
        """Run `write(conn)` inside a group's transaction and return its result once that
        transaction has committed; raise what `write` raised (rolled back alone), or the
        storage's failure when the group's transaction failed. Blocks the calling thread."""
        pending: _Pending[T] = _Pending(write, event=threading.Event())
        self._submit(pending)
        assert pending.event is not None
        pending.event.wait()
        return pending.outcome()

    async def run_async(self, write: Callable[[Connection], T]) -> T:
        """`run` for a coroutine: the event loop goes on serving while the group is written."""
        loop = asyncio.get_running_loop()
        pending: _Pending[T] = _Pending(write, loop=loop, future=loop.create_future())
        self._submit(pending)
        assert pending.future is not None
        # Shielded: a cancelled request's write still commits (or fails) with its group; the
        # answer is then dropped, as when a client hangs up.
        await asyncio.shield(pending.future)
        return pending.outcome()

    def waiting(self) -> int:
        """Writes queued for the next group (tests wait on it to make a group)."""
        with self._wanted:
            return len(self._queue)

    def close(self) -> None:
        """Write what is queued, then end the writer thread (a later write starts another, as
        a disposed engine opens new connections)."""
        with self._wanted:
            self._is_closing = True
            self._wanted.notify()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=30.0)

    def _submit(self, pending: _Pending[T]) -> None:
        with self._wanted:
            # While closing, the writer still writes what is queued before it ends.
            self._queue.append(pending)  # type: ignore[arg-type]  # results are per item
            if self._writer is None:
                self._start_writer()
            else:  # no-op unless the writer is waiting for a write
                self._wanted.notify()

    def _start_writer(self) -> None:
        """A writer thread for the queue (the caller holds `_wanted`)."""
        self._is_closing = False
        self._writer = threading.Thread(
            target=self._write_groups, name="ledger-group-commit", daemon=True
        )
        self._writer.start()

    def _write_groups(self) -> None:
        """The writer thread: each group as it forms, until closed and nothing is queued."""
        while True:
            with self._wanted:
                while not self._queue and not self._is_closing:
                    self._wanted.wait()
                if not self._queue:  # closing, and nothing is left
                    self._writer = None
                    return
                group = self._queue[: self.max_group]
                del self._queue[: self.max_group]
            try:
                self._write(group)
            except BaseException as err:  # every caller must hear of it, then it propagates
                for pending in group:
                    pending.result, pending.error = None, err
                with self._wanted:
                    self._writer = None
                    if self._queue:  # writes queued meanwhile get a writer of their own
                        self._start_writer()
                raise
            finally:
                _wake(group)

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


def _wake(group: list[_Pending[object]]) -> None:
    """Wake a group's callers: each thread by its event, each event loop once for all of its
    coroutines (one wake-up of the loop per group, not per request)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for pending in group:
        if pending.event is not None:
            pending.event.set()
        elif pending.loop is not None and pending.future is not None:
            by_loop.setdefault(pending.loop, []).append(pending.future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody to answer
            loop.call_soon_threadsafe(_resolve, futures)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


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
