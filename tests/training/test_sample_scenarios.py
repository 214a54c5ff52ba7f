"""Drift scenarios of the sample history: each differs from the base where, and only where,
it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from models.errors import InputError
from training.cli import app
from training.sample_data import (
    AS_OF,
    HISTORY_START,
    PEAK_DEMAND_FACTOR,
    PEAK_FIRST,
    PEAK_LAST,
    SCENARIOS,
    SHOCK_END,
    SHOCK_LAB_CAPACITY,
    SHOCK_START,
    TREND_LAB_GROWTH,
    generate_orders,
    output_stem,
    write_sample_data,
)
from training.spec import load_spec

N_SMALL = 20_000  # as in test_sample_data: stable medians per period, fast to build
DATA = Path(__file__).resolve().parents[2] / "data"
runner = CliRunner()


@pytest.fixture
def base() -> pd.DataFrame:
    return generate_orders(n_orders=N_SMALL, seed=7)


def duration_days(frame: pd.DataFrame) -> pd.Series:
    """Calendar days from order to ready, NaN for open orders."""
    return (frame["fulfilled_at"] - frame["ordered_at"]).dt.total_seconds() / 86_400


def same_orders_other_times(base: pd.DataFrame, drifted: pd.DataFrame) -> None:
    """The same orders as the base; only when they were ready may differ."""
    pd.testing.assert_frame_equal(
        base.drop(columns="fulfilled_at"), drifted.drop(columns="fulfilled_at")
    )
    assert drifted["fulfilled_at"].notna().sum() > 0.98 * len(drifted)


def test_base_is_the_default(base: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(base, generate_orders(N_SMALL, seed=7, scenario="base"))


def test_shock_slows_only_the_jobs_in_the_lab_during_the_strike(base: pd.DataFrame) -> None:
    shock = generate_orders(N_SMALL, seed=7, scenario="shock")
    same_orders_other_times(base, shock)
    ordered, ready = base["ordered_at"], base["fulfilled_at"]
    extra_days = duration_days(shock) - duration_days(base)
    assert (extra_days.dropna() >= 0).all()  # a strike never speeds a job up
    start, end = pd.Timestamp(SHOCK_START), pd.Timestamp(SHOCK_END)
    assert (extra_days[ready < start] == 0).all()  # done before it began
    assert (extra_days[ordered >= end].dropna() == 0).all()  # placed after the lab recovered
    # Ordered before the strike but still in the lab during it (ready 5 days in at the
    # earliest, so its last lab day fell in the strike): late as well.
    in_progress = (ordered < start) & (ready >= start + pd.Timedelta(days=5)) & (ready < end)
    assert in_progress.sum() > 50
    assert (extra_days[in_progress] > 0).all()
    # Ordered in the strike's first four weeks with the frame at hand: in the lab during it.
    placed = (ordered >= start) & (ordered < end - pd.Timedelta(days=7))
    assert (extra_days[placed & (base["frame_in_stock"] == 1)] > 0).all()
    in_window = (ordered >= start) & (ordered < end)
    ratio = duration_days(shock)[in_window].median() / duration_days(base)[in_window].median()
    assert 1.6 < ratio < 1 / SHOCK_LAB_CAPACITY  # lab time x 2.5; the rest of the trip is not


def test_trend_lengthens_later_orders_by_about_the_designed_factor(base: pd.DataFrame) -> None:
    trend = generate_orders(N_SMALL, seed=7, scenario="trend")
    same_orders_other_times(base, trend)
    assert (duration_days(trend) - duration_days(base)).dropna().min() >= 0
    span = pd.Timestamp(AS_OF) - pd.Timestamp(HISTORY_START)
    quarter = ((base["ordered_at"] - pd.Timestamp(HISTORY_START)) / span * 4).astype(int)

    def last_over_first(frame: pd.DataFrame) -> float:
        median = duration_days(frame).groupby(quarter.clip(0, 3)).median()
        return float(median[3] / median[0])

    # Lab time grows linearly: x(1 + g/8) at the first quarter's middle, x(1 + 7g/8) at the last.
    designed = (1 + 7 * TREND_LAB_GROWTH / 8) / (1 + TREND_LAB_GROWTH / 8)
    assert last_over_first(trend) / last_over_first(base) == pytest.approx(designed, abs=0.15)
    assert last_over_first(trend) > 1.2


def in_rush(stamps: pd.Series) -> pd.Series:
    month_day = 100 * stamps.dt.month + stamps.dt.day
    first, last = (100 * month + day for month, day in (PEAK_FIRST, PEAK_LAST))
    is_in: pd.Series = (month_day >= first) & (month_day <= last)
    return is_in


def test_peak_doubles_orders_in_the_rush_and_lengthens_them(base: pd.DataFrame) -> None:
    peak = generate_orders(N_SMALL, seed=7, scenario="peak")
    assert len(peak) == len(base)
    rush, base_rush = in_rush(peak["ordered_at"]), in_rush(base["ordered_at"])
    # Against the base, the rush gains and the rest of the year loses orders: the ratio of
    # the two gains is the factor, whatever the base season already does in December.
    gain_in = rush.sum() / base_rush.sum()
    gain_out = (~rush).sum() / (~base_rush).sum()
    assert gain_in / gain_out == pytest.approx(PEAK_DEMAND_FACTOR, rel=0.1)
    assert set(peak.loc[rush, "ordered_at"].dt.year) == {2024, 2025}  # every year
    # The workload step: rush orders wait longer than in the base's December.
    days, base_days = duration_days(peak), duration_days(base)
    assert days[rush].mean() > 1.04 * base_days[base_rush].mean()
    assert days[rush].mean() / days[~rush].mean() > 1.2


def test_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(InputError, match="scenario"):
        generate_orders(n_orders=100, scenario="flood")  # type: ignore[arg-type]


def test_a_scenario_is_written_next_to_the_base(tmp_path: Path) -> None:
    path = write_sample_data(tmp_path, n_orders=1_000, scenario="shock")
    assert path == tmp_path / "optical_shock_orders.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["optical_shock_orders.csv"]  # no temp left
    assert len(pd.read_csv(path)) == 1_000
    assert output_stem() == "optical_orders"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "base"])
def test_each_scenario_spec_is_the_base_spec_on_its_table(scenario: str) -> None:
    spec = load_spec(DATA / f"optical_{scenario}.toml")
    assert spec.data_path == DATA / f"optical_{scenario}_orders.csv"
    same: Any = {"source": True, "dataset": {"path"}}  # all but where the table is
    assert spec.model_dump(exclude=same) == load_spec(DATA / "optical.toml").model_dump(
        exclude=same
    )


def test_cli_writes_every_scenario(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["sample-data", "--out", str(tmp_path), "--orders", "1000", "--scenario", "all"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("wrote 1,000 orders") == len(SCENARIOS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{output_stem(s)}.csv" for s in SCENARIOS
    )


def test_cli_writes_one_scenario_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    args = ["sample-data", "--out", str(tmp_path), "--orders", "1000", "--scenario"]
    result = runner.invoke(app, [*args, "trend"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["optical_trend_orders.csv"]
    refused = runner.invoke(app, [*args, "flood"])
    assert refused.exit_code == 1
    assert "--scenario" in refused.output
