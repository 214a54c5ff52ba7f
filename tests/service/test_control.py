"""The adaptive policy's control state replayed from the ledger (`service.control`): promises
learnt at their deadlines, kept or broken; the same numbers as `models.control` folded over the
same promises; buffers that grow after broken promises and shrink after kept ones; the cache.

Every step passes its clock explicitly (`now`), as the service does per request."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.buffers import AdaptiveBuffers
from models.control import ControlState, learn
from models.policies import GLOBAL_SEGMENT
from models.quoting import QuoteEngine
from models.registry import Registry
from service.auth import OPEN_CALLER
from service.bundles import Serving
from service.control import (
    HORIZON_MEMORIES,
    ControlCache,
    control_state,
    learning_limit,
    widest_window_hours,
)
from service.desk import QuoteDesk
from service.ledger import Ledger
from service.ledger.records import StoredQuote
from service.schemas import QuoteRequest
from tests.service.conftest import ORDER, ClientFactory, TrainedBundles, quote_body

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday morning, before the cut-off
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
STORES = ("MAN", "LDS", "BRS", "NCL", "LIV")


@dataclass(frozen=True)
class Shop:
    """A worker serving the adaptive bundle, driven with explicit clocks."""

    client: TestClient

    @property
    def ledger(self) -> Ledger:
        ledger: Ledger = self.client.app.state.ledger  # type: ignore[attr-defined]
        return ledger

    @property
    def serving(self) -> Serving:
        serving: Serving = self.client.app.state.bundles.require()  # type: ignore[attr-defined]
        return serving

    @property
    def engine(self) -> QuoteEngine:
        return self.serving.bundle.engine

    @property
    def policy(self) -> AdaptiveBuffers:
        policy = self.engine.buffer_rule
        assert isinstance(policy, AdaptiveBuffers)
        return policy

    def desk(self, now: dt.datetime, serving: Serving | None = None) -> QuoteDesk:
        state = self.client.app.state  # type: ignore[attr-defined]
        return QuoteDesk(
            serving=serving or self.serving,
            ledger=self.ledger,
            control=state.control,
            settings=state.settings,
            metrics=state.metrics,
            now_utc=now,
            model_of=state.bundles.serving_for,
        )

    def quote(
        self, now: dt.datetime, stores: Sequence[str], serving: Serving | None = None
    ) -> list[StoredQuote]:
        """Quote one order per store, placed at `now`."""
        requests = [QuoteRequest(order={**ORDER, "store_id": store}) for store in stores]
        desk = self.desk(now, serving)
        return asyncio.run(desk.issue(requests, "batch", OPEN_CALLER, None)).quotes

    def fulfil(
        self, quote: StoredQuote, fulfilled_at: dt.datetime, recorded_at: dt.datetime
    ) -> None:
        [result] = self.ledger.outcomes.record_many(
            [(quote.quote_id, fulfilled_at)], recorded_at, "api"
        )
        assert result.status == "recorded"

    def state(self, now: dt.datetime) -> ControlState:
        state = control_state(self.engine, self.ledger, now)
        assert state is not None
        return state

    def path(self, store: str) -> tuple[str, ...]:
        return self.policy.paths([(store,)])[0]


@pytest.fixture
def shop(make_client: ClientFactory, registry_root: Path, trained: TrainedBundles) -> Shop:
    Registry(registry_root).promote(trained.adaptive)
    return Shop(make_client(control_refresh_seconds=0.0))


def _learnt(state: ControlState) -> tuple[int, dict[str, float], dict[str, int]]:
    return state.n_updates, dict(state.misses), dict(state.counts)


def test_a_promise_is_learnt_at_its_deadline_kept_or_broken(shop: Shop) -> None:
    kept, broken, silent = (shop.quote(T0 + i * DAY, ["MAN"])[0] for i in range(3))
    deadlines = [q.promise.deadline_at for q in (kept, broken, silent)]
    assert deadlines == sorted(set(deadlines))  # three deadlines, one after another
    # Ready and recorded long before its deadline: still nothing to learn until then.
    shop.fulfil(
        kept, kept.promise.expected_completion, recorded_at=kept.promise.expected_completion
    )
    path = shop.path("MAN")
    leak = shop.policy.leaks()

    assert _learnt(shop.state(kept.promise.expected_completion + HOUR)) == (0, {}, {})
    assert _learnt(shop.state(deadlines[0] - SECOND)) == (0, {}, {})
    first = {key: -0.05 for key in path}  # kept: 0 - target
    assert _learnt(shop.state(deadlines[0])) == (1, first, dict.fromkeys(path, 1))
    assert _learnt(shop.state(deadlines[1] - SECOND)) == (1, first, dict.fromkeys(path, 1))

    # Open at its deadline: broken; the outcome recorded later says the same.
    second = {key: leak[key] * -0.05 + 0.95 for key in path}
    assert _learnt(shop.state(deadlines[1])) == (2, second, dict.fromkeys(path, 2))
    shop.fulfil(broken, deadlines[1] + 2 * HOUR, recorded_at=deadlines[1] + 3 * HOUR)
    assert _learnt(shop.state(deadlines[1] + 4 * HOUR)) == (2, second, dict.fromkeys(path, 2))

    # No outcome ever: broken at its deadline.
    third = {key: leak[key] * second[key] + 0.95 for key in path}
    assert _learnt(shop.state(deadlines[2])) == (3, third, dict.fromkeys(path, 3))
    assert path[0] == GLOBAL_SEGMENT and len(path) == 2  # MAN has a buffer of its own


def test_an_outcome_recorded_late_turns_the_promise_kept_from_then_on(shop: Shop) -> None:
    [quote] = shop.quote(T0, ["MAN"])
    path = shop.path("MAN")
    recorded = quote.promise.deadline_at + DAY

    assert shop.state(quote.promise.deadline_at).misses == dict.fromkeys(path, 0.95)
    # Ready in time, but recorded a day after the deadline.
    shop.fulfil(quote, quote.promise.expected_completion, recorded_at=recorded)

    assert shop.state(recorded).misses == dict.fromkeys(path, -0.05)
    # As of a moment before the recording, the ledger did not know yet: still broken then.
    assert shop.state(recorded - SECOND).misses == dict.fromkeys(path, 0.95)


def test_the_replay_is_the_core_fold_over_the_same_promises(shop: Shop) -> None:
    rng = random.Random(13)
    quotes: list[StoredQuote] = []
    for i in range(40):
        placed = T0 + dt.timedelta(hours=rng.uniform(0, 240))
        quotes.extend(shop.quote(placed, [STORES[i % len(STORES)]]))
    now = T0 + 20 * DAY
    for quote in quotes:
        fate = rng.random()
        if fate < 0.5:  # kept, recorded when ready
            ready = quote.promise.expected_completion + rng.random() * (
                quote.promise.deadline_at - quote.promise.expected_completion
            )
            shop.fulfil(quote, ready, recorded_at=ready)
        elif fate < 0.8:  # broken, recorded when ready (some after `now`: unknown then)
            ready = quote.promise.deadline_at + dt.timedelta(hours=rng.uniform(1, 400))
            shop.fulfil(quote, ready, recorded_at=ready)
    # An open order past its promise is revised: the revision is a promise of its own.
    open_ones = [
        q for q in quotes if q.promise.deadline_at < now - 5 * DAY and _outcome(shop, q) is None
    ]
    revised_at = open_ones[0].promise.deadline_at + DAY
    revising = shop.desk(revised_at).revise(open_ones[0].quote_id, OPEN_CALLER, None)
    [revision] = asyncio.run(revising).quotes
    assert revision.revision == 1 and revision.promise.policy == "adaptive"
    promises = [*quotes, revision]

    replayed = shop.state(now)

    stored = [shop.ledger.quotes.get(q.quote_id) for q in promises]
    creation = {q.quote_id: i for i, q in enumerate(promises)}
    decided = sorted(
        (q for q in stored if q.promise.deadline_at <= now),
        key=lambda q: (q.promise.deadline_at, creation[q.quote_id]),
    )
    late = [
        not (
            q.outcome is not None
            and q.outcome.recorded_at <= now
            and q.outcome.fulfilled_at <= q.promise.deadline_at
        )
        for q in decided
    ]
    paths = shop.policy.paths([(str(q.features["store_id"]),) for q in decided])
    expected = learn(ControlState(), paths, np.array(late), 0.05, shop.policy.leaks())
    assert 10 < len(decided) < len(stored) and 0 < sum(late) < len(late)
    assert revision in decided or revision.promise.deadline_at > now
    assert _learnt(replayed) == _learnt(expected)

    # The nowcast: the orders in progress (originals only), fulfilments known by now.
    widest = dt.timedelta(hours=widest_window_hours(shop.policy))
    watched = [
        q
        for q in stored
        if q.revision == 0
        and q.promise.clock_start < now
        and (
            q.outcome is None
            or q.outcome.recorded_at > now
            or q.outcome.fulfilled_at > now - widest
        )
    ]
    known = [
        q.outcome.fulfilled_at.timestamp()
        if q.outcome is not None and q.outcome.recorded_at <= now
        else math.nan
        for q in watched
    ]
    medians, events = shop.policy.nowcast(
        np.array([q.promise.clock_start.timestamp() for q in watched]),
        np.array([q.promise.expected_hours for q in watched]),
        np.array(known),
        shop.policy.paths([(str(q.features["store_id"]),) for q in watched]),
        now.timestamp(),
    )
    assert medians and dict(replayed.medians) == medians and dict(replayed.events) == events


def _outcome(shop: Shop, quote: StoredQuote) -> object:
    return shop.ledger.quotes.get(quote.quote_id).outcome


def test_buffers_grow_after_broken_promises_and_shrink_after_kept_ones(shop: Shop) -> None:
    [calibrated] = shop.quote(T0, ["MAN"])
    shop.quote(T0, ["MAN"] * 40)  # never fulfilled: all broken at their deadlines

    t1 = T0 + 40 * DAY
    [after_broken] = shop.quote(t1, ["MAN"])
    kept = shop.quote(t1, ["MAN"] * 200)
    ready = [q.promise.expected_completion for q in kept]
    shop.ledger.outcomes.record_many(
        [(q.quote_id, at) for q, at in zip(kept, ready, strict=True)], max(ready), "api"
    )
    t2 = t1 + 40 * DAY
    [after_kept] = shop.quote(t2, ["MAN"])

    segment = shop.policy.table["MAN"]
    assert calibrated.promise.buffer_hours == pytest.approx(max(segment.score, 0.0))
    assert calibrated.promise.level == pytest.approx(0.95)
    assert after_broken.promise.buffer_hours > calibrated.promise.buffer_hours + 24.0
    assert after_broken.promise.level > 0.95
    assert (
        calibrated.promise.buffer_hours
        < after_kept.promise.buffer_hours
        < after_broken.promise.buffer_hours
    )
    assert after_kept.promise.level < after_broken.promise.level
    # What moved it: the miss sums learnt, as the core computes them.
    path = shop.path("MAN")
    grown = shop.state(t1)
    assert grown.counts == dict.fromkeys(path, 41)
    assert grown.misses["MAN"] > 30.0 and not grown.medians  # no fulfilment seen yet
    shrunk = shop.state(t2)
    assert shrunk.counts == dict.fromkeys(path, 242)
    assert 0.0 < shrunk.misses["MAN"] < grown.misses["MAN"] / 2
    # The nowcast saw the kept orders ready as expected while they were news (in its window) ...
    assert shop.state(t1 + 20 * DAY).medians["MAN"] == pytest.approx(0.0, abs=1e-6)
    # ... and has forgotten them 40 days on (the window is at most four expected durations).
    assert "MAN" not in shrunk.medians


def test_any_adaptive_version_counts_and_other_policies_do_not(
    shop: Shop, registry_root: Path, trained: TrainedBundles
) -> None:
    older = replace(
        shop.serving,
        bundle=replace(
            shop.serving.bundle,
            manifest=replace(shop.serving.bundle.manifest, version="an-older-adaptive-version"),
        ),
    )
    conformal = Serving(Registry(registry_root).load(trained.conformal), T0)
    [by_older] = shop.quote(T0, ["MAN"], serving=older)
    [by_conformal] = shop.quote(T0, ["LDS"], serving=conformal)
    assert (by_older.model_version, by_conformal.promise.policy) == (older.version, "conformal")

    state = shop.state(max(by_older.promise.deadline_at, by_conformal.promise.deadline_at) + DAY)

    assert state.n_updates == 1
    assert state.counts == dict.fromkeys(shop.path("MAN"), 1)


def test_the_newest_promises_within_the_horizon_are_learnt(shop: Shop) -> None:
    given = [shop.quote(T0 + i * HOUR, [store])[0] for i, store in enumerate(STORES)]
    for quote in given[::2]:
        shop.fulfil(
            quote, quote.promise.expected_completion, recorded_at=quote.promise.expected_completion
        )
    now = T0 + 30 * DAY
    by_deadline = sorted(given, key=lambda q: (q.promise.deadline_at, given.index(q)))

    every = shop.ledger.stats.decided_promises("adaptive", ("store_id",), now, limit=100)
    newest = shop.ledger.stats.decided_promises("adaptive", ("store_id",), now, limit=2)

    assert every.labels == [(q.features["store_id"],) for q in by_deadline]
    assert every.late.tolist() == [given.index(q) % 2 == 1 for q in by_deadline]
    assert newest.labels == every.labels[-2:] and newest.late.tolist() == every.late.tolist()[-2:]
    global_memory = 1.0 / (1.0 - shop.policy.leaks()[GLOBAL_SEGMENT])
    assert learning_limit(shop.policy) == math.ceil(HORIZON_MEMORIES * global_memory)


def test_the_cache_shows_a_new_decided_promise_after_the_refresh_interval(shop: Shop) -> None:
    [quote] = shop.quote(T0, ["MAN"])
    cache = ControlCache(shop.ledger, refresh_seconds=5.0)
    due = quote.promise.deadline_at

    def learnt(now: dt.datetime) -> int:
        state = cache.state(shop.serving, now)
        assert state is not None
        return state.n_updates

    assert learnt(due - SECOND) == 0
    assert learnt(due + SECOND) == 0  # 2 s after the replay: the cached state, stale
    assert learnt(due + 3 * SECOND) == 0
    assert learnt(due + 4 * SECOND) == 1  # 5 s after: replayed
    assert learnt(due - 2 * SECOND) == 0  # a clock that went back replays too


def test_the_cache_replays_for_another_version(shop: Shop) -> None:
    [quote] = shop.quote(T0, ["MAN"])
    cache = ControlCache(shop.ledger, refresh_seconds=3600.0)
    other = replace(
        shop.serving,
        bundle=replace(
            shop.serving.bundle, manifest=replace(shop.serving.bundle.manifest, version="next")
        ),
    )
    before = cache.state(shop.serving, quote.promise.deadline_at - SECOND)
    after = cache.state(other, quote.promise.deadline_at)
    assert before is not None and after is not None
    assert (before.n_updates, after.n_updates) == (0, 1)


def test_workers_share_what_the_ledger_decided(
    make_client: ClientFactory, registry_root: Path, trained: TrainedBundles
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    worker = make_client(max_order_age_days=90, control_refresh_seconds=0.0)
    other_worker = make_client(max_order_age_days=90, control_refresh_seconds=0.0)
    first = worker.post("/v1/quotes", json=quote_body()).json()
    placed = (dt.datetime.now(UTC) - dt.timedelta(days=60)).isoformat()
    body = {"orders": [{**quote_body(), "ordered_at": placed} for _ in range(8)]}
    assert worker.post("/v1/quotes/batch", json=body).status_code == 201  # all overdue, open

    later = other_worker.post("/v1/quotes", json=quote_body()).json()

    assert first["level"] == pytest.approx(0.95)
    assert later["level"] > 0.95 and later["buffer_hours"] > first["buffer_hours"]
