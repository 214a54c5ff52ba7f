"""On the sample history, time-ordered: calibrated promises keep the target late rate.

Each test fits at a cut-off using only what was known then, quotes the orders placed in the
following months through `quote_batch` (the service's path), and scores them against when the
glasses were really ready.
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.quoting import QuoteBatch, quote_batch
from tests.conftest import spec_with
from training.data import OrderTable
from training.spec import Spec
from training.train import calibrate, fit_engine, fit_model

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
    engine = fit_engine(spec, table, calendar, at(cutoff), policy)[0].engine
    held_out = table.subset((table.ordered_at_s >= at(cutoff)) & (table.ordered_at_s < at(until)))
    assert not held_out.is_open.any(), "the window must be old enough to be fully observed"
    return quote_batch(engine, held_out.columns, held_out.ordered_at_s), held_out


def late(batch: QuoteBatch, held_out: OrderTable) -> NDArray[np.bool_]:
    return held_out.fulfilled_at_s > batch.deadline_s


def test_conformal_global_keeps_five_percent_on_later_orders(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    spec = spec_with(sample_spec, quote={"segments": []})
    # Before MAN's drift, and once the fit has seen it (the drift itself is the adaptive
    # policy's test in the back-test suite).
    for cutoff, until in (("2025-03-01", "2025-07-01"), ("2026-02-01", "2026-05-10")):
        batch, held_out = quote_window(spec, sample_table, sample_calendar, cutoff, until)
        rate = late(batch, held_out).mean()
        assert 0.03 <= rate <= 0.07, (cutoff, rate)
        assert (batch.deadline_s >= batch.expected_completion_s).all()


def test_per_store_buffers_hold_every_store_where_one_global_buffer_does_not(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    # Retrained monthly, as in production; from two months after MAN's lab change (its onset
    # is the adaptive policy's test), quoting each following month.
    months = [
        "2025-11-01",
        "2025-12-01",
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-10",
    ]
    global_only = spec_with(sample_spec, quote={"segments": []})
    late_by_policy: dict[str, list[NDArray[np.bool_]]] = {"store": [], "global": []}
    stores = []
    for cutoff, until in itertools.pairwise(months):
        fold = fit_model(sample_spec, sample_table, sample_calendar, at(cutoff))
        window = (sample_table.ordered_at_s >= at(cutoff)) & (sample_table.ordered_at_s < at(until))
        held_out = sample_table.subset(window)
        assert not held_out.is_open.any()
        for name, spec in (("store", sample_spec), ("global", global_only)):
            engine = calibrate(spec, fold, sample_calendar, spec.policy_config("conformal"))[
                0
            ].engine
            batch = quote_batch(engine, held_out.columns, held_out.ordered_at_s)
            late_by_policy[name].append(late(batch, held_out))
        stores.append(held_out.columns["store_id"])
    store_of = np.concatenate(stores)
    per_store = np.concatenate(late_by_policy["store"])
    pooled = np.concatenate(late_by_policy["global"])
    assert 0.03 <= per_store.mean() <= 0.07, per_store.mean()
    far_outside = []
    for store in sorted(set(store_of)):
        members = store_of == store
        assert members.sum() >= 500, "every store has enough orders here"
        assert 0.02 <= per_store[members].mean() <= 0.08, (store, per_store[members].mean())
        if not 0.02 <= pooled[members].mean() <= 0.08:
            far_outside.append(store)
    assert "MAN" in far_outside, "one global buffer leaves the drifted store far outside"
