"""Online control: learning at deadlines as a left fold, and the nowcast of open orders."""

from __future__ import annotations

import numpy as np
import pytest

from models.control import ControlState, learn, nowcast_median

DAY_S = 86_400.0
# Synthetic chain: 30 orders a day, about five days each; from SHOCK_DAY on every new order takes
# SHOCK_HOURS longer (a slower supplier), the kind of shock that begins after a cut-off.
ORDERS_PER_DAY = 30
SHOCK_DAY = 60
SHOCK_HOURS = 72.0
# The nowcast must see half the shock within this many days of its start (test bound): a
# median needs orders to age past their expected completion (~5 days) plus half the shock,
# where learning from deadlines needs the promises (~9 days) to expire first.
DETECTION_BOUND_DAYS = 10


def synthetic_history(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clock start, expected hours, fulfilled at) in seconds and hours, 120 days of orders."""
    rng = np.random.default_rng(seed)
    n = ORDERS_PER_DAY * 120
    start = np.sort(rng.uniform(0.0, 120 * DAY_S, n))
    expected = rng.uniform(80.0, 160.0, n)
    hours = expected * rng.lognormal(0.0, 0.15, n)
    hours += np.where(start >= SHOCK_DAY * DAY_S, SHOCK_HOURS, 0.0)
    return start, expected, start + hours * 3600.0


# About 120 fulfilments in the window, as `AdaptivePolicy` sizes it (NOWCAST_EVENTS).
WINDOW_HOURS = 4 * 24.0


def shift_on(day: float, start: np.ndarray, expected: np.ndarray, done: np.ndarray) -> float:
    median, events = nowcast_median(start, expected, done, day * DAY_S, WINDOW_HOURS, False)
    assert median is not None and events > 0
    return median


def test_the_nowcast_sees_a_shock_after_a_cutoff_within_the_bound() -> None:
    start, expected, done = synthetic_history()
    baseline = shift_on(SHOCK_DAY, start, expected, done)
    # Before the shock the median residual stays put.
    for day in range(30, SHOCK_DAY + 1, 5):
        assert abs(shift_on(day, start, expected, done) - baseline) < 0.15 * SHOCK_HOURS
    seen = next(
        day
        for day in np.arange(SHOCK_DAY, SHOCK_DAY + 30, 0.5)
        if shift_on(day, start, expected, done) - baseline >= SHOCK_HOURS / 2
    )
    assert seen - SHOCK_DAY <= DETECTION_BOUND_DAYS
    # And it reaches the whole shock once the window holds only shocked orders.
    late = shift_on(SHOCK_DAY + 30, start, expected, done) - baseline
    assert late == pytest.approx(SHOCK_HOURS, rel=0.25)


def test_the_nowcast_uses_nothing_after_now() -> None:
    start, expected, done = synthetic_history()
    now = 70 * DAY_S
    future_hidden = np.where(done <= now, done, np.nan)
    assert nowcast_median(start, expected, done, now, 14 * 24.0, False) == nowcast_median(
        start, expected, future_hidden, now, 14 * 24.0, False
    )


def test_open_orders_count_as_censored_not_as_missing() -> None:
    # Half the orders are still open at their age: dropping them would halve the median.
    start = np.zeros(200)
    expected = np.full(200, 10.0)
    done = np.where(np.arange(200) % 2 == 0, np.arange(200) * 3600.0 * 0.1, np.nan)
    median, events = nowcast_median(start, expected, done, 30.0 * 3600.0, 100.0, False)
    assert events == 100
    assert median is not None and median > 0.0  # beyond the fulfilled ones' median (~0 h)


def test_learning_is_a_left_fold_in_deadline_order() -> None:
    rng = np.random.default_rng(3)
    late = rng.random(300) < 0.2
    paths = [("all", "MAN") if i % 3 else ("all", "LDS") for i in range(300)]
    leaks = {"all": 0.99, "MAN": 0.95}
    at_once = learn(ControlState(), paths, late, 0.05, leaks)
    state = ControlState()
    for i in range(300):
        state = learn(state, paths[i : i + 1], late[i : i + 1], 0.05, leaks)
    assert state == at_once
    # A key without a leak is a plain sum of (late - target).
    lds = [i for i in range(300) if i % 3 == 0]
    assert at_once.misses["LDS"] == pytest.approx(float(late[lds].sum()) - 0.05 * len(lds))
    assert at_once.counts == {"all": 300, "MAN": 200, "LDS": 100}
