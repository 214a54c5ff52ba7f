"""On the sample history, time-ordered: calibrated promises keep the target late rate.

Each test fits at a cut-off using only what was known then, quotes the orders placed in the
following months through `quote_batch` (the service's path), and scores them against when the
glasses were really ready.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.quoting import QuoteBatch, quote_batch
from tests.conftest import spec_with
from training.data import OrderTable
from training.spec import Spec
from training.train import fit_engine

LONDON = dt.UTC


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def quote_window(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    cutoff: str,
    until: str,
    policy: str | None = None,
) -> tuple[QuoteBatch, OrderTable]:
    engine, _ = fit_engine(spec, table, calendar, at(cutoff), policy)
    held_out = table.subset((table.ordered_at_s >= at(cutoff)) & (table.ordered_at_s < at(until)))
    assert not held_out.is_open.any(), "the window must be old enough to be fully observed"
    return quote_batch(engine, held_out.columns, held_out.ordered_at_s), held_out


def late(batch: QuoteBatch, held_out: OrderTable) -> NDArray[np.bool_]:
    return held_out.fulfilled_at_s > batch.deadline_s


def test_conformal_global_keeps_five_percent_on_later_orders(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    spec = spec_with(sample_spec, quote={"segments": []})
    batch, held_out = quote_window(spec, sample_table, sample_calendar, "2025-07-01", "2025-11-01")
    rate = late(batch, held_out).mean()
    assert 0.03 <= rate <= 0.07, rate
    # Never earlier than expected, and always on an open day.
    assert (batch.deadline_s >= batch.expected_completion_s).all()


def test_per_store_buffers_hold_every_store_where_one_global_buffer_does_not(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    # A recent calibration slice, so that MAN's slower lab (from 2025-09-01) is what it sees.
    spec = spec_with(sample_spec, model={"calibration_share": 0.15})
    cutoff, until = "2026-02-01", "2026-05-10"
    per_store, held_out = quote_window(spec, sample_table, sample_calendar, cutoff, until)
    global_only = spec_with(spec, quote={"segments": []})
    pooled, _ = quote_window(global_only, sample_table, sample_calendar, cutoff, until)
    stores = held_out.columns["store_id"]
    assert 0.03 <= late(per_store, held_out).mean() <= 0.07
    far_outside = []
    for store in sorted(set(stores)):
        members = stores == store
        if members.sum() < 300:
            continue
        own_rate = late(per_store, held_out)[members].mean()
        assert 0.02 <= own_rate <= 0.08, (store, own_rate)
        pooled_rate = late(pooled, held_out)[members].mean()
        if not 0.02 <= pooled_rate <= 0.08:
            far_outside.append((store, pooled_rate))
    assert far_outside, "the global buffer should leave some store outside 5% +- 3 points"
