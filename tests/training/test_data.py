"""The order-table loader: clean tables load; each mistake names file, column and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.errors import SpecError
from tests.conftest import SAMPLE_SPEC
from training.data import OrderTable, load_orders
from training.sample_data import write_sample_data
from training.spec import load_spec

SPEC = """
[dataset]
path = "{name}"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "Europe/London"
company_promise = "promised_at"

[features]
categorical = ["store_id"]
numeric = ["n_items"]
"""

HEADER = "order_id,ordered_at,fulfilled_at,promised_at,store_id,n_items\n"
ROWS = [
    "A1,2024-03-01 10:00:00,2024-03-05 12:00:00,2024-03-11,MAN,1\n",
    "A2,2024-03-01T11:00:00+00:00,,2024-03-11,LDS,2\n",
    "A3,2024-07-01 09:00:00,2024-07-03 09:00:00,2024-07-11,MAN,\n",
]


def table_at(tmp_path: Path, rows: list[str], name: str = "orders.csv") -> Path:
    (tmp_path / name).write_text(HEADER + "".join(rows), encoding="utf-8")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(name=name), encoding="utf-8")
    return spec


def test_a_clean_table_loads_sorted_in_utc(tmp_path: Path) -> None:
    table = load_orders(load_spec(table_at(tmp_path, list(reversed(ROWS)))))
    assert list(table.ids) == ["A1", "A2", "A3"]
    # March is GMT, July is BST: naive local times become the right UTC instants.
    assert table.ordered_at_s[0] == pd.Timestamp("2024-03-01 10:00", tz="UTC").timestamp()
    assert table.ordered_at_s[2] == pd.Timestamp("2024-07-01 08:00", tz="UTC").timestamp()
    assert np.isnan(table.fulfilled_at_s[1]) and table.is_open.tolist() == [False, True, False]
    assert table.company_deadline_s is not None
    # A promised date means the end of that local day.
    assert table.company_deadline_s[0] == pd.Timestamp("2024-03-12 00:00", tz="UTC").timestamp()
    assert list(table.columns["store_id"]) == ["MAN", "LDS", "MAN"]
    assert np.isnan(table.columns["n_items"][2])
    assert table.rows_read == 3


def test_parquet_loads_the_same(tmp_path: Path) -> None:
    csv_table = load_orders(load_spec(table_at(tmp_path, ROWS)))
    frame = pd.read_csv(tmp_path / "orders.csv", dtype=str)
    frame.to_parquet(tmp_path / "orders.parquet")
    (tmp_path / "spec.toml").write_text(SPEC.format(name="orders.parquet"), encoding="utf-8")
    parquet_table = load_orders(load_spec(tmp_path / "spec.toml"))
    np.testing.assert_array_equal(csv_table.ordered_at_s, parquet_table.ordered_at_s)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [ROWS[0], "A2,yesterday,,2024-03-11,LDS,2\n"],
            "column 'ordered_at' has values that are "
            "not ISO timestamps like '2024-03-14 10:30:00': line 3 ('yesterday')",
        ),
        (
            [ROWS[0], "A2,2024-03-05 10:00:00,2024-03-01 10:00:00,2024-03-11,LDS,2\n"],
            "column 'fulfilled_at' is before the order time: line 3",
        ),
        (
            [ROWS[0], "A1,2024-03-05 10:00:00,,2024-03-11,LDS,2\n"],
            "column 'order_id' has duplicate ids (each order must appear once): line 3",
        ),
        (
            [ROWS[0], "A2,2024-03-05 10:00:00,,2024-03-11,LDS,two\n"],
            "column 'n_items' has values that are not numbers: line 3 ('two')",
        ),
        (
            [ROWS[0], "A2,2024-03-05 10:00:00,,2024-03-11,LDS,inf\n"],
            "column 'n_items' has infinite values",
        ),
        ([ROWS[0], "A2,1850-03-05 10:00:00,,2024-03-11,LDS,1\n"], "is before 1990-01-01"),
        ([], "the table is empty"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, rows: list[str], message: str) -> None:
    spec = load_spec(table_at(tmp_path, rows))
    with pytest.raises(SpecError) as caught:
        load_orders(spec)
    assert "orders.csv" in str(caught.value)
    assert message in str(caught.value)


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    spec_path = table_at(tmp_path, ROWS)
    frame = pd.read_csv(tmp_path / "orders.csv", dtype=str).drop(columns=["n_items"])
    frame.to_csv(tmp_path / "orders.csv", index=False)
    with pytest.raises(SpecError, match="missing column 'n_items'; the file has order_id"):
        load_orders(load_spec(spec_path))


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    spec_path = table_at(tmp_path, ROWS)
    with (tmp_path / "orders.csv").open("ab") as handle:
        handle.write(b"A9,2024-03-05 10:00:00,,2024-03-11,M\xe9N,1\n")
    with pytest.raises(SpecError, match=r"line 5: bytes that are not UTF-8"):
        load_orders(load_spec(spec_path))


def test_missing_file(tmp_path: Path) -> None:
    spec_path = table_at(tmp_path, ROWS)
    (tmp_path / "orders.csv").unlink()
    with pytest.raises(SpecError, match="no such data file"):
        load_orders(load_spec(spec_path))


def test_the_sample_loads_the_same_from_csv_and_parquet(tmp_path: Path) -> None:
    # Parquet keeps real date and time types (Arrow-backed in pandas): the loader must read
    # them exactly as it reads their text in a CSV.
    tables = []
    for file_format in ("csv", "parquet"):
        folder = tmp_path / file_format
        data = write_sample_data(folder, n_orders=2_000, seed=5, file_format=file_format)
        spec = load_spec(SAMPLE_SPEC).with_data(data)
        tables.append(load_orders(spec))
    csv_table, parquet_table = tables
    np.testing.assert_array_equal(csv_table.ordered_at_s, parquet_table.ordered_at_s)
    np.testing.assert_array_equal(csv_table.fulfilled_at_s, parquet_table.fulfilled_at_s)
    assert csv_table.company_deadline_s is not None and parquet_table.company_deadline_s is not None
    np.testing.assert_array_equal(csv_table.company_deadline_s, parquet_table.company_deadline_s)
    assert list(csv_table.columns["store_id"]) == list(parquet_table.columns["store_id"])


SAO_PAULO_SPEC = SPEC.replace('"Europe/London"', '"America/Sao_Paulo"')  # UTC-3 all of 2025


def utc(text: str) -> float:
    return pd.Timestamp(text, tz="UTC").timestamp()


def sao_paulo_table(folder: Path, rows: list[str]) -> OrderTable:
    """The order table of these CSV rows (after `HEADER`) under a spec in America/Sao_Paulo."""
    (folder / "orders.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    (folder / "spec.toml").write_text(SAO_PAULO_SPEC.format(name="orders.csv"), encoding="utf-8")
    return load_orders(load_spec(folder / "spec.toml"))


def test_date_only_text_is_a_local_date_and_offsets_need_a_time(tmp_path: Path) -> None:
    # "2025-03-04" ends in "-04", which is not a UTC offset: the date is local to the spec.
    rows = [
        "B1,2025-03-04,2025-03-06 14:00:00,2025-03-10,SAO,1\n",
        "B2,2025-03-04T10:30:00-03:00,2025-03-06T12:00:00Z,2025-03-10T18:00:00+00:00,SAO,1\n",
        "B3,2025-03-04 22:15:00,,2025-03-10,RIO,1\n",
    ]
    table = sao_paulo_table(tmp_path, rows)
    assert list(table.ids) == ["B1", "B2", "B3"]
    assert table.ordered_at_s.tolist() == [
        utc("2025-03-04 03:00"),  # local midnight
        utc("2025-03-04 13:30"),  # a real offset after a time still counts
        utc("2025-03-05 01:15"),
    ]
    assert table.fulfilled_at_s[:2].tolist() == [utc("2025-03-06 17:00"), utc("2025-03-06 12:00")]
    assert table.company_deadline_s is not None
    assert table.company_deadline_s.tolist() == [
        utc("2025-03-11 03:00"),  # the end of the local promised day
        utc("2025-03-10 18:00"),
        utc("2025-03-11 03:00"),
    ]


def test_parquet_dates_are_local_dates(tmp_path: Path) -> None:
    # A Parquet date32 column is a date, local to the spec's zone like its text in a CSV.
    frame = pd.DataFrame(
        {
            "order_id": ["C1", "C2"],
            "ordered_at": [dt.date(2025, 3, 4), dt.date(2025, 3, 5)],
            "fulfilled_at": [dt.datetime(2025, 3, 6, 14), None],
            "promised_at": [dt.date(2025, 3, 10), dt.date(2025, 3, 11)],
            "store_id": ["SAO", "RIO"],
            "n_items": [1, 2],
        }
    )
    schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("ordered_at", pa.date32()),
            ("fulfilled_at", pa.timestamp("us")),
            ("promised_at", pa.date32()),
            ("store_id", pa.string()),
            ("n_items", pa.int64()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema), tmp_path / "orders.parquet")
    spec_text = SAO_PAULO_SPEC.format(name="orders.parquet")
    (tmp_path / "spec.toml").write_text(spec_text, encoding="utf-8")
    table = load_orders(load_spec(tmp_path / "spec.toml"))
    assert table.ordered_at_s.tolist() == [utc("2025-03-04 03:00"), utc("2025-03-05 03:00")]
    assert table.fulfilled_at_s[0] == utc("2025-03-06 17:00")
    assert table.company_deadline_s is not None
    assert table.company_deadline_s.tolist() == [utc("2025-03-11 03:00"), utc("2025-03-12 03:00")]


def last_instant_before(midnight_utc: str) -> Any:
    """Matches epoch seconds one microsecond before `midnight_utc` (and so before it)."""
    midnight = utc(midnight_utc)
    return pytest.approx(midnight - 1e-6, abs=2e-7, rel=0.0)


def test_date_only_deliveries_are_read_as_the_end_of_their_local_day(tmp_path: Path) -> None:
    # A delivery stamped with its day alone happened some time that day: it is read as the
    # day's last instant (at the loader's microseconds), so it is never before an order placed
    # the same day and it cannot meet a promise for the day before.
    rows = [
        "D1,2025-03-04 10:00:00,2025-03-04,2025-03-04,SAO,1\n",
        "D2,2025-03-04 11:00:00,,2025-03-10,SAO,1\n",
        "D3,2025-03-05 09:00:00,2025-03-07,2025-03-06,RIO,1\n",
    ]
    table = sao_paulo_table(tmp_path, rows)
    assert table.fulfilled_precision == "day"
    assert last_instant_before("2025-03-05 03:00") == table.fulfilled_at_s[0]
    assert np.isnan(table.fulfilled_at_s[1])
    assert last_instant_before("2025-03-08 03:00") == table.fulfilled_at_s[2]
    # The company's promised date ends at the next local midnight: D1's delivery meets it.
    assert table.company_deadline_s is not None
    assert table.fulfilled_at_s[0] <= table.company_deadline_s[0] == utc("2025-03-05 03:00")
    assert table.fulfilled_at_s[2] > table.company_deadline_s[2]


def test_a_delivery_column_with_times_keeps_them(tmp_path: Path) -> None:
    # One value with a time makes the column time-precise; a date among times is its midnight.
    rows = [
        "E1,2025-03-01 10:00:00,2025-03-04,2025-03-10,SAO,1\n",
        "E2,2025-03-04 11:00:00,2025-03-05 12:00:00,2025-03-10,SAO,1\n",
    ]
    table = sao_paulo_table(tmp_path, rows)
    assert table.fulfilled_precision == "time"
    assert table.fulfilled_at_s.tolist() == [utc("2025-03-04 03:00"), utc("2025-03-05 15:00")]


def test_parquet_delivery_dates_are_day_precise(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "order_id": ["F1", "F2"],
            "ordered_at": [dt.datetime(2025, 3, 4, 10), dt.datetime(2025, 3, 4, 12)],
            "fulfilled_at": [dt.date(2025, 3, 4), None],
            "promised_at": [dt.date(2025, 3, 4), dt.date(2025, 3, 9)],
            "store_id": ["SAO", "RIO"],
            "n_items": [1, 2],
        }
    )
    schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("ordered_at", pa.timestamp("us")),
            ("fulfilled_at", pa.date32()),
            ("promised_at", pa.date32()),
            ("store_id", pa.string()),
            ("n_items", pa.int64()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema), tmp_path / "orders.parquet")
    spec_text = SAO_PAULO_SPEC.format(name="orders.parquet")
    (tmp_path / "spec.toml").write_text(spec_text, encoding="utf-8")
    table = load_orders(load_spec(tmp_path / "spec.toml"))
    assert table.fulfilled_precision == "day"
    assert last_instant_before("2025-03-05 03:00") == table.fulfilled_at_s[0]
    assert np.isnan(table.fulfilled_at_s[1])


def test_the_sample_delivery_times_are_time_precise(tmp_path: Path) -> None:
    assert load_orders(load_spec(table_at(tmp_path, ROWS))).fulfilled_precision == "time"
