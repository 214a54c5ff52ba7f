"""Buffer policies: conformal quantiles, censoring, segments with fallback, adaptive levels."""

from __future__ import annotations

import numpy as np
import pytest

from models.policies import (
    GLOBAL_SEGMENT,
    AdaptiveState,
    CalibrationSlice,
    ConformalPolicy,
    PolicyConfig,
    make_policy,
    score_distribution,
    update_adaptive,
)


def slice_of(
    expected: np.ndarray,
    needed: np.ndarray,
    labels: list[tuple[str | None, ...]],
    censored: np.ndarray | None = None,
) -> CalibrationSlice:
    return CalibrationSlice(
        expected_hours=expected,
        needed_hours=needed,
        censored=np.zeros(expected.size, dtype=bool) if censored is None else censored,
        segment_labels=labels,
    )


def test_without_censoring_the_quantile_is_the_conformal_order_statistic() -> None:
    scores = np.arange(1.0, 101.0)  # 1..100
    dist = score_distribution(scores, np.zeros(100, dtype=bool))
    # ceil((1 - 0.05) * (100 + 1)) = 96th smallest
    assert dist.conformal_quantile(0.05) == 96.0
    assert dist.quantile(0.5) == 50.0


def test_censored_slow_orders_raise_the_quantile_rather_than_vanish() -> None:
    rng = np.random.default_rng(1)
    true = rng.exponential(10.0, 5000)
    cutoff = rng.uniform(5.0, 60.0, 5000)  # independent administrative censoring
    observed = np.minimum(true, cutoff)
    censored = true > cutoff
    dropped = score_distribution(observed[~censored], np.zeros(int((~censored).sum()), bool))
    km = score_distribution(observed, censored)
    truth = float(np.quantile(true, 0.9))
    assert dropped.quantile(0.9) < truth * 0.9  # dropping open orders promises too short
    assert km.quantile(0.9) == pytest.approx(truth, rel=0.08)


def test_conformal_keeps_the_target_on_exchangeable_orders() -> None:
    rng = np.random.default_rng(2)
    expected = rng.uniform(50, 150, 6000)
    needed = expected * rng.lognormal(0.0, 0.3, 6000)
    config = PolicyConfig(name="conformal", target_late_rate=0.05)
    policy = make_policy(config).fit(slice_of(expected[:2000], needed[:2000], [()] * 2000))
    answer = policy.buffers(expected[2000:], [()] * 4000)
    late = needed[2000:] > expected[2000:] + answer.buffer_hours
    assert 0.035 <= late.mean() <= 0.065
    assert (answer.buffer_hours >= 0).all()


def test_relative_scale_gives_longer_orders_longer_buffers() -> None:
    rng = np.random.default_rng(3)
    expected = rng.uniform(10, 200, 3000)
    needed = expected * rng.lognormal(0.0, 0.2, 3000)
    config = PolicyConfig(name="conformal", target_late_rate=0.1, relative=True)
    policy = make_policy(config).fit(slice_of(expected, needed, [()] * 3000))
    short, long = policy.buffers(np.array([10.0, 100.0]), [(), ()]).buffer_hours
    assert long == pytest.approx(10 * short)


def test_segments_get_their_own_buffer_and_small_ones_fall_back() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    stores = rng.choice(["FAST", "SLOW", "TINY"], n, p=[0.5, 0.48, 0.02])
    lens = rng.choice(["sv", "prog"], n)
    expected = np.full(n, 100.0)
    spread = np.where(stores == "SLOW", 60.0, 10.0)
    needed = expected + rng.normal(0, 1, n) * spread
    labels = list(zip(stores.tolist(), lens.tolist(), strict=True))
    config = PolicyConfig(
        name="conformal",
        target_late_rate=0.05,
        segments=("store_id", "lens_type"),
        min_segment_size=200,
    )
    policy = make_policy(config).fit(slice_of(expected, needed, labels))
    assert isinstance(policy, ConformalPolicy)
    answer = policy.buffers(
        np.full(4, 100.0), [("FAST", "sv"), ("SLOW", "sv"), ("TINY", "sv"), ("NEW", "sv")]
    )
    assert answer.segments[:2] == ["FAST / sv", "SLOW / sv"]
    assert answer.buffer_hours[1] > 3 * answer.buffer_hours[0]
    # TINY has too few orders for itself or its store: the global buffer serves it.
    assert answer.segments[2:] == [GLOBAL_SEGMENT, GLOBAL_SEGMENT]
    fallbacks = policy.fallbacks(labels)
    assert fallbacks["TINY / sv"] == GLOBAL_SEGMENT
    assert "FAST / sv" not in fallbacks


def test_adaptive_level_rises_after_late_outcomes_and_buffers_grow() -> None:
    rng = np.random.default_rng(5)
    expected = np.full(1000, 100.0)
    needed = expected + rng.normal(0, 10, 1000)
    config = PolicyConfig(name="adaptive", target_late_rate=0.05, adaptive_step=0.02)
    policy = make_policy(config).fit(slice_of(expected, needed, [()] * 1000))
    state = AdaptiveState()
    before = policy.buffer_one(100.0, ())[0]
    for _ in range(5):
        state = update_adaptive(state, GLOBAL_SEGMENT, True, 0.05, 0.02)
    after, _, level = policy.buffer_one(100.0, (), state=state)
    assert state.alpha(GLOBAL_SEGMENT, 0.05) < 0.05
    assert after > before and level > 0.95
    for _ in range(200):
        state = update_adaptive(state, GLOBAL_SEGMENT, False, 0.05, 0.02)
    assert policy.buffer_one(100.0, (), state=state)[0] < before


def test_fixed_and_proportional_use_the_spec_value_or_calibrate() -> None:
    expected = np.full(500, 10.0)
    needed = expected + np.linspace(-5, 5, 500)
    given = make_policy(PolicyConfig("fixed", 0.05, fixed_buffer_hours=48.0))
    assert given.fit(slice_of(expected, needed, [()] * 500)).buffer_one(10.0, ())[0] == 48.0
    calibrated = make_policy(PolicyConfig("fixed", 0.05)).fit(
        slice_of(expected, needed, [()] * 500)
    )
    assert 4.4 < calibrated.buffer_one(10.0, ())[0] <= 5.0
    share = make_policy(PolicyConfig("proportional", 0.05, proportional_buffer=0.3))
    assert share.fit(slice_of(expected, needed, [()] * 500)).buffer_one(20.0, ())[0] == 6.0
