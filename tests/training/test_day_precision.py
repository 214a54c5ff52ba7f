"""Deliveries stamped with their day alone: a delivery on day D keeps a promise for D, not D - 1.

Scoring (`training.backtest.score`) and calibration (`training.train.calibrate`) read the same
loaded `fulfilled_at`, so both are checked on tables written as CSV text and loaded.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from models.buffers import SegmentBuffers
from models.policies import GLOBAL_SEGMENT
from training.backtest import rule_record, score
from training.data import load_orders
from training.spec import load_spec
from training.train import build_calendar, calibrate, fit_model

TODAY = dt.date(2026, 11, 23)
ZONE = ZoneInfo("America/Sao_Paulo")  # UTC-3, no daylight saving since 2019

SPEC = """
[dataset]
path = "orders.csv"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "America/Sao_Paulo"

[features]
numeric = ["size"]

[quote]
unit = "day"
policy = "conformal"
target_late_rate = 0.05
"""


def local(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


def write_table(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["order_id,ordered_at,fulfilled_at,size", *(f"{i},{o},{f},1" for i, o, f in rows)]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "spec.toml").write_text(SPEC, encoding="utf-8")
    return folder / "spec.toml"


def test_a_delivery_on_the_promised_day_is_scored_kept_and_on_the_next_late(
    tmp_path: Path,
) -> None:
    spec = load_spec(
        write_table(
            tmp_path,
            [
                ("P1", "2025-03-01 10:00:00", "2025-03-04"),  # promised 03-04: on the day
                ("P2", "2025-03-01 11:00:00", "2025-03-04"),  # promised 03-03: a day late
                ("P3", "2025-03-01 12:00:00", "2025-03-04"),  # promised 03-05: a day early
            ],
        )
    )
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    # A day promise's deadline is the end of the promised local day.
    deadline = np.array([local("2025-03-05 00:00"), local("2025-03-04 00:00"), local("2025-03-06")])
    rows = np.arange(3, dtype=np.intp)
    record = rule_record(
        calendar,
        spec.quote.unit,
        rows=rows,
        ordered_at_s=table.ordered_at_s[rows],
        clock_start_s=calendar.clock_starts(table.ordered_at_s[rows]),
        deadline_s=deadline,
        fold=0,
        promised_hours=60.0,
    )
    scored = score(spec, table, calendar, table.as_of_s, [record])
    assert scored.known.tolist() == [True, True, True]
    assert scored.late.tolist() == [False, True, False]
    assert scored.early_units.tolist() == [0.0, -1.0, 1.0]
    assert scored.impressed.tolist() == [False, False, True]
    assert scored.late_hours[1] == pytest.approx(24.0)


def test_calibration_counts_a_delivery_on_day_d_as_needing_a_promise_for_d(
    tmp_path: Path,
) -> None:
    # Every order is placed at 10:00 and delivered two days later, stamped with the day only.
    first = dt.date(2025, 1, 1)
    rows = [
        (
            f"Q{i:03d}",
            f"{first + dt.timedelta(days=i)} 10:00:00",
            f"{first + dt.timedelta(days=i + 2)}",
        )
        for i in range(200)
    ]
    spec = load_spec(write_table(tmp_path, rows))
    table = load_orders(spec)
    calendar = build_calendar(spec, table, TODAY)
    fold = fit_model(spec, table, calendar, local("2025-07-10 00:00"))
    model, report = calibrate(spec, fold, calendar)
    assert report.n_censored_calibration == 0
    rule = model.engine.buffer_rule
    assert isinstance(rule, SegmentBuffers)
    scores = rule.table[GLOBAL_SEGMENT].distribution.values
    needed_hours = scores + fold.cal_expected_hours
    # From 10:00 on D - 2 the promise for D is met by a raw completion from the start of D on
    # (38 hours), not from the start of D - 1 (14 hours, a promise the delivery breaks).
    np.testing.assert_allclose(needed_hours, 38.0, atol=1e-6)
    start = fold.start_s[fold.cal_index]
    delivered = table.subset(table.ordered_at_s < fold.cutoff_s).fulfilled_at_s[fold.cal_index]
    met_from, _ = calendar.deadlines(start + 38.0 * 3600.0, "day")
    broken_by, _ = calendar.deadlines(start + 38.0 * 3600.0 - 1.0, "day")
    assert (delivered <= met_from).all()
    assert (delivered > broken_by).all()
