"""Training that scales: the fast reader loads what the careful one does, `history_days` reads
only the recent orders (old Parquet row groups never decoded), parallel folds match serial."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.errors import SpecError
from tests.conftest import SHARED_DATA, TODAY, spec_with
from training.backtest import run_backtest
from training.backtest.fits import Refits
from training.data import WINDOW_SKIP, OrderTable, _has_offset, load_orders
from training.spec import Spec, load_spec
from training.train import build_calendar, fit_model

DOORDASH = SHARED_DATA / "doordash" / "historical_data_sample.csv.gz"
DOORDASH_SPEC = Path(__file__).resolve().parents[2] / "data" / "doordash.toml"
OFFSET = re.compile(r"(?:Z|[T\s][\d:.,]+\s?[+-]\d{2}(?::?\d{2})?)$")


def assert_same_table(fast: OrderTable, careful: OrderTable) -> None:
    """Every column equal, with its dtype, in the same row order."""
    for name in ("ids", "ordered_at_s", "fulfilled_at_s", "company_deadline_s"):
        a, b = getattr(fast, name), getattr(careful, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert list(fast.columns) == list(careful.columns)
    for name, values in fast.columns.items():
        assert values.dtype == careful.columns[name].dtype, name
        np.testing.assert_array_equal(values, careful.columns[name], err_msg=name)
    assert fast.rows_read == careful.rows_read
    assert dict(fast.skipped) == dict(careful.skipped)
    assert fast.fulfilled_precision == careful.fulfilled_precision


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_fast_reader_loads_the_sample_as_the_careful_one(
    sample_spec: Spec, sample_folder: Path, tmp_path: Path, file_format: str
) -> None:
    spec = sample_spec
    if file_format == "parquet":
        frame = pd.read_csv(spec.data_path, dtype=str, keep_default_na=False, na_values=[""])
        frame.to_parquet(tmp_path / "orders.parquet")
        spec = spec.with_data(tmp_path / "orders.parquet")
    assert_same_table(load_orders(spec), load_orders(spec, careful=True))


def test_the_fast_reader_loads_doordash_as_the_careful_one() -> None:
    if not DOORDASH.exists():
        pytest.skip(f"{DOORDASH} is not on this machine")
    spec = load_spec(DOORDASH_SPEC).with_data(DOORDASH)
    fast = load_orders(spec)
    assert fast.size == 19_743
    assert_same_table(fast, load_orders(spec, careful=True))


def test_a_file_pyarrow_refuses_is_read_by_pandas_as_before(tmp_path: Path) -> None:
    # A row with fewer cells than the header: pyarrow's reader refuses it, pandas' reads it
    # with the missing cells empty, as the loader always did.
    (tmp_path / "orders.csv").write_text(
        "order_id,ordered_at,fulfilled_at\n"
        "A1,2024-03-01 10:00:00,2024-03-02 10:00:00\n"
        "A2,2024-03-01 11:00:00\n",
        encoding="utf-8",
    )
    (tmp_path / "spec.toml").write_text(
        '[dataset]\npath = "orders.csv"\nid = "order_id"\nordered_at = "ordered_at"\n'
        'fulfilled_at = "fulfilled_at"\n',
        encoding="utf-8",
    )
    table = load_orders(load_spec(tmp_path / "spec.toml"))
    assert list(table.ids) == ["A1", "A2"]
    assert np.isnan(table.fulfilled_at_s[1])


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01 10:00:00",
        "2024-03-01T10:00:00Z",
        "2024-03-01 10:00:00+01:00",
        "2024-03-01 10:00:00 -0300",
        "2024-03-01T10:00:00.123-03",
        "2024-03-04",
        "2024-03-04Z",
        "10:00+01",
        "2024-03-01\x1c10:00+01:00",
        "2024-03-01\x0b10:00+01:00",
        "2024-03-01 10:00:00+01:00\n",
        "2024-03-01 10:00:00+01:00\nx",
        "2024-03-01 10:00:00+1:00",
        "z",
        "",
    ],
)
def test_the_offset_test_agrees_with_pythons(text: str) -> None:
    series = pd.Series([text, None], dtype="string")
    assert list(_has_offset(series)) == [OFFSET.search(text) is not None, False]


def windowed(spec: Spec, days: float) -> Spec:
    return spec_with(spec, model={"history_days": days})


def test_history_days_keeps_the_recent_orders_of_a_csv(sample_spec: Spec) -> None:
    full = load_orders(sample_spec)
    recent = load_orders(windowed(sample_spec, 90))
    keep = full.ordered_at_s >= full.ordered_at_s.max() - 90 * 86_400.0
    assert 0 < recent.size == int(keep.sum()) < full.size
    np.testing.assert_array_equal(recent.ids, full.ids[keep])
    np.testing.assert_array_equal(recent.fulfilled_at_s, full.fulfilled_at_s[keep])
    assert recent.rows_read == full.rows_read
    assert recent.skipped == {WINDOW_SKIP: full.size - recent.size}


def test_a_bad_row_before_the_window_is_not_read_and_one_in_it_is_named(
    tmp_path: Path, sample_spec: Spec
) -> None:
    frame = pd.read_csv(sample_spec.data_path, dtype=str, keep_default_na=False, na_values=[""])
    frame.loc[0, "n_items"] = "many"  # the first order, long before the window
    frame.to_csv(tmp_path / "orders.csv", index=False)
    spec = windowed(sample_spec.with_data(tmp_path / "orders.csv"), 90)
    with pytest.raises(SpecError, match=r"column 'n_items' has values that are not numbers"):
        load_orders(spec.model_copy(update={"model": sample_spec.model}))
    assert load_orders(spec).size > 0
    last = len(frame) - 1
    frame.loc[last, "n_items"] = "lots"
    frame.to_csv(tmp_path / "orders.csv", index=False)
    with pytest.raises(SpecError, match=rf"line {last + 2} \('lots'\)"):
        load_orders(spec)


def row_grouped_parquet(spec: Spec, path: Path) -> int:
    """The sample as Parquet with typed times in row groups of 6,000 orders in time order;
    answers how many row groups it has."""
    frame = pd.read_csv(spec.data_path, dtype=str, keep_default_na=False, na_values=[""])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    frame = frame.sort_values("ordered_at", kind="stable").reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=6_000)
    return int(pq.ParquetFile(path).num_row_groups)


def spoil_row_group(path: Path, group: int) -> None:
    """Overwrite every column chunk of one row group with bytes no reader can decode."""
    metadata = pq.ParquetFile(path).metadata
    data = bytearray(path.read_bytes())
    for j in range(metadata.num_columns):
        chunk = metadata.row_group(group).column(j)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_history_days_never_decodes_the_old_row_groups_of_a_parquet(
    tmp_path: Path, sample_spec: Spec
) -> None:
    path = tmp_path / "orders.parquet"
    groups = row_grouped_parquet(sample_spec, path)
    assert groups == 10
    spec = windowed(sample_spec.with_data(path), 90)
    intact = load_orders(spec)
    shutil.copy(path, tmp_path / "intact.parquet")
    for group in range(groups - 2):  # all but the last two: older than 90 days
        spoil_row_group(path, group)
    with pytest.raises(SpecError, match="cannot read the table"):
        load_orders(spec.model_copy(update={"model": sample_spec.model}))
    recent = load_orders(spec)
    assert_same_table(recent, intact)
    csv_recent = load_orders(windowed(sample_spec, 90))
    np.testing.assert_array_equal(recent.ids, csv_recent.ids)
    np.testing.assert_array_equal(recent.ordered_at_s, csv_recent.ordered_at_s)
    assert recent.skipped == {WINDOW_SKIP: 60_000 - recent.size}


def test_a_bad_parquet_row_in_the_window_is_named_by_its_place_in_the_file(
    tmp_path: Path, sample_spec: Spec
) -> None:
    path = tmp_path / "orders.parquet"
    row_grouped_parquet(sample_spec, path)
    table = pq.read_table(path)
    n_items = table.column("n_items").to_pylist()
    n_items[-3] = "lots"
    table = table.set_column(table.schema.get_field_index("n_items"), "n_items", pa.array(n_items))
    pq.write_table(table, path, row_group_size=6_000)
    with pytest.raises(SpecError, match=rf"row {len(n_items) - 2} \('lots'\)"):
        load_orders(windowed(sample_spec.with_data(path), 30))


def test_parallel_refits_give_the_serial_report_byte_for_byte(small_sample_spec: Path) -> None:
    # Refits every four weeks and recalibrations every two: a dozen refits, each between them.
    cadence = {"refit_every": 28.0, "recalibrate_every": 14.0}
    spec = spec_with(load_spec(small_sample_spec), backtest=cadence)
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    reports = [
        json.dumps(
            run_backtest(
                spec, table, calendar, ["adaptive", "conformal"], 2, tradeoff=False, workers=n
            ).to_json(),
            sort_keys=True,
        )
        for n in (1, 2)
    ]
    assert reports[0] == reports[1]


def test_a_refit_trained_in_a_worker_is_the_one_trained_here(small_sample_spec: Path) -> None:
    spec = load_spec(small_sample_spec)
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    start = float(np.quantile(table.ordered_at_s, 0.7))
    with Refits(spec, table, calendar, [start, start + 86_400.0], workers=2) as refits:
        assert refits.parallel
        ahead = refits.fit(start)
    here = fit_model(spec, table, calendar, start)
    np.testing.assert_array_equal(ahead.matrix, here.matrix)
    np.testing.assert_array_equal(ahead.cal_expected_hours, here.cal_expected_hours)
    np.testing.assert_array_equal(
        ahead.regressor.predict_hours(here.matrix), here.regressor.predict_hours(here.matrix)
    )
