"""One contract for every buffer policy, the way scikit-learn's `parametrize_with_checks` runs
one suite over every estimator: `fit` returns the policy, buffers are never negative, an unfitted
policy says so, `clone` round-trips the parameters, `set_params` changes what it answers, and
its two ways of answering (`buffers`, `column_buffers`) agree."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from models.control import ControlState
from models.errors import SpecError
from models.policies import POLICY_NAMES, BufferAnswer, BufferPolicy, make_policy
from models.scores import CalibrationSlice
from models.segments import GLOBAL_SEGMENT

STORES = ["A", "B", "C", "tiny"]
SEGMENTS = ("store",)
# Every kind, and the parameters that change how it calibrates.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("fixed", {}),
    ("fixed", {"fixed_buffer_hours": 12.0}),
    ("proportional", {}),
    ("proportional", {"proportional_buffer": 0.2}),
    ("quantile", {}),
    ("conformal", {"segments": SEGMENTS}),
    ("conformal", {"segments": SEGMENTS, "relative": True}),
    ("adaptive", {"segments": SEGMENTS}),
    ("adaptive", {"relative": True, "control_gain": 3.0, "use_nowcast": False}),
]
IDS = [f"{name}-{'-'.join(params) or 'defaults'}" for name, params in CASES]
# Misses and a nowcast that move the adaptive buffer both ways; others ignore the state.
STATE = ControlState(
    misses={GLOBAL_SEGMENT: -40.0, "A": 25.0, "B": -10.0},
    counts={GLOBAL_SEGMENT: 900, "A": 300, "B": 300},
    medians={GLOBAL_SEGMENT: -0.5, "B": 0.8},
    events={GLOBAL_SEGMENT: 400, "B": 100},
)


def calibration(n: int = 1200, seed: int = 0) -> CalibrationSlice:
    """Orders of four stores, some faster than expected (negative scores), some still open."""
    rng = np.random.default_rng(seed)
    store = rng.choice(STORES, n, p=[0.4, 0.35, 0.24, 0.01])
    expected = rng.uniform(5.0, 120.0, n)
    spread = np.select([store == "A", store == "B"], [0.1, 0.4], 0.25)
    needed = expected * rng.lognormal(-0.05, spread)
    censored = rng.random(n) < 0.05
    placed = np.sort(rng.uniform(0.0, 2000.0 * 3600.0, n))
    return CalibrationSlice(
        expected_hours=expected,
        needed_hours=needed,
        censored=censored,
        segment_labels=[(s,) for s in store.tolist()],
        reached_hours=needed,
        placed_s=placed,
        cutoff_s=float(placed[-1]) + 100.0 * 3600.0,
    )


def new_orders(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(expected hours, quantile hours, feature columns): stores seen, unseen and missing."""
    rng = np.random.default_rng(seed)
    expected = rng.uniform(1.0, 200.0, n)
    quantile = expected * rng.uniform(0.7, 1.8, n)  # sometimes below the expectation
    store = rng.choice([*STORES, "new"], n).astype(object)
    store[::29] = None
    return expected, quantile, {"store": store}


def answer(policy: BufferPolicy, state: ControlState | None = None, seed: int = 1) -> BufferAnswer:
    expected, quantile, columns = new_orders(seed=seed)
    labels = [(s,) for s in columns["store"].tolist()]
    return policy.buffers(expected, labels, quantile, state)


def same(a: BufferAnswer, b: BufferAnswer) -> bool:
    return (
        np.array_equal(a.buffer_hours, b.buffer_hours)
        and np.array_equal(a.levels, b.levels)
        and a.segments == b.segments
    )


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    name, params = request.param
    return name, {"target_late_rate": 0.1, **params}


def test_every_policy_name_has_a_case() -> None:
    assert {name for name, _ in CASES} == set(POLICY_NAMES)


def test_fit_returns_the_policy(case: tuple[str, dict[str, Any]]) -> None:
    policy = make_policy(case[0], **case[1])
    assert policy.fit(calibration()) is policy
    check_is_fitted(policy)


def test_buffers_are_never_negative(case: tuple[str, dict[str, Any]]) -> None:
    policy = make_policy(case[0], **case[1]).fit(calibration())
    expected, quantile, columns = new_orders()
    for state in (None, STATE):
        got = answer(policy, state)
        assert (got.buffer_hours >= 0.0).all()
        assert ((got.levels > 0.0) & (got.levels <= 1.0)).all()
        by_columns = policy.column_buffers(expected, columns, SEGMENTS, quantile, state)
        assert (by_columns.buffer_hours >= 0.0).all()


def test_an_unfitted_policy_says_so(case: tuple[str, dict[str, Any]]) -> None:
    policy = make_policy(case[0], **case[1])
    expected, quantile, columns = new_orders()
    with pytest.raises(NotFittedError):
        check_is_fitted(policy)
    with pytest.raises(NotFittedError, match="not fitted yet: call fit first"):
        policy.buffers(expected, [("A",)] * expected.size, quantile)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        policy.column_buffers(expected, columns, SEGMENTS, quantile)


def test_clone_round_trips_the_parameters(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    policy = make_policy(name, **params).fit(calibration())
    copy = clone(policy)
    assert type(copy) is type(policy)
    assert copy.get_params() == policy.get_params()
    assert {key: policy.get_params()[key] for key in params} == params
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)  # a clone holds the parameters, not what was learnt
    assert same(answer(copy.fit(calibration())), answer(policy))


def test_calibrating_drops_only_a_buffer_given_by_hand(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    policy = make_policy(name, **params).fit(calibration())
    swept = policy.calibrating()
    with pytest.raises(NotFittedError):
        check_is_fitted(swept)
    given = {key for key in ("fixed_buffer_hours", "proportional_buffer") if key in params}
    kept = {k: v for k, v in policy.get_params().items() if k not in given}
    assert {k: v for k, v in swept.get_params().items() if k not in given} == kept
    assert all(swept.get_params()[key] is None for key in given)
    calibrated = make_policy(name, **{k: v for k, v in params.items() if k not in given})
    assert same(answer(swept.fit(calibration())), answer(calibrated.fit(calibration())))
    if given:  # the hand-set buffer is not the one the target calibrates to
        assert not same(answer(swept), answer(policy))


def test_set_params_changes_what_the_policy_answers(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    strict = make_policy(name, **params).set_params(target_late_rate=0.02).fit(calibration())
    loose = make_policy(name, **params).set_params(target_late_rate=0.3).fit(calibration())
    assert not same(answer(strict), answer(loose))
    # A lower target late rate never shortens a buffer; and set_params builds what the
    # constructor builds.
    assert (answer(strict).buffer_hours >= answer(loose).buffer_hours).all()
    built = make_policy(name, **{**params, "target_late_rate": 0.02}).fit(calibration())
    assert same(answer(built), answer(strict))
    with pytest.raises(ValueError, match="Invalid parameter"):
        make_policy(name).set_params(no_such_parameter=1.0)


def test_its_two_answers_agree(case: tuple[str, dict[str, Any]]) -> None:
    policy = make_policy(case[0], **case[1]).fit(calibration())
    expected, quantile, columns = new_orders(seed=3)
    labels = [(s,) for s in columns["store"].tolist()]
    for state in (None, STATE):
        want = policy.buffers(expected, labels, quantile, state)
        assert same(policy.column_buffers(expected, columns, SEGMENTS, quantile, state), want)


def test_a_pickled_policy_answers_the_same(case: tuple[str, dict[str, Any]]) -> None:
    policy = make_policy(case[0], **case[1]).fit(calibration())
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.get_params() == policy.get_params()
    assert same(answer(copy, STATE), answer(policy, STATE))


def test_an_unknown_policy_name_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown policy 'magic'; choose from fixed, "):
        make_policy("magic")
