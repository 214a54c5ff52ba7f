"""Hostile order tables: every corruption is a clean load or a SpecError naming file and line.

Hypothesis builds small CSV tables and damages them (wrong field counts, junk and non-UTF-8
bytes, NaN and infinity, duplicate ids, mixed and missing time zones, dates far in the past or
future, fulfilment before ordering); the loader must never raise anything but `SpecError`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import SpecError
from training.data import load_orders
from training.spec import load_spec

SPEC = """
[dataset]
path = "orders.csv"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "Europe/London"

[features]
categorical = ["store_id"]
numeric = ["n_items"]
"""
HEADER = b"order_id,ordered_at,fulfilled_at,store_id,n_items\n"

timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.datetimes().map(lambda d: d.isoformat() + "+05:30"),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "",
            "yesterday",
            "2024-02-30 10:00",
            "0001-01-01",
            "9999-12-31 23:59",
            "2024-03-31 01:30:00",
            "2024-10-27 01:30:00",
            "1e9",
        ]
    ),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(["", "NaN", "inf", "-inf", "two", "1,5", "True"]),
)
texts = st.text(max_size=12).map(lambda s: s.replace("\n", " ").replace(",", ";"))
rows = st.tuples(
    st.sampled_from(["A1", "A2", "A3", "A4", ""]), timestamps, timestamps, texts, numbers
)
damage = st.sampled_from(["none", "extra field", "short row", "bad bytes", "quote"])


def render(table: list[tuple[str, str, str, str, str]], harm: str, where: int) -> bytes:
    lines = [",".join(row).encode("utf-8", "surrogatepass") + b"\n" for row in table]
    if lines:
        i = where % len(lines)
        if harm == "extra field":
            lines[i] = lines[i].rstrip(b"\n") + b",x,y\n"
        elif harm == "short row":
            lines[i] = lines[i].split(b",")[0] + b"\n"
        elif harm == "bad bytes":
            lines[i] = lines[i].replace(b",", b",\xff\xfe", 1)
        elif harm == "quote":
            lines[i] = b'"' + lines[i]
    return HEADER + b"".join(lines)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(rows, max_size=6), damage, st.integers(0, 10))
def test_any_damaged_table_loads_or_fails_with_file_and_place(
    tmp_path: Path, table: list[tuple[str, str, str, str, str]], harm: str, where: int
) -> None:
    (tmp_path / "orders.csv").write_bytes(render(table, harm, where))
    (tmp_path / "spec.toml").write_text(SPEC, encoding="utf-8")
    spec = load_spec(tmp_path / "spec.toml")
    try:
        loaded = load_orders(spec)
    except SpecError as err:
        message = str(err)
        assert "orders.csv" in message
        assert re.search(r"line \d+|column '|empty|malformed|missing column", message), message
        return
    # What loads is clean: sorted UTC times, no fulfilment before ordering, finite numbers.
    assert np.all(np.diff(loaded.ordered_at_s) >= 0)
    done = ~np.isnan(loaded.fulfilled_at_s)
    assert np.all(loaded.fulfilled_at_s[done] >= loaded.ordered_at_s[done])
    assert not np.isinf(loaded.columns["n_items"]).any()
    assert len(set(loaded.ids)) == loaded.size
