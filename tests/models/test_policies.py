"""Buffer policies: conformal quantiles, censoring, partially pooled segments, online control."""

from __future__ import annotations

import numpy as np
import pytest

from models.buffers import AdaptiveBuffers
from models.control import MAX_CONTROL_OFFSET, ControlState, learn
from models.policies import AdaptivePolicy, BufferPolicy, ConformalPolicy, make_policy
from models.scores import CalibrationSlice, score_distribution
from models.segments import GLOBAL_SEGMENT


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
    policy = make_policy("conformal", target_late_rate=0.05)
    policy.fit(slice_of(expected[:2000], needed[:2000], [()] * 2000))
    answer = policy.buffers(expected[2000:], [()] * 4000)
    late = needed[2000:] > expected[2000:] + answer.buffer_hours
    assert 0.035 <= late.mean() <= 0.065
    assert (answer.buffer_hours >= 0).all()


def test_relative_scale_gives_longer_orders_longer_buffers() -> None:
    rng = np.random.default_rng(3)
    expected = rng.uniform(10, 200, 3000)
    needed = expected * rng.lognormal(0.0, 0.2, 3000)
    policy = make_policy("conformal", target_late_rate=0.1, relative=True)
    policy.fit(slice_of(expected, needed, [()] * 3000))
    short, long = policy.buffers(np.array([10.0, 100.0]), [(), ()]).buffer_hours
    assert long == pytest.approx(10 * short)


def test_segments_get_their_own_buffer_and_small_ones_borrow_from_their_parent() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    stores = rng.choice(["FAST", "SLOW", "TINY"], n, p=[0.5, 0.48, 0.02])
    lens = rng.choice(["sv", "prog"], n)
    expected = np.full(n, 100.0)
    spread = np.where(stores == "SLOW", 60.0, np.where(stores == "TINY", 30.0, 10.0))
    needed = expected + rng.normal(0, 1, n) * spread
    labels = list(zip(stores.tolist(), lens.tolist(), strict=True))
    policy = make_policy("conformal", target_late_rate=0.05, segments=("store_id", "lens_type"))
    policy.fit(slice_of(expected, needed, labels))
    assert isinstance(policy, ConformalPolicy)
    answer = policy.buffers(
        np.full(4, 100.0), [("FAST", "sv"), ("SLOW", "sv"), ("TINY", "sv"), ("NEW", "sv")]
    )
    assert answer.segments[:3] == ["FAST / sv", "SLOW / sv", "TINY / sv"]
    assert answer.buffer_hours[1] > 3 * answer.buffer_hours[0]
    # Big segments keep nearly their own quantile; TINY (about 60 orders, 30 with sv) gets one
    # between its own and its parent's, weighted by how much it knows.
    fast = policy.rule.table["FAST / sv"]
    tiny_store, tiny = policy.rule.table["TINY"], policy.rule.table["TINY / sv"]
    assert fast.own_weight > 0.9
    members = (stores == "TINY") & (lens == "sv")
    own = score_distribution(needed[members] - 100.0, np.zeros(int(members.sum()), bool))
    own_quantile = own.conformal_quantile(0.05)
    low, high = sorted((own_quantile, tiny_store.score))
    assert 0.0 < tiny.own_weight < 1.0
    assert low < tiny.score < high
    assert tiny.path == (GLOBAL_SEGMENT, "TINY", "TINY / sv")
    # A store never seen is served by the global buffer.
    assert answer.segments[3] == GLOBAL_SEGMENT
    fallbacks = policy.rule.fallbacks([*labels, ("NEW", "sv")])
    assert fallbacks["NEW / sv"] == GLOBAL_SEGMENT
    assert "FAST / sv" not in fallbacks


def test_identical_segments_pool_fully_and_distinct_ones_not_at_all() -> None:
    rng = np.random.default_rng(8)
    n = 4000
    stores = rng.choice(["A", "B"], n)
    expected = np.full(n, 50.0)
    same = expected + rng.normal(0, 10, n)
    apart = expected + rng.normal(0, 1, n) * np.where(stores == "A", 5.0, 40.0)
    labels = [(s,) for s in stores.tolist()]
    params = {"target_late_rate": 0.05, "segments": ("store_id",)}
    pooled = make_policy("conformal", **params).fit(slice_of(expected, same, labels))
    distinct = make_policy("conformal", **params).fit(slice_of(expected, apart, labels))
    assert isinstance(pooled, ConformalPolicy) and isinstance(distinct, ConformalPolicy)
    assert max(pooled.rule.table[s].own_weight for s in "AB") < 0.5
    assert min(distinct.rule.table[s].own_weight for s in "AB") > 0.99


def control_slice(n: int = 2000, seed: int = 5) -> CalibrationSlice:
    rng = np.random.default_rng(seed)
    expected = np.full(n, 100.0)
    needed = expected + rng.normal(0, 10, n)
    placed = np.linspace(0.0, 1000.0 * 3600.0, n)  # two orders an hour
    return CalibrationSlice(
        expected_hours=expected,
        needed_hours=needed,
        censored=np.zeros(n, dtype=bool),
        segment_labels=[()] * n,
        reached_hours=needed,
        placed_s=placed,
        cutoff_s=float(placed[-1]) + 200.0 * 3600.0,
    )


def one_buffer(
    policy: BufferPolicy, expected_hours: float = 100.0, state: ControlState | None = None
) -> tuple[float, float]:
    """(buffer hours, level) for one unsegmented order."""
    answer = policy.buffers(np.array([expected_hours]), [()], state=state)
    return float(answer.buffer_hours[0]), float(answer.levels[0])


def test_adaptive_buffer_grows_after_broken_promises_and_shrinks_after_kept_ones() -> None:
    policy = make_policy("adaptive", target_late_rate=0.05).fit(control_slice())
    assert isinstance(policy, AdaptivePolicy)
    rule = policy.rule
    assert isinstance(rule, AdaptiveBuffers)
    control = rule.controls[GLOBAL_SEGMENT]
    # About 200 promises are open at once (2 an hour, ~100 hours each).
    assert control.flight == pytest.approx(200.0, rel=0.1)
    before = one_buffer(policy)[0]
    path = [(GLOBAL_SEGMENT,)]
    state = ControlState()
    for _ in range(100):
        state = learn(state, path, np.array([True]), 0.05, rule.leaks())
    after, level = one_buffer(policy, state=state)
    assert after > before and level > 0.95
    for _ in range(3000):
        state = learn(state, path, np.array([False]), 0.05, rule.leaks())
    assert one_buffer(policy, state=state)[0] < before


def test_adaptive_offset_is_bounded_however_many_promises_break() -> None:
    policy = make_policy("adaptive", target_late_rate=0.05).fit(control_slice())
    assert isinstance(policy, AdaptivePolicy)
    rule = policy.rule
    assert isinstance(rule, AdaptiveBuffers)
    state = ControlState()
    for _ in range(20):
        state = learn(state, [(GLOBAL_SEGMENT,)] * 500, np.ones(500, bool), 0.05, rule.leaks())
    segment = rule.table[GLOBAL_SEGMENT]
    control = rule.controls[GLOBAL_SEGMENT]
    score, _ = rule.score_at(segment, state)
    assert score == pytest.approx(segment.score + MAX_CONTROL_OFFSET * control.scale)
    # All promises kept for ever: never below the median score.
    kept = ControlState()
    for _ in range(20):
        kept = learn(kept, [(GLOBAL_SEGMENT,)] * 500, np.zeros(500, bool), 0.05, rule.leaks())
    assert rule.score_at(segment, kept)[0] >= control.floor


def test_fixed_and_proportional_use_the_spec_value_or_calibrate() -> None:
    expected = np.full(500, 10.0)
    needed = expected + np.linspace(-5, 5, 500)
    given = make_policy("fixed", target_late_rate=0.05, fixed_buffer_hours=48.0)
    assert one_buffer(given.fit(slice_of(expected, needed, [()] * 500)), 10.0)[0] == 48.0
    calibrated = make_policy("fixed", target_late_rate=0.05).fit(
        slice_of(expected, needed, [()] * 500)
    )
    assert 4.4 < one_buffer(calibrated, 10.0)[0] <= 5.0
    share = make_policy("proportional", target_late_rate=0.05, proportional_buffer=0.3)
    assert one_buffer(share.fit(slice_of(expected, needed, [()] * 500)), 20.0)[0] == 6.0
