"""Online control of the adaptive buffer: what outcomes and open orders say since calibration.

A calibrated buffer is as old as its calibration slice. Two signals move it between refits
(conformal PID control, Angelopoulos, Candes & Tibshirani, "Conformal PID control for time
series prediction", 2023):

- **Quantile tracking with an integral term, learnt at deadlines.** Per segment key (every depth:
  global, store, store and lens) a leaky sum of misses `M <- leak * M + (late - target)`. Each
  promise is learnt at its deadline, kept or broken, never before: learning a kept promise at
  its (early) fulfilment and a broken one at its deadline would feed the controller mostly kept
  promises at first and shorten promises just when they start to break. The policy turns `M` into
  a bounded offset in units of the segment's score spread (`models.policies.AdaptivePolicy`).
- **A nowcast of the shift (the scorecaster).** The middle of the residual distribution is known
  long before its tail: a censored median needs only half the durations. `nowcast_median` is
  the median residual of the orders in progress in a recent window, by a Kaplan-Meier estimate
  with delayed entry (each order enters the risk set at its residual when the window opens,
  orders still open are censored at their age), so a slow-down shows as soon as orders age past
  their expected completion, weeks before their deadlines.

The state is a pure function of the order history: `learn` is a left fold over decided
promises in deadline order, so a back-test stepping through time and a service replaying its
ledger from scratch reach the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ControlState:
    """Per segment key: the leaky sum of misses, outcomes learnt, and the nowcast median.

    `medians` holds the nowcast's median residual score of the key's recent orders (in the
    policy's score scale) and `events` how many fulfilments it rests on."""

    misses: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    medians: Mapping[str, float] = field(default_factory=dict)
    events: Mapping[str, int] = field(default_factory=dict)
    n_updates: int = 0


def learn(
    state: ControlState,
    paths: Sequence[Sequence[str]],
    late: BoolArray,
    target: float,
    leaks: Mapping[str, float],
) -> ControlState:
    """The state after learning decided promises, in the order given (their deadlines').

    `paths[i]` are the segment keys promise i counts for (global first); `leaks[key]` the share
    of the sum kept per outcome (1: a plain integral); a key without one keeps everything."""
    misses = dict(state.misses)
    counts = dict(state.counts)
    for path, was_late in zip(paths, late.tolist(), strict=True):
        error = (1.0 if was_late else 0.0) - target
        for key in path:
            misses[key] = leaks.get(key, 1.0) * misses.get(key, 0.0) + error
            counts[key] = counts.get(key, 0) + 1
    return ControlState(
        misses=misses,
        counts=counts,
        medians=state.medians,
        events=state.events,
        n_updates=state.n_updates + int(late.size),
    )


def with_nowcast(
    state: ControlState, medians: Mapping[str, float], events: Mapping[str, int]
) -> ControlState:
    """The state with the nowcast replaced (keys without an estimate are left out)."""
    return ControlState(
        misses=state.misses,
        counts=state.counts,
        medians=dict(medians),
        events=dict(events),
        n_updates=state.n_updates,
    )


def residual_scores(hours: FloatArray, expected_hours: FloatArray, relative: bool) -> FloatArray:
    """Hours from the clock start against the expectation, on the policy's scale."""
    if relative:
        return hours / np.maximum(expected_hours, 1e-9) - 1.0
    return hours - expected_hours


def nowcast_median(
    clock_start_s: FloatArray,
    expected_hours: FloatArray,
    fulfilled_s: FloatArray,
    now_s: float,
    window_hours: float,
    relative: bool,
) -> tuple[float | None, int]:
    """(median residual score, fulfilments seen) of orders in progress in the last window.

    Kaplan-Meier with delayed entry over the orders started before `now_s` and not fulfilled
    before the window opened: each enters at its residual when the window opens (or at its
    start), leaves at its fulfilment (an event) or at `now_s` while open (censored). When the
    estimate does not reach one half, the largest residual seen (a lower bound of the median);
    None when no order was in progress or none was fulfilled in the window."""
    opens_s = now_s - window_hours * 3600.0
    open_now = ~(fulfilled_s <= now_s)
    seen = (clock_start_s < now_s) & (open_now | (fulfilled_s > opens_s))
    if not seen.any():
        return None, 0
    start = clock_start_s[seen]
    expected = expected_hours[seen]
    is_event = ~open_now[seen]
    leaves_s = np.where(is_event, fulfilled_s[seen], now_s)
    entry = residual_scores((np.maximum(start, opens_s) - start) / 3600.0, expected, relative)
    exit_ = residual_scores((leaves_s - start) / 3600.0, expected, relative)
    events = np.sort(exit_[is_event])
    if events.size == 0:
        return None, 0
    values, deaths = np.unique(events, return_counts=True)
    # In the risk set at x: entered by x and not yet left (leaving at x counts as there).
    entered = np.searchsorted(np.sort(entry), values, side="right")
    left = np.searchsorted(np.sort(exit_), values, side="left")
    at_risk = np.maximum(entered - left, deaths)
    survival = np.cumprod(1.0 - deaths / at_risk)
    reached = np.flatnonzero(survival <= 0.5)
    if reached.size == 0:
        # More than half survive everything seen: the median lies beyond the oldest order, a
        # lower bound that is itself the signal (a slow-down before any slowed order is done).
        return float(exit_.max()), int(events.size)
    return float(values[reached[0]]), int(events.size)
