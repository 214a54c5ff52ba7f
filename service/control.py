"""The adaptive policy's control state, replayed from the ledger (`models.control`, issue 13).

The state is a pure function of the order history, so the service stores none of it: a worker
replays it from the ledger's quotes and outcomes, as the back-test builds it step by step
(`training.backtest.replay.quote_adaptive`), and quotes with it for
`PROMISE_CONTROL_REFRESH_SECONDS`.

What the replay at `now` reads (promises given by then, outcomes recorded by then):

- **Learnt**: the promises of every adaptive model version (a weekly refit keeps what its
  predecessor learnt; revisions count as promises of their own: the customer was given both)
  whose deadline has passed, in deadline order, ties in the order they were given. Kept iff an
  outcome recorded by now says fulfilled at or before the deadline; an order with none is late,
  as for the drift alarms (open past the deadline is late), and turns kept on the first replay
  after an outcome recorded late shows it was ready in time.
- **Only the newest `HORIZON_MEMORIES` memories of them.** A segment's controller keeps a
  share `leak` of its miss sum per outcome, so the promise learnt m / (1 - leak) outcomes ago
  weighs at most e^-m: the newest 5 / (1 - leak) promises, for the longest memory of any
  segment (the global one's, whose memory is the calibration span and lag counted in outcomes),
  leave out less than 0.7% of any miss sum. A segment's share of them is its share of the
  traffic, so each segment keeps about five of its own memories too.
- **The nowcast**: the original quotes (one per order: a revision's expectation is conditional
  on the order being open) still in progress: no outcome recorded by now, or fulfilled after
  the widest nowcast window opened; given within `NOWCAST_LOOKBACK_WINDOWS` widest windows (an
  order open longer entered the window at a residual far beyond the median it estimates).

Segment paths come from the served policy (`AdaptiveBuffers.paths`) over each quote's stored
segment values, so quotes of an older version with other segments still count where they fall.

A worker's state is at most `PROMISE_CONTROL_REFRESH_SECONDS` old (`ControlCache`): a promise
falling due or an outcome recorded reaches its adaptive quotes that much later at most.
`python -m bench.control_replay` times a replay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from models.buffers import AdaptiveBuffers
from models.control import ControlState, learn, with_nowcast
from models.quoting import QuoteEngine
from service.bundles import Serving
from service.ledger import Ledger
from service.ledger.stats import DecidedPromises, OrdersInProgress

ADAPTIVE = "adaptive"
# The replay learns the newest promises of this many memories of the longest-remembering
# segment (what is left out weighs at most e^-5 of a miss sum).
HORIZON_MEMORIES = 5.0
# Orders in progress are read from quotes given within this many of the widest nowcast window.
NOWCAST_LOOKBACK_WINDOWS = 5.0


def learning_limit(policy: AdaptiveBuffers) -> int:
    """How many of the newest decided promises a replay learns (`HORIZON_MEMORIES` memories
    of the segment that remembers longest, in outcomes)."""
    memories = [1.0 / max(1.0 - leak, 1e-12) for leak in policy.leaks().values()]
    return math.ceil(HORIZON_MEMORIES * max(memories, default=1.0))


def widest_window_hours(policy: AdaptiveBuffers) -> float:
    """The longest nowcast window of any segment, in hours."""
    return max(control.window_hours for control in policy.controls.values())


def replay(
    policy: AdaptiveBuffers,
    target_late_rate: float,
    decided: DecidedPromises,
    in_progress: OrdersInProgress,
    now_s: float,
) -> ControlState:
    """The control state at `now_s` from the promises decided by then (in deadline order, each
    kept or broken) and the orders in progress (fulfilment NaN while unknown; one after `now_s`
    reads as open)."""
    paths = policy.paths(decided.labels)
    state = learn(ControlState(), paths, decided.late, target_late_rate, policy.leaks())
    if not policy.use_nowcast:
        return state
    medians, events = policy.nowcast(
        in_progress.clock_start_s,
        in_progress.expected_hours,
        in_progress.fulfilled_s,
        policy.paths(in_progress.labels),
        now_s,
    )
    return with_nowcast(state, medians, events)


def control_state(engine: QuoteEngine, ledger: Ledger, now_utc: dt.datetime) -> ControlState | None:
    """The engine's control state at `now_utc`, replayed from the ledger (two queries); None
    for a policy other than adaptive."""
    policy = engine.buffer_rule
    if not isinstance(policy, AdaptiveBuffers):
        return None
    segments = engine.segments
    decided = ledger.stats.decided_promises(ADAPTIVE, segments, now_utc, learning_limit(policy))
    if policy.use_nowcast:
        widest = dt.timedelta(hours=widest_window_hours(policy))
        in_progress = ledger.stats.promises_in_progress(
            ADAPTIVE,
            segments,
            now_utc,
            given_since=now_utc - NOWCAST_LOOKBACK_WINDOWS * widest,
            fulfilled_since=now_utc - widest,
        )
    else:
        in_progress = OrdersInProgress.none()
    return replay(policy, engine.target_late_rate, decided, in_progress, now_utc.timestamp())


@dataclass(frozen=True, slots=True)
class _Replayed:
    version: str
    at: dt.datetime
    state: ControlState | None


class ControlCache:
    """This worker's control state for the served model, replayed at most every
    `refresh_seconds` of the requests' clock (and again when that clock goes back or the
    served version changes)."""

    def __init__(self, ledger: Ledger, refresh_seconds: float) -> None:
        self.ledger = ledger
        self.refresh_seconds = refresh_seconds
        self._replayed: _Replayed | None = None
        self._lock = threading.Lock()

    def state(self, serving: Serving, now_utc: dt.datetime) -> ControlState | None:
        """The state to quote with at `now_utc` (None unless the engine is adaptive)."""
        if not isinstance(serving.bundle.engine.buffer_rule, AdaptiveBuffers):
            return None
        hit = self._fresh(serving.version, now_utc)
        if hit is not None:
            return hit.state
        with self._lock:  # one replay at a time; the others wait for it and share it
            hit = self._fresh(serving.version, now_utc)
            if hit is None:
                hit = _Replayed(
                    serving.version,
                    now_utc,
                    control_state(serving.bundle.engine, self.ledger, now_utc),
                )
                self._replayed = hit
        return hit.state

    async def current(self, serving: Serving, now_utc: dt.datetime) -> ControlState | None:
        """`state` for a coroutine: a fresh state at once, a replay (ledger queries) in a
        thread."""
        if not isinstance(serving.bundle.engine.buffer_rule, AdaptiveBuffers):
            return None
        hit = self._fresh(serving.version, now_utc)
        if hit is not None:
            return hit.state
        return await asyncio.to_thread(self.state, serving, now_utc)

    def view(self, serving: Serving | None, now_utc: dt.datetime) -> AdaptiveView | None:
        """The served adaptive policy's buffers per segment at `now_utc` (None without an
        adaptive model), from the state quotes are given with."""
        if serving is None:
            return None
        return adaptive_view(serving.bundle.engine, self.state(serving, now_utc))

    def _fresh(self, version: str, now_utc: dt.datetime) -> _Replayed | None:
        hit = self._replayed
        if hit is None or hit.version != version:
            return None
        age = (now_utc - hit.at).total_seconds()
        return hit if 0.0 <= age < self.refresh_seconds else None


@dataclass(frozen=True, slots=True)
class SegmentAdaptive:
    """Where the adaptive policy holds one segment's buffer now.

    `offset`: how much longer (negative: shorter) its buffer is than the calibrated one, in
    hours on the absolute scale or as a share of the expected duration on the relative scale;
    `level`: the share of the calibration slice's orders the buffer would have kept;
    `learnt`: the decided promises the segment's controller has learnt (within the horizon)."""

    offset: float
    level: float
    learnt: int


@dataclass(frozen=True, slots=True)
class AdaptiveView:
    """The served adaptive policy's buffers per segment key, and the scale of their offsets."""

    scale: Literal["hours", "relative"]
    segments: Mapping[str, SegmentAdaptive]


def adaptive_view(engine: QuoteEngine, state: ControlState | None) -> AdaptiveView | None:
    """Each calibrated segment's buffer under `state` against the calibrated one (None for a
    policy other than adaptive)."""
    policy = engine.buffer_rule
    if not isinstance(policy, AdaptiveBuffers):
        return None
    segments: dict[str, SegmentAdaptive] = {}
    for key, segment in policy.table.items():
        score, level = policy.score_at(segment, state)
        # As the buffer is served: never below zero.
        offset = max(score, 0.0) - max(segment.score, 0.0)
        learnt = 0 if state is None else state.counts.get(key, 0)
        segments[key] = SegmentAdaptive(offset=offset, level=level, learnt=learnt)
    return AdaptiveView(scale="relative" if policy.relative else "hours", segments=segments)
