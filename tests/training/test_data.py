"""The order-table loader: clean tables load; each mistake names file, column and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import SpecError
from tests.conftest import SAMPLE_SPEC
from training.data import load_orders
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
