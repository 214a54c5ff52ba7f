"""The outlook of an open order, against a known residual distribution."""

from __future__ import annotations

import numpy as np
import pytest

from models.risk import (
    RiskModel,
    conditional_quantile,
    fit_risk_model,
    flag_elapsed_hours,
    outlook,
    outlooks,
    survival,
)
from models.scores import score_distribution
from models.segments import GLOBAL_SEGMENT
from tests.models.references import probabilities_late


@pytest.fixture
def uniform_residuals() -> np.ndarray:
    return np.linspace(-10.0, 30.0, 4001)  # residual hours, uniform on [-10, 30]


def test_survival_and_conditional_quantile_match_the_uniform_law(
    uniform_residuals: np.ndarray,
) -> None:
    dist = score_distribution(uniform_residuals, np.zeros(uniform_residuals.size, bool))
    assert survival(dist, -20.0) == 1.0
    assert survival(dist, 10.0) == pytest.approx(0.5, abs=1e-3)
    assert survival(dist, 40.0) == 0.0
    # Given R > 10, R is uniform on [10, 30]: its median is 20.
    assert conditional_quantile(dist, 0.5, 10.0) == pytest.approx(20.0, abs=0.02)


def test_risk_rises_as_an_order_stays_open(uniform_residuals: np.ndarray) -> None:
    dist = score_distribution(uniform_residuals, np.zeros(uniform_residuals.size, bool))
    # Expected 100 h, promised at 120 h (residual 20: 25% of fresh orders are late).
    fresh = outlook(dist, 100.0, 0.0, 120.0, 0.05)
    assert fresh.probability_late == pytest.approx(0.25, abs=1e-3)
    waiting = outlook(dist, 100.0, 110.0, 120.0, 0.05)  # open 10 h past expectation
    assert waiting.probability_late == pytest.approx(0.5, abs=1e-3)
    assert waiting.expected_hours == pytest.approx(120.0, abs=0.02)
    # The revision keeps 95% of such orders on time: residual 10 + 0.95 * 20 = 29.
    assert waiting.revised_hours == pytest.approx(129.0, abs=0.02)
    assert outlook(dist, 100.0, 121.0, 120.0, 0.05).probability_late == 1.0


def test_the_outlook_is_calibrated_on_simulated_orders() -> None:
    rng = np.random.default_rng(7)
    calibration = rng.gamma(2.0, 10.0, 20_000) - 20.0
    dist = score_distribution(calibration, np.zeros(calibration.size, bool))
    actual = rng.gamma(2.0, 10.0, 200_000) - 20.0  # fresh orders, same law
    elapsed_residual = 5.0
    still_open = actual[actual > elapsed_residual]
    deadline_residual = 25.0
    predicted = outlook(dist, 0.0, elapsed_residual, deadline_residual, 0.1).probability_late
    assert predicted == pytest.approx((still_open > deadline_residual).mean(), abs=0.01)


def _two_segments() -> tuple[RiskModel, list[str]]:
    rng = np.random.default_rng(3)
    fast_shop = rng.gamma(2.0, 5.0, 3000) - 10.0
    slow_shop = rng.gamma(2.0, 15.0, 3000) - 30.0
    residuals = np.concatenate([fast_shop, slow_shop])
    labels = [("A",)] * 3000 + [("B",)] * 3000
    expected = np.full(6000, 50.0)
    model = fit_risk_model(expected, expected + residuals, np.zeros(6000, bool), labels, 1, 200)
    return model, model.resolve_keys([("A",), ("B",), ("Z",)])


def test_each_segment_has_its_own_residuals_and_an_unknown_one_falls_back() -> None:
    model, keys = _two_segments()
    assert keys == ["A", "B", GLOBAL_SEGMENT]
    # The slow shop's order is likelier to be late at the same elapsed time and deadline.
    risk = probabilities_late(model, keys, np.full(3, 50.0), np.full(3, 55.0), np.full(3, 70.0))
    assert risk[0] < risk[2] < risk[1]


def test_the_vectorised_risks_match_the_scalar_outlook() -> None:
    model, _ = _two_segments()
    rng = np.random.default_rng(5)
    n = 500
    keys = list(rng.choice(["A", "B", GLOBAL_SEGMENT], n))
    expected = rng.uniform(10.0, 100.0, n)
    elapsed = rng.uniform(0.0, 150.0, n)
    deadline = expected + rng.uniform(0.0, 40.0, n)
    risk = probabilities_late(model, keys, expected, elapsed, deadline)
    many = outlooks(model, keys, expected, elapsed, deadline, 0.05)
    at_issue = probabilities_late(model, keys, expected, np.zeros(n), deadline)
    assert many.probability_late == pytest.approx(risk, abs=1e-12)
    assert many.probability_at_issue == pytest.approx(at_issue, abs=1e-12)
    revised = many.revised_hours
    for i in range(n):
        view = outlook(model.table[keys[i]], expected[i], elapsed[i], deadline[i], 0.05)
        assert risk[i] == pytest.approx(view.probability_late, abs=1e-12)
        assert revised[i] == pytest.approx(view.revised_hours, abs=1e-9)
        assert many.expected_hours[i] == pytest.approx(view.expected_hours, abs=1e-9)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_the_flag_time_is_the_first_moment_the_risk_reaches_the_threshold(
    threshold: float,
) -> None:
    model, _ = _two_segments()
    rng = np.random.default_rng(11)
    n = 2000
    keys = list(rng.choice(["A", "B"], n))
    expected = rng.uniform(10.0, 100.0, n)
    deadline = expected + rng.uniform(0.0, 40.0, n)
    flagged = flag_elapsed_hours(model, keys, expected, deadline, threshold)
    assert (flagged >= 0.0).all() and (flagged <= deadline).all()
    at = probabilities_late(model, keys, expected, flagged, deadline)
    assert (at >= threshold - 1e-9).all()
    before = probabilities_late(model, keys, expected, np.maximum(flagged - 1e-3, 0.0), deadline)
    assert ((before < threshold) | (flagged == 0.0)).all()
