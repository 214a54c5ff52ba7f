"""The engine on real deliveries: the public DoorDash sample in ../shared/data (not in the repo).

Every test skips with a message where the data is absent (CI, fresh clones).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from models.errors import SpecError
from training.backtest import BacktestReport, run_backtest
from training.data import load_orders
from training.spec import Spec, load_spec
from training.train import build_calendar

REPO = Path(__file__).parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
DOORDASH = SHARED_DATA / "doordash" / "historical_data_sample.csv.gz"
SPEC = REPO / "data" / "doordash.toml"
TODAY = dt.date(2026, 11, 23)

needs_data = pytest.mark.skipif(
    not DOORDASH.exists(),
    reason=f"the DoorDash sample is not at {DOORDASH} (see ../shared/data/README.md)",
)


def doordash_spec() -> Spec:
    return load_spec(SPEC).with_data(DOORDASH)


def test_the_spec_loads_and_will_not_read_outside_its_folder() -> None:
    spec = load_spec(SPEC)
    assert spec.quote.unit == "minute"
    assert spec.calendar_spec().timezone == "America/Los_Angeles"
    assert spec.dataset.company_promise is None
    outside = spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(
                update={"path": "../../shared/data/doordash/historical_data_sample.csv.gz"}
            )
        }
    )
    with pytest.raises(SpecError, match="outside the spec's folder"):
        _ = outside.data_path


@pytest.fixture(scope="module")
def doordash_report() -> BacktestReport:
    if not DOORDASH.exists():
        pytest.skip(f"the DoorDash sample is not at {DOORDASH} (see ../shared/data/README.md)")
    spec = doordash_spec()
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    return run_backtest(spec, table, calendar, ["conformal"], None, target=0.05, tradeoff=False)


@needs_data
def test_the_whole_sample_loads_as_delivered_orders() -> None:
    table = load_orders(doordash_spec())
    assert table.rows_read == table.size == 19_743
    assert not table.is_open.any()
    minutes = (table.fulfilled_at_s - table.ordered_at_s) / 60.0
    assert 40 < float(sorted(minutes)[minutes.size // 2]) < 50  # median about 44 minutes


@needs_data
def test_conformal_holds_five_percent_walking_forward_in_time(
    doordash_report: BacktestReport,
) -> None:
    conformal = doordash_report.policies["conformal"]
    cutoffs = [fold.cutoff for fold in conformal.by_fold]
    assert cutoffs == sorted(cutoffs) and len(cutoffs) == 5
    own = conformal.overall
    assert own.n_quotes > 10_000
    assert own.late_rate is not None and 0.03 <= own.late_rate <= 0.07, own.late_rate
    # Promises a customer can use: about an hour and a quarter on average, never below the model.
    assert own.mean_promise_hours is not None and 60 < own.mean_promise_hours * 60 < 100


@needs_data
def test_the_engine_needs_shorter_promises_than_one_duration_for_all(
    doordash_report: BacktestReport,
) -> None:
    comparison = doordash_report.comparison.policies["conformal"]
    assert comparison.flat_mean_promise_hours is not None
    assert comparison.mean_promise_hours is not None
    assert comparison.mean_promise_hours < comparison.flat_mean_promise_hours
