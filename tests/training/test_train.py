"""The fit at a cut-off: the settle time (open orders censored) and what calibrating reuses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from models.errors import SpecError
from models.policies import POLICY_NAMES
from training.backtest import plan_folds
from training.data import OrderTable, load_orders
from training.spec import Spec, load_spec
from training.train import build_calendar, calibrate, fit_model, settle_quantile_hours

TODAY = dt.date(2026, 11, 23)
MEAN_HOURS = 24.0
N_ORDERS = 600  # one an hour

SPEC = """
[dataset]
path = "orders.csv"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "UTC"

[features]
numeric = ["size"]

[quote]
unit = "hour"
policy = "conformal"

[backtest]
folds = 2
horizon_days = 2
"""


def exponential_history(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(placed hours, durations in hours): one order an hour, durations exponential."""
    rng = np.random.default_rng(seed)
    return np.arange(N_ORDERS, dtype=np.float64), rng.exponential(MEAN_HOURS, N_ORDERS)


def test_open_orders_make_the_settle_time_longer_than_the_fulfilled_quantile() -> None:
    # A short history (150 hours, the 0.99 quantile being some 110 hours) seen at its end.
    placed, duration = (column[:150] for column in exponential_history())
    cutoff = 150.0
    censored = placed + duration > cutoff  # the slow recent orders are still open
    observed = np.where(censored, cutoff - placed, duration)
    naive = float(np.quantile(duration[~censored], 0.99))
    settle = settle_quantile_hours(observed, censored, 0.99)
    # Close to the quantile of every duration, the open orders' included; the fulfilled
    # orders' alone is far shorter.
    truth = float(np.quantile(duration, 0.99, method="inverted_cdf"))
    assert settle == pytest.approx(truth, rel=0.05)
    assert naive < 0.8 * truth < settle


@pytest.mark.parametrize("n", [1, 7, 100, 1000, 1234])
@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.95, 0.99])
def test_with_nothing_censored_it_is_the_plain_quantile(n: int, quantile: float) -> None:
    hours = np.random.default_rng(n).exponential(MEAN_HOURS, n).round(1)  # with ties
    settle = settle_quantile_hours(hours, np.zeros(n, dtype=bool), quantile)
    assert settle == float(np.quantile(hours, quantile, method="inverted_cdf"))


def test_when_the_estimate_never_reaches_the_quantile_it_is_the_longest_wait_seen() -> None:
    # Three of five finished: the estimated CDF stops at 0.6, and an order has been open 50 h.
    hours = np.array([1.0, 2.0, 3.0, 50.0, 40.0])
    censored = np.array([False, False, False, True, True])
    assert settle_quantile_hours(hours, censored, 0.99) == 50.0
    assert settle_quantile_hours(hours, censored, 0.5) == 3.0
    assert settle_quantile_hours(np.array([5.0]), np.array([True]), 0.99) == 5.0


def write_exponential_table(folder: Path) -> Spec:
    """The exponential history as extracted at hour N_ORDERS: later fulfilments are open."""
    placed, duration = exponential_history()
    start = dt.datetime(2025, 1, 1)
    extraction = start + dt.timedelta(hours=N_ORDERS)
    lines = ["order_id,ordered_at,fulfilled_at,size"]
    for i, (p, d) in enumerate(zip(placed, duration, strict=True)):
        ordered = start + dt.timedelta(hours=float(p))
        fulfilled = ordered + dt.timedelta(hours=float(d))
        ready = f"{fulfilled:%Y-%m-%d %H:%M:%S}" if fulfilled <= extraction else ""
        lines.append(f"O{i:04d},{ordered:%Y-%m-%d %H:%M:%S},{ready},{i % 3}")
    (folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "spec.toml").write_text(SPEC, encoding="utf-8")
    return load_spec(folder / "spec.toml")


def naive_settle_hours(durations_hours: np.ndarray, quantile: float) -> float:
    return float(np.quantile(durations_hours, quantile))


def test_fit_and_back_test_plan_censor_open_orders_at_their_age(tmp_path: Path) -> None:
    spec = write_exponential_table(tmp_path)
    table: OrderTable = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    q = spec.model.settle_quantile
    # At a cut-off: open orders (and those fulfilled later) are censored at their age then.
    cutoff_s = dt.datetime(2025, 1, 24, tzinfo=dt.UTC).timestamp()
    fold = fit_model(spec, table, calendar, cutoff_s)
    age_hours = np.maximum((cutoff_s - fold.start_s) / 3600.0, 0.0)
    observed = np.where(fold.done, fold.hours, age_hours)
    assert fold.settle_hours == settle_quantile_hours(observed, ~fold.done, q)
    assert fold.settle_hours > naive_settle_hours(fold.hours[fold.done], q)
    # The back-test plan: over the whole table, open orders censored at the extraction.
    plan = plan_folds(spec, table, calendar)
    done = ~table.is_open
    reached_s = np.where(done, table.fulfilled_at_s, table.as_of_s)
    observed = (reached_s - table.ordered_at_s) / 3600.0
    assert plan.settle_hours == settle_quantile_hours(observed, table.is_open, q)
    assert plan.settle_hours > naive_settle_hours(observed[done], q)


def test_the_calibration_slice_is_predicted_as_the_booster_predicts_it(
    sample_spec: Spec, sample_table: OrderTable
) -> None:
    """Training predicts its calibration slice through the compiled trees: bit for bit the
    numbers of scikit-learn's own predictor, the reference."""
    calendar = build_calendar(sample_spec, sample_table, TODAY)
    fold = fit_model(sample_spec, sample_table, calendar, sample_table.as_of_s + 1.0)
    reference = fold.regressor.predict_hours(fold.matrix[fold.cal_index])
    assert fold.cal_index.size > 1000
    assert np.array_equal(fold.cal_expected_hours, reference)


@pytest.mark.parametrize("days_later", [14.0, -14.0])
def test_a_recalibration_computes_what_a_fresh_encoding_of_its_orders_gives(
    sample_spec: Spec, sample_table: OrderTable, days_later: float
) -> None:
    """A recalibration keeps the clock starts and matrix rows of the fit it starts from and
    computes only the rest: the same numbers as computing every known order afresh, whether it
    is later than that fit (more orders) or earlier (fewer)."""
    calendar = build_calendar(sample_spec, sample_table, TODAY)
    first_s = float(np.quantile(sample_table.ordered_at_s, 0.6))
    fitted = fit_model(sample_spec, sample_table, calendar, first_s)
    later = fit_model(sample_spec, sample_table, calendar, first_s + days_later * 86_400.0, fitted)
    known = later.known
    assert known.size != fitted.known.size
    fresh = fitted.schema.encode(known.columns, calendar.local_parts(known.ordered_at_s))
    assert np.array_equal(later.matrix, fresh, equal_nan=True)
    assert np.array_equal(later.start_s, calendar.clock_starts(known.ordered_at_s))
    expected = fitted.regressor.predict_hours(fresh[later.cal_index])
    assert np.array_equal(later.cal_expected_hours, expected)


def test_the_risk_distributions_of_a_fold_are_the_same_whatever_the_policy(
    sample_spec: Spec, sample_table: OrderTable
) -> None:
    """The back-test fits a period's risk distributions once and hands them to every policy it
    calibrates there: that is exact only while they depend on the slice alone."""
    calendar = build_calendar(sample_spec, sample_table, TODAY)
    fold = fit_model(sample_spec, sample_table, calendar, float(sample_table.as_of_s) + 1.0)
    risks = []
    for name in POLICY_NAMES:
        model, _ = calibrate(sample_spec, fold, calendar, sample_spec.policy_config(name, 0.1))
        assert model.engine.risk is not None
        risks.append(model.engine.risk)
    first = risks[0]
    for risk in risks[1:]:
        assert risk.depth == first.depth and list(risk.table) == list(first.table)
        for key, distribution in first.table.items():
            other = risk.table[key]
            assert (other.n, other.n_censored) == (distribution.n, distribution.n_censored)
            assert np.array_equal(other.values, distribution.values)
            assert np.array_equal(other.cdf, distribution.cdf)


def test_a_feature_with_no_value_in_the_orders_trained_on_is_a_clear_error(
    tmp_path: Path,
) -> None:
    spec = write_exponential_table(tmp_path)
    path = tmp_path / "orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text(
        "\n".join([lines[0], *(line.rsplit(",", 1)[0] + "," for line in lines[1:])]) + "\n",
        encoding="utf-8",
    )
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    cutoff_s = dt.datetime(2025, 1, 24, tzinfo=dt.UTC).timestamp()
    with pytest.raises(SpecError, match=r"size has no value in any of the \d+ orders trained on"):
        fit_model(spec, table, calendar, cutoff_s)
