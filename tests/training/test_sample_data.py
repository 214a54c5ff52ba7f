"""The sample optical order history: shape, determinism, a believable process, the files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import holidays
import numpy as np
import pandas as pd
import pytest

from models.errors import InputError
from training.sample_data import (
    AS_OF,
    COLUMNS,
    DRIFT_START,
    STORE_VOLUMES,
    generate_orders,
    write_sample_data,
)

N_SMALL = 20_000  # enough orders per store and period for stable medians, fast to build


@pytest.fixture
def orders() -> pd.DataFrame:
    return generate_orders(n_orders=N_SMALL, seed=7)


def duration_days(frame: pd.DataFrame) -> pd.Series:
    """Calendar days from order to ready, NaN for open orders."""
    return (frame["fulfilled_at"] - frame["ordered_at"]).dt.total_seconds() / 86_400


def is_open_shop_day(stamps: pd.Series) -> pd.Series:
    """Monday-Saturday and not an English bank holiday, checked independently."""
    bank_holidays = holidays.country_holidays("GB", subdiv="ENG", years=range(2024, 2028))
    days = stamps.dt.normalize()
    is_open: pd.Series = (days.dt.day_of_week <= 5) & ~days.dt.date.isin(set(bank_holidays))
    return is_open


def in_opening_hours(stamps: pd.Series) -> pd.Series:
    seconds = (stamps - stamps.dt.normalize()).dt.total_seconds()
    is_within: pd.Series = (seconds >= 9 * 3600) & (seconds <= 18 * 3600)
    return is_within


def test_same_seed_same_frame_other_seed_differs() -> None:
    first = generate_orders(n_orders=5_000, seed=7)
    pd.testing.assert_frame_equal(first, generate_orders(n_orders=5_000, seed=7))
    assert not first.equals(generate_orders(n_orders=5_000, seed=8))


def test_columns_and_dtypes(orders: pd.DataFrame) -> None:
    assert list(orders.columns) == list(COLUMNS)
    for column in ("ordered_at", "fulfilled_at", "promised_at"):
        assert pd.api.types.is_datetime64_dtype(orders[column]), column
        assert orders[column].dt.tz is None, column  # naive local wall-clock time
    for column in ("order_id", "store_id", "lens_type", "coating"):
        assert pd.api.types.is_string_dtype(orders[column]), column
    for column in ("frame_in_stock", "n_items"):
        assert pd.api.types.is_integer_dtype(orders[column]), column
    assert pd.api.types.is_float_dtype(orders["sphere_power"])


def test_values_stay_in_their_domains(orders: pd.DataFrame) -> None:
    assert orders["order_id"].is_unique
    assert orders["order_id"].str.fullmatch(r"OPT-\d{7}").all()
    assert set(orders["lens_type"]) == {"single_vision", "bifocal", "progressive", "high_index"}
    assert set(orders["coating"]) == {
        "none",
        "anti_reflective",
        "blue_light",
        "photochromic",
        "tint",
    }
    assert set(orders["frame_in_stock"]) == {0, 1}
    assert 0.10 < 1 - orders["frame_in_stock"].mean() < 0.25  # share of frames to order
    assert set(orders["n_items"]) == {1, 2, 3}
    sphere = orders["sphere_power"]
    assert sphere.between(0.0, 12.0).all()
    assert ((sphere * 4) % 1 == 0).all()  # quarter-dioptre steps
    assert orders["promised_at"].eq(orders["promised_at"].dt.normalize()).all()  # a date


def test_default_history_covers_two_years_and_every_store() -> None:
    frame = generate_orders()
    assert len(frame) >= 50_000
    assert frame["ordered_at"].min() >= pd.Timestamp("2024-01-02")
    assert frame["ordered_at"].max() <= pd.Timestamp(AS_OF)
    assert frame["ordered_at"].max() - frame["ordered_at"].min() > pd.Timedelta(days=2 * 365)
    assert set(frame["store_id"]) == set(STORE_VOLUMES)
    assert frame["ordered_at"].is_monotonic_increasing


def test_stores_have_different_volumes(orders: pd.DataFrame) -> None:
    share = orders["store_id"].value_counts(normalize=True)
    assert share["LDN-OXF"] > 2 * share["NCL"]


def test_orders_are_placed_only_when_a_shop_is_open(orders: pd.DataFrame) -> None:
    ordered_at = orders["ordered_at"]
    assert is_open_shop_day(ordered_at).all()
    assert in_opening_hours(ordered_at).all()
    assert (ordered_at.dt.day_of_week == 5).mean() > (ordered_at.dt.day_of_week == 0).mean()
    monthly = ordered_at.dt.month.value_counts()
    assert monthly[1] > monthly[8]  # January rush, quiet August (both seen twice)


def test_glasses_are_ready_after_the_order_on_an_open_day_in_opening_hours(
    orders: pd.DataFrame,
) -> None:
    fulfilled = orders.dropna(subset=["fulfilled_at"])
    assert (fulfilled["fulfilled_at"] > fulfilled["ordered_at"]).all()
    assert is_open_shop_day(fulfilled["fulfilled_at"]).all()
    assert in_opening_hours(fulfilled["fulfilled_at"]).all()
    assert is_open_shop_day(orders["promised_at"]).all()


def test_some_orders_are_open_and_only_recent_ones(orders: pd.DataFrame) -> None:
    still_open = orders["fulfilled_at"].isna()
    assert 0 < still_open.sum() < 0.02 * len(orders)
    assert orders.loc[still_open, "ordered_at"].min() > pd.Timestamp(AS_OF) - pd.Timedelta(days=90)
    assert orders["fulfilled_at"].max() <= pd.Timestamp(AS_OF)
    last_week = orders["ordered_at"] > pd.Timestamp(AS_OF) - pd.Timedelta(days=7)
    assert still_open[last_week].mean() > 0.6  # even stock lenses take a day or two


def test_durations_look_like_a_real_lab(orders: pd.DataFrame) -> None:
    days = duration_days(orders).dropna()
    median = days.median()
    assert 4.0 <= median <= 9.0
    assert days.quantile(0.95) / median > 1.6  # long right tail


def test_progressive_lenses_and_missing_frames_take_longer(orders: pd.DataFrame) -> None:
    days = duration_days(orders)
    by_lens = days.groupby(orders["lens_type"]).median()
    assert by_lens["progressive"] > by_lens["single_vision"] + 2.0
    by_frame = days.groupby(orders["frame_in_stock"]).median()
    assert by_frame[0] > by_frame[1] + 2.0


def test_manchester_slows_after_its_lab_switch_and_others_do_not(orders: pd.DataFrame) -> None:
    days = duration_days(orders)
    after = orders["ordered_at"] >= pd.Timestamp(DRIFT_START)

    def median_ratio(store: str) -> float:
        in_store = orders["store_id"] == store
        return float(days[in_store & after].median() / days[in_store & ~after].median())

    assert median_ratio("MAN") > 1.2
    assert 0.85 < median_ratio("BHM") < 1.15


def test_company_promise_is_late_for_a_few_orders(orders: pd.DataFrame) -> None:
    fulfilled = orders.dropna(subset=["fulfilled_at"])
    late = fulfilled["fulfilled_at"].dt.normalize() > fulfilled["promised_at"]
    assert 0.03 <= late.mean() <= 0.12


def test_written_csv_reads_back_the_same_rows(tmp_path: Path) -> None:
    path = write_sample_data(tmp_path, n_orders=2_000, seed=3)
    assert path == tmp_path / "optical_orders.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["optical_orders.csv"]  # no temp left over
    expected = generate_orders(n_orders=2_000, seed=3)
    back = pd.read_csv(path, keep_default_na=True)
    assert list(back.columns) == list(COLUMNS)
    assert back["order_id"].tolist() == expected["order_id"].tolist()
    for column in ("ordered_at", "fulfilled_at"):
        parsed = pd.to_datetime(back[column], format="%Y-%m-%d %H:%M:%S")
        assert parsed.equals(expected[column].astype(parsed.dtype)), column
    assert back["fulfilled_at"].isna().sum() == expected["fulfilled_at"].isna().sum()
    assert back["promised_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert pd.to_datetime(back["promised_at"]).dt.date.tolist() == [
        d.date() for d in expected["promised_at"]
    ]
    np.testing.assert_array_equal(back["sphere_power"], expected["sphere_power"])


def test_written_parquet_keeps_times_and_dates(tmp_path: Path) -> None:
    path = write_sample_data(tmp_path / "new", n_orders=1_000, file_format="parquet")
    assert path == tmp_path / "new" / "optical_orders.parquet"
    back = pd.read_parquet(path)
    expected = generate_orders(n_orders=1_000)
    assert back["ordered_at"].equals(expected["ordered_at"].astype(back["ordered_at"].dtype))
    assert back["promised_at"].tolist()[0] == expected["promised_at"].iloc[0].date()
    assert isinstance(back["promised_at"].tolist()[0], date)


def test_rewriting_replaces_the_file(tmp_path: Path) -> None:
    write_sample_data(tmp_path, n_orders=500, seed=1)
    path = write_sample_data(tmp_path, n_orders=300, seed=2)
    assert len(pd.read_csv(path)) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["optical_orders.csv"]


def test_no_orders_is_refused() -> None:
    with pytest.raises(InputError, match="n_orders"):
        generate_orders(n_orders=0)
