"""Group commit on a real SQLite file and the real PostgreSQL: requests that wait while a write
is under way are stored in one transaction, each keeping its own outcome (a twin key answered
with the first answer, a lost revision race a `Conflict`, a refused value its own error),
and each is answered only once its transaction has committed.

A group is made, not hoped for: another connection holds the ledger's write lock (SQLite
`BEGIN IMMEDIATE`, a PostgreSQL table lock) while the requests arrive; the first one's
transaction waits on it, and the others queue behind it for the next group."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError

from models.errors import NotFound
from service.errors import Conflict
from service.ledger import Ledger
from service.ledger.group_commit import GroupCommitter
from service.ledger.records import NewRequest, Recorded, StoredQuote, new_quote_id
from service.tables import quote_requests, quotes
from tests.service.conftest import ClientFactory, quote_body
from tests.service.made_up import promise_due
from tests.service.servers import wait_until

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def a_quote(created_at: dt.datetime = NOW, **links: Any) -> StoredQuote:
    promise = promise_due(NOW, 48.0, NOW + dt.timedelta(hours=72))
    return StoredQuote(
        quote_id=new_quote_id(),
        created_at=created_at,
        promise=promise,
        model_version="made-up",
        time_zone="UTC",
        features={"store_id": "MAN"},
        reference=None,
        warnings=[],
        store="MAN",
        **links,
    )


def a_request(key: str | None, body: str = "a", created_at: dt.datetime = NOW) -> NewRequest:
    return NewRequest("till-1", key, body * 64, "single", created_at)


@contextmanager
def writes_held(url: str) -> Iterator[None]:
    """Another connection holds the write lock that every writer of the ledger needs."""
    if make_url(url).get_backend_name() == "sqlite":
        holder = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            # Blocks every INSERT into quote_requests (ROW EXCLUSIVE), not the reads.
            conn.execute(text("LOCK TABLE quote_requests IN SHARE ROW EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def commits_of(ledger: Ledger) -> list[int]:
    """A list that grows by one at every transaction the ledger's engine commits."""
    seen: list[int] = []

    @event.listens_for(ledger.engine, "commit")
    def _count(_conn: Any) -> None:
        seen.append(1)

    return seen


Outcome = Recorded | BaseException


def record_together(
    ledger: Ledger, url: str, calls: Sequence[tuple[NewRequest, list[StoredQuote]]]
) -> tuple[list[Outcome], int]:
    """Record `calls` concurrently while writes are held, so that all but the first queue for
    one group; each call's answer or exception, and the number of transactions committed."""
    commits = commits_of(ledger)
    committer = ledger.quotes.committer
    begun = committer.transactions
    with ThreadPoolExecutor(len(calls)) as pool:
        futures: list[Future[Recorded]] = []
        with writes_held(url):
            for i, (request, given) in enumerate(calls):
                futures.append(pool.submit(ledger.quotes.record, request, given))
                if i == 0:  # the writer takes the first alone, and waits on the held lock
                    wait_until(lambda: committer.transactions > begun, "the first write under way")
            wait_until(lambda: committer.waiting() == len(calls) - 1, "the others queued")
        outcomes: list[Outcome] = []
        for future in futures:
            error = future.exception(timeout=60)
            outcomes.append(future.result() if error is None else error)
    return outcomes, len(commits)


def stored(ledger: Ledger) -> tuple[int, int]:
    """(requests, quotes) in the ledger."""
    with ledger.engine.connect() as conn:
        n_requests = conn.execute(select(func.count()).select_from(quote_requests)).scalar_one()
        n_quotes = conn.execute(select(func.count()).select_from(quotes)).scalar_one()
    return n_requests, n_quotes


def test_requests_waiting_together_are_stored_in_one_transaction(
    ledger: Ledger, database_url: str
) -> None:
    calls = [(a_request(f"key-{i}"), [a_quote(), a_quote()]) for i in range(12)]

    outcomes, commits = record_together(ledger, database_url, calls)

    assert commits == 2  # the first alone, the eleven that waited behind it together
    assert ledger.quotes.committer.transactions == 2
    for (_request, given), outcome in zip(calls, outcomes, strict=True):
        assert isinstance(outcome, Recorded) and not outcome.replayed
        assert [q.quote_id for q in outcome.quotes] == [q.quote_id for q in given]
        assert [ledger.quotes.get(q.quote_id).quote_id for q in given] == [
            q.quote_id for q in given
        ]
    assert stored(ledger) == (12, 24)


def statements_of(ledger: Ledger) -> list[str]:
    """A list that grows by every SQL statement the ledger's engine sends."""
    seen: list[str] = []

    @event.listens_for(ledger.engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.strip().upper())

    return seen


def test_a_group_that_no_write_refuses_sets_no_savepoint(ledger: Ledger, database_url: str) -> None:
    """A savepoint per write is two more statements each: paid only when a write is refused."""
    statements = statements_of(ledger)
    calls = [(a_request(f"key-{i}"), [a_quote()]) for i in range(6)]

    outcomes, commits = record_together(ledger, database_url, calls)

    assert commits == 2 and ledger.quotes.committer.transactions == 2
    assert all(isinstance(outcome, Recorded) for outcome in outcomes)
    assert [s for s in statements if "SAVEPOINT" in s] == []
    assert stored(ledger) == (6, 6)


def test_a_twin_in_the_same_group_gets_the_first_answer_and_one_row(
    ledger: Ledger, database_url: str
) -> None:
    first, twin = [a_quote()], [a_quote()]  # a retry quotes again: its own fresh ids
    calls = [
        (a_request("lead"), [a_quote()]),
        (a_request("twin"), first),
        (a_request("other"), [a_quote()]),
        (a_request("twin"), twin),
    ]

    outcomes, commits = record_together(ledger, database_url, calls)

    assert commits == 2
    stored_first, answered_twin = outcomes[1], outcomes[3]
    assert isinstance(stored_first, Recorded) and not stored_first.replayed
    assert isinstance(answered_twin, Recorded) and answered_twin.replayed
    assert [q.quote_id for q in answered_twin.quotes] == [first[0].quote_id]
    assert stored(ledger) == (3, 3)
    with pytest.raises(NotFound):
        ledger.quotes.get(twin[0].quote_id)


def test_a_refused_request_in_a_group_leaves_the_others_stored(
    ledger: Ledger, database_url: str
) -> None:
    original = a_quote()
    ledger.quotes.record(a_request("original"), [original])
    naive = dt.datetime(2026, 11, 23, 9, 0)  # no zone: the ledger refuses it
    calls = [
        (a_request("lead"), [a_quote()]),
        (a_request("good-1"), [a_quote()]),
        (a_request("same-key"), [a_quote()]),
        (a_request("same-key", body="b"), [a_quote()]),  # the key reused for another body
        (a_request("revise-1"), [a_quote(revision_of=original.quote_id, revision=1)]),
        (a_request("revise-2"), [a_quote(revision_of=original.quote_id, revision=1)]),
        (a_request("naive", created_at=naive), [a_quote()]),
        (a_request("good-2"), [a_quote()]),
    ]

    statements = statements_of(ledger)
    outcomes, commits = record_together(ledger, database_url, calls)

    assert commits == 2
    # The original, the lead alone, the group rolled back at its first refusal, and the group
    # again with a savepoint per write.
    assert ledger.quotes.committer.transactions == 4
    assert sum(s.startswith("SAVEPOINT") for s in statements) == len(calls) - 1
    kinds = [type(outcome) for outcome in outcomes]
    assert kinds == [Recorded, Recorded, Recorded, Conflict, Recorded, Conflict, StatementError,
                     Recorded]  # fmt: skip
    assert "already used for a different request" in str(outcomes[3])
    assert "revised by someone else meanwhile" in str(outcomes[5])
    for outcome in outcomes:
        if isinstance(outcome, Recorded):
            assert not outcome.replayed
            [quote] = outcome.quotes
            assert ledger.quotes.get(quote.quote_id).quote_id == quote.quote_id
    assert stored(ledger) == (6, 6)  # the original and five of the group
    assert [q.revision for q in ledger.quotes.chain(original.quote_id)] == [0, 1]


def test_a_batch_in_a_group_is_stored_whole_or_not_at_all(
    ledger: Ledger, database_url: str
) -> None:
    naive = dt.datetime(2026, 11, 23, 9, 0)
    good_batch = [a_quote() for _ in range(5)]
    bad_batch = [a_quote(), a_quote(), a_quote(created_at=naive), a_quote()]
    calls = [
        (a_request("lead"), [a_quote()]),
        (a_request("bad-batch"), bad_batch),
        (a_request("good-batch"), good_batch),
    ]

    outcomes, commits = record_together(ledger, database_url, calls)

    assert commits == 2
    assert isinstance(outcomes[1], StatementError)
    assert isinstance(outcomes[2], Recorded) and len(outcomes[2].quotes) == 5
    assert stored(ledger) == (2, 6)  # nothing of the bad batch, not even its request
    for quote in bad_batch:
        with pytest.raises(NotFound):
            ledger.quotes.get(quote.quote_id)


def test_concurrent_posts_share_transactions_and_twins_get_one_answer(
    make_client: ClientFactory, database_url: str
) -> None:
    """Through the service: 10 requests, two of them a retry pair, sent while writes are held;
    each answered 201 with its own quote (the twin with the first's), in 2 transactions."""
    client = make_client()
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    client.post("/v1/quotes", json=quote_body())  # migrated, warm
    commits = commits_of(ledger)
    committer = ledger.quotes.committer
    keys = ["twin", *(f"post-{i}" for i in range(8)), "twin"]

    def post(key: str) -> Any:
        return client.post("/v1/quotes", json=quote_body(), headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(len(keys)) as pool:
        with writes_held(database_url):
            first = pool.submit(post, keys[0])
            wait_until(lambda: committer.transactions >= 2, "the first write under way")
            rest = [pool.submit(post, key) for key in keys[1:]]
            wait_until(lambda: committer.waiting() == len(rest), "the others queued")
        answers = [first.result(timeout=60), *(f.result(timeout=60) for f in rest)]

    assert [a.status_code for a in answers] == [201] * len(keys)
    assert len(commits) == 2
    ids = [a.json()["quote_id"] for a in answers]
    assert ids[0] == ids[-1] and len(set(ids)) == len(keys) - 1
    assert answers[-1].headers["Idempotent-Replayed"] == "true"
    assert stored(ledger) == (len(keys), len(keys))  # the warm-up and nine, once each


async def _until(condition: Callable[[], bool], what: str) -> None:
    """`wait_until` for a coroutine: the event loop goes on while it polls."""
    deadline = time.monotonic() + 60.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within 60 s")
        await asyncio.sleep(0.01)


def test_coroutines_share_a_group_and_are_answered_only_after_its_commit(
    ledger: Ledger, database_url: str
) -> None:
    """The API's path (`record_async` on the event loop): the loop runs on while the group is
    written, and no coroutine has its answer before the transaction holding it committed."""
    calls = [(a_request(f"key-{i}"), [a_quote()]) for i in range(8)]
    commits = commits_of(ledger)
    committer = ledger.quotes.committer

    async def together() -> list[Recorded]:
        with writes_held(database_url):
            first = asyncio.create_task(ledger.quotes.record_async(*calls[0]))
            await _until(lambda: committer.transactions >= 1, "the first write under way")
            rest = [asyncio.create_task(ledger.quotes.record_async(*call)) for call in calls[1:]]
            await _until(lambda: committer.waiting() == len(rest), "the others queued")
            assert not first.done() and not any(task.done() for task in rest)
        return await asyncio.gather(first, *rest)

    outcomes = asyncio.run(together())

    assert len(commits) == 2  # the first alone, the seven that waited behind it together
    for (_request, given), outcome in zip(calls, outcomes, strict=True):
        assert not outcome.replayed
        assert [q.quote_id for q in outcome.quotes] == [q.quote_id for q in given]
    assert stored(ledger) == (8, 8)


class _Halt(BaseException):
    """Not an `Exception`: what no write's handler catches (an interrupt, an exit)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_write_queued_while_the_writer_thread_dies_is_still_written(ledger: Ledger) -> None:
    """The writer thread ends with what it could not catch; its own callers hear of it, and a
    write that queued meanwhile gets a writer of its own rather than waiting for ever."""
    committer = GroupCommitter(ledger.engine)
    started, release = threading.Event(), threading.Event()

    def halting(_conn: Any) -> None:
        started.set()
        release.wait(30)
        raise _Halt

    def reading(conn: Any) -> int:
        return int(conn.execute(text("SELECT 1")).scalar_one())

    pool = ThreadPoolExecutor(2)
    try:
        first = pool.submit(committer.run, halting)
        assert started.wait(30)
        second = pool.submit(committer.run, reading)
        wait_until(lambda: committer.waiting() == 1, "the second write queued")
        release.set()
        assert isinstance(first.exception(timeout=30), _Halt)
        assert second.result(timeout=30) == 1
    finally:
        pool.shutdown(wait=False)  # a write left waiting must fail the test, not hang it
        committer.close()
