"""The back-test replays production's refit cadence inside each fold."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from models.calendar import BusinessCalendar
from tests.conftest import spec_with
from training.backtest import plan_folds, quote_static, refit_schedule, walk_forward
from training.data import OrderTable
from training.spec import Spec
from training.train import fit_engine

DAY_S = 86_400.0


def test_the_default_cadence_is_weekly_for_dates_and_daily_for_times(sample_spec: Spec) -> None:
    unset = {"refit_every": None, "recalibrate_every": None}
    assert spec_with(sample_spec, backtest=unset).refit_days == (7.0, 7.0)
    hourly = spec_with(sample_spec, quote={"unit": "hour"}, backtest=unset)
    assert hourly.refit_days == (1.0, 1.0)
    mixed = spec_with(sample_spec, backtest={"refit_every": 14.0, "recalibrate_every": 3.0})
    assert mixed.refit_days == (14.0, 3.0)
    # Recalibrating more rarely than refitting means nothing: it follows the refits.
    rare = spec_with(sample_spec, backtest={"refit_every": 7.0, "recalibrate_every": 30.0})
    assert rare.refit_days == (7.0, 7.0)


def test_periods_fall_on_local_midnights_across_a_clock_change(
    sample_spec: Spec, sample_calendar: BusinessCalendar
) -> None:
    spec = spec_with(sample_spec, backtest={"refit_every": 7.0, "recalibrate_every": 3.5})
    zone = sample_calendar.zone
    cutoff = dt.datetime(2025, 3, 17, tzinfo=zone).timestamp()  # the clocks go forward on 30 Mar
    end = dt.datetime(2025, 4, 14, tzinfo=zone).timestamp()
    periods = refit_schedule(spec, sample_calendar, cutoff, end)
    starts = [dt.datetime.fromtimestamp(s, zone) for s, _, _ in periods]
    assert [s.date() for s in starts[::2]] == [
        dt.date(2025, 3, 17),
        dt.date(2025, 3, 24),
        dt.date(2025, 3, 31),
        dt.date(2025, 4, 7),
    ]
    assert all(s.hour == 0 for s in starts[::2]) and starts[1].hour == 12
    assert [refit for _, _, refit in periods] == [True, False] * 4
    # The periods tile the fold.
    assert periods[0][0] == cutoff and periods[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(periods))


def test_each_week_is_quoted_by_an_engine_fitted_at_its_start(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    weekly = spec_with(sample_spec, backtest={"refit_every": 7.0, "recalibrate_every": 7.0})
    plan = plan_folds(weekly, sample_table, sample_calendar, folds=1)
    short = type(plan)(
        cutoffs_s=plan.cutoffs_s,
        ends_s=(plan.cutoffs_s[0] + 21 * DAY_S,),
        settle_hours=plan.settle_hours,
        as_of_s=plan.as_of_s,
    )
    run = walk_forward(weekly, sample_table, sample_calendar, ["conformal"], short)
    [record] = run.policies["conformal"]
    third_week = plan.cutoffs_s[0] + 14 * DAY_S
    engine = fit_engine(weekly, sample_table, sample_calendar, third_week, "conformal")[0].engine
    in_week = record.rows[sample_table.ordered_at_s[record.rows] >= third_week]
    assert in_week.size > 300
    alone = quote_static(engine, sample_table, in_week, 0)
    np.testing.assert_array_equal(record.deadline_s[-in_week.size :], alone.deadline_s)
    # ... which is not the engine fitted at the fold's cut-off.
    first, _ = fit_engine(weekly, sample_table, sample_calendar, plan.cutoffs_s[0], "conformal")
    stale = quote_static(first.engine, sample_table, in_week, 0)
    assert not np.array_equal(stale.expected_hours, alone.expected_hours)
    assert record.expected_hours[-in_week.size :] == pytest.approx(alone.expected_hours)
