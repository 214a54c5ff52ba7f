"""The back-test's adaptive policy learns every promise at its deadline, never before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.buffers import AdaptiveBuffers
from models.calendar import BusinessCalendar
from models.control import ControlState, learn
from models.quoting import QuoteEngine, segment_labels
from training.backtest import (
    AdaptiveStream,
    Watch,
    adaptive_bucket_seconds,
    plan_folds,
    quote_adaptive,
)
from training.data import OrderTable
from training.spec import Spec
from training.train import fit_engine

DAY_S = 86_400.0


def month_engine(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar
) -> tuple[QuoteEngine, float]:
    cutoff = plan_folds(spec, table, calendar, folds=2).cutoffs_s[1]
    model, _ = fit_engine(spec, table, calendar, cutoff, "adaptive")
    assert isinstance(model.engine.buffer_rule, AdaptiveBuffers)
    return model.engine, cutoff


def run_month(
    engine: QuoteEngine, cutoff: float, spec: Spec, table: OrderTable, calendar: BusinessCalendar
) -> tuple[AdaptiveStream, np.ndarray, float]:
    """Quote 30 days after the cut-off; (stream, deadlines, moment of the last look)."""
    end = cutoff + 30 * DAY_S
    rows = np.flatnonzero((table.ordered_at_s >= cutoff) & (table.ordered_at_s < end))
    watch = Watch.of(spec, table, calendar)
    watch.expected_hours[table.ordered_at_s < end] = engine.expected_trees.predict_hours(
        engine.schema.encode(table.columns, calendar.local_parts(table.ordered_at_s))
    )[table.ordered_at_s < end]
    record, stream = quote_adaptive(engine, table, rows, cutoff, end, AdaptiveStream(), watch, 0)
    bucket = adaptive_bucket_seconds(engine.unit)
    last_look = cutoff + bucket * float(np.floor((table.ordered_at_s[rows[-1]] - cutoff) / bucket))
    return stream, record.deadline_s, last_look


def test_every_promise_is_learnt_at_its_deadline_kept_or_broken(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    engine, cutoff = month_engine(sample_spec, sample_table, sample_calendar)
    stream, deadlines, last_look = run_month(
        engine, cutoff, sample_spec, sample_table, sample_calendar
    )
    decided = deadlines <= last_look
    assert 500 < int(decided.sum()) < deadlines.size  # some decided, some still pending
    assert stream.state.n_updates == int(decided.sum())
    assert len(stream.pending) == int((~decided).sum())
    assert all(deadline > last_look for deadline, *_ in stream.pending)
    # The misses are the left fold of `learn` over the decided promises in deadline order,
    # each late iff not fulfilled by its deadline.
    policy = engine.buffer_rule
    assert isinstance(policy, AdaptiveBuffers)
    rows = np.flatnonzero(
        (sample_table.ordered_at_s >= cutoff) & (sample_table.ordered_at_s < cutoff + 30 * DAY_S)
    )
    order = np.argsort(deadlines, kind="stable")
    order = order[decided[order]]
    labels = segment_labels(
        {n: sample_table.columns[n][rows] for n in sample_spec.quote.segments},
        sample_spec.quote.segments,
        rows.size,
    )
    paths = policy.paths([labels[i] for i in order.tolist()])
    late = ~(sample_table.fulfilled_at_s[rows][order] <= deadlines[order])
    folded = learn(ControlState(), paths, late, engine.target_late_rate, policy.leaks())
    assert folded.counts == stream.state.counts
    assert folded.misses == pytest.approx(stream.state.misses)
    assert 0 < int(late.sum()) < late.size
    # Every order ready a minute after it was placed: all kept, and learnt no sooner.
    early = dataclasses.replace(sample_table, fulfilled_at_s=sample_table.ordered_at_s + 60.0)
    early_stream, early_deadlines, _ = run_month(
        engine, cutoff, sample_spec, early, sample_calendar
    )
    assert early_stream.state.n_updates == int((early_deadlines <= last_look).sum())
    assert early_stream.state.misses["all orders"] < stream.state.misses["all orders"]


def test_the_watch_resolves_each_orders_path_as_the_policy_does(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    """The watch resolves each distinct tuple of segment values once: the paths are those the
    policy gives each order's own labels, in the rows' order."""
    engine, _ = month_engine(sample_spec, sample_table, sample_calendar)
    policy = engine.buffer_rule
    assert isinstance(policy, AdaptiveBuffers)
    watch = Watch.of(sample_spec, sample_table, sample_calendar)
    segments = sample_spec.quote.segments
    labels = segment_labels(
        {n: sample_table.columns[n] for n in segments}, segments, len(sample_table.ids)
    )
    rows = np.random.default_rng(5).permutation(sample_table.size)[:5000]
    assert watch.paths(policy, rows) == policy.paths([labels[i] for i in rows.tolist()])
    assert len(set(watch.paths(policy, rows))) > 1
