"""The outlook of an open order, against a known residual distribution."""

from __future__ import annotations

import numpy as np
import pytest

from models.policies import score_distribution
from models.risk import conditional_quantile, outlook, survival


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
