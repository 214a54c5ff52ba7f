"""The walk-forward back-test: honest scoring, no look-ahead, and what it says on the sample data.

The small tables are built in code and checked by hand; the sample-data runs fit the real model
at real cut-offs (a few seconds each), shared within this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.calendar import BusinessCalendar
from models.quoting import segment_labels
from models.segments import segment_keys
from tests.conftest import spec_with
from training.backtest import (
    COMPANY,
    FLAT,
    BacktestReport,
    FoldPlan,
    Scored,
    WalkForward,
    backtest_summary,
    build_report,
    plan_folds,
    run_backtest,
    score,
    walk_forward,
)
from training.backtest.scoring import _segment_keys
from training.cli import app
from training.data import OrderTable, load_orders
from training.spec import Spec, load_spec
from training.train import build_calendar

TODAY = dt.date(2026, 11, 23)
DRIFT_START = dt.datetime(2025, 9, 1, tzinfo=dt.UTC).timestamp()  # MAN's slower lab


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


# --------------------------------------------------------------------------- a hand-checked table

HAND_SPEC = """
[dataset]
path = "orders.csv"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "UTC"
company_promise = "promised_at"

[features]
numeric = ["size"]

[quote]
unit = "hour"
policy = "fixed"
fixed_buffer = 2          # hours
"""

# The quoted window: orders at half past the hour. The model learnt that every order takes exactly
# 5 hours, the fixed buffer adds 2, and 7:30 later rounds up to the next whole hour: each promise
# is 7.5 hours after the order. The company promised 7 hours (a time, not a date).
#          id    placed  ready (empty: still open when extracted)
WINDOW = [
    ("W1", "00:30", "06:30"),  # 1.5 h early: impressed (at least an hour before)
    ("W2", "01:30", "08:30"),  # 0.5 h early: satisfied
    ("W3", "02:30", "10:00"),  # exactly on the deadline: kept, satisfied
    ("W4", "03:30", "11:01"),  # one minute late
    ("W5", "04:30", "13:30"),  # 1.5 h late; the latest time in the file: the extraction moment
    ("W6", "05:30", ""),  # open; its 13:00 deadline passed before 13:30: known late (by 0.5 h)
    ("W7", "11:30", ""),  # open; its 19:00 deadline is after 13:30: unknown, left out
]
HISTORY_ORDERS = 400  # one an hour before the window, each taking exactly 5 hours


def write_hand_table(folder: Path) -> Path:
    rows = ["order_id,ordered_at,fulfilled_at,promised_at,size"]
    start = dt.datetime(2025, 1, 2, 0, 30)
    for i in range(HISTORY_ORDERS):
        placed = start + dt.timedelta(hours=i)
        ready = placed + dt.timedelta(hours=5)
        promised = placed + dt.timedelta(hours=10)
        rows.append(
            f"H{i:04d},{placed:%Y-%m-%d %H:%M},{ready:%Y-%m-%d %H:%M},"
            f"{promised:%Y-%m-%d %H:%M},{i % 3}"
        )
    day = "2025-01-20"
    for order_id, placed, ready in WINDOW:
        placed_at = dt.datetime.fromisoformat(f"{day} {placed}")
        promised = placed_at + dt.timedelta(hours=7)
        ready_text = f"{day} {ready}" if ready else ""
        rows.append(f"{order_id},{day} {placed},{ready_text},{promised:%Y-%m-%d %H:%M},1")
    (folder / "orders.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "spec.toml").write_text(HAND_SPEC, encoding="utf-8")
    return folder / "spec.toml"


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, OrderTable, BusinessCalendar]:
    spec = load_spec(write_hand_table(tmp_path_factory.mktemp("hand")))
    table = load_orders(spec)
    return spec, table, build_calendar(spec, table, TODAY)


def hand_plan(table: OrderTable) -> FoldPlan:
    return FoldPlan(
        cutoffs_s=(at("2025-01-20 00:00"),),
        ends_s=(at("2025-01-21 00:00"),),
        settle_hours=0.0,
        as_of_s=table.as_of_s,
    )


def test_a_fixed_buffer_is_scored_exactly_as_a_count_by_hand(
    hand: tuple[Spec, OrderTable, BusinessCalendar],
) -> None:
    spec, table, calendar = hand
    assert table.as_of_s == at("2025-01-20 13:30")
    steps: list[tuple[int, int]] = []
    report = run_backtest(
        spec,
        table,
        calendar,
        ["fixed"],
        None,
        lambda _what, done, total: steps.append((done, total)),
        tradeoff=False,
        plan=hand_plan(table),
    )
    fixed = report.policies["fixed"].overall
    # Six known outcomes: W4, W5 and W6 late; W7 unknown.
    assert fixed.n_quotes == 6
    assert fixed.n_unknown == 1
    assert fixed.late_rate == pytest.approx(3 / 6)
    assert fixed.impressed == pytest.approx(1 / 6)
    assert fixed.satisfied == pytest.approx(2 / 6)
    assert fixed.disappointed == pytest.approx(3 / 6)
    assert fixed.mean_promise_hours == pytest.approx(7.5)
    assert fixed.median_promise_hours == pytest.approx(7.5)
    assert fixed.mean_early_hours == pytest.approx((1.5 + 0.5 + 0.0) / 3)
    assert fixed.mean_late_hours == pytest.approx((1 / 60 + 1.5 + 0.5) / 3)
    # The same figures from a direct count over the hand-derived deadlines.
    window = table.subset(table.ordered_at_s >= at("2025-01-20 00:00"))
    deadline = window.ordered_at_s + 7.5 * 3600
    known = ~np.isnan(window.fulfilled_at_s) | (deadline < table.as_of_s)
    late = known & ~(window.fulfilled_at_s <= deadline)
    assert fixed.late_rate == pytest.approx(late.sum() / known.sum())
    # The company's 7-hour promise: W1 kept an hour early (impressed), W2 kept on the dot,
    # W3..W5 broken, W6 open past its 12:30 deadline (broken), W7 unknown (18:30).
    assert report.company_promise is not None
    company = report.company_promise.overall
    assert company.n_quotes == 6
    assert company.n_unknown == 1
    assert company.late_rate == pytest.approx(4 / 6)
    assert company.impressed == pytest.approx(1 / 6)
    assert company.satisfied == pytest.approx(1 / 6)
    assert company.mean_promise_hours == pytest.approx(7.0)
    assert [f.cutoff for f in report.policies["fixed"].by_fold] == ["2025-01-20T00:00:00Z"]
    assert steps[-1][0] == steps[-1][1]
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(steps))


def test_the_report_is_plain_json_with_every_figure_the_issue_lists(
    hand: tuple[Spec, OrderTable, BusinessCalendar],
) -> None:
    spec, table, calendar = hand
    report = run_backtest(
        spec,
        table,
        calendar,
        ["fixed", "conformal"],
        None,
        tradeoff=["fixed", "conformal"],
        plan=hand_plan(table),
    ).to_json()
    json.dumps(report, allow_nan=False)
    for figures in [*report["policies"].values(), report[COMPANY]]:
        for key in (
            "late_rate",
            "n_quotes",
            "mean_promise_hours",
            "median_promise_hours",
            "mean_early_hours",
            "mean_late_hours",
            "impressed",
            "satisfied",
            "disappointed",
            "by_segment",
            "by_fold",
        ):
            assert key in figures, key
        assert figures["impressed"] + figures["satisfied"] + figures["disappointed"] == (
            pytest.approx(1.0)
        )
    assert report["dataset"]["rows_read"] == HISTORY_ORDERS + len(WINDOW)
    assert report["dataset"]["rows_used"] == HISTORY_ORDERS + len(WINDOW)
    assert {"first_order", "last_order", "span_days"} <= set(report["dataset"])
    assert {"mae_hours", "pinball_loss_hours", "quantile"} <= set(report["model"])
    for family in ("fixed", "conformal", FLAT):
        points = [p for p in report["tradeoff"] if p["policy"] == family]
        assert len(points) >= 10, family
        # A family's points name their confidence (1 - target), the flat rule's its duration.
        level = "flat_hours" if family == FLAT else "confidence"
        assert all({"policy", level, "late_rate", "mean_promise_hours"} <= set(p) for p in points)


# --------------------------------------------------------------------------- no look-ahead


def test_folds_are_in_time_order_and_the_last_ends_a_settle_time_before_the_extraction(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    plan = plan_folds(sample_spec, sample_table, sample_calendar, folds=5)
    assert plan.folds == 5
    assert list(plan.cutoffs_s) == sorted(plan.cutoffs_s)
    assert plan.ends_s[:-1] == plan.cutoffs_s[1:]  # each fold quotes up to the next cut-off
    assert plan.ends_s[-1] <= plan.as_of_s - plan.settle_hours * 3600
    # Daily promises: cut-offs on local midnights.
    for cutoff in plan.cutoffs_s:
        local = dt.datetime.fromtimestamp(cutoff, sample_calendar.zone)
        assert (local.hour, local.minute) == (0, 0)
    window = (sample_table.ordered_at_s >= plan.cutoffs_s[-1]) & (
        sample_table.ordered_at_s < plan.ends_s[-1]
    )
    assert sample_table.is_open[window].mean() < 0.02  # almost all of the last fold observed


def test_too_many_folds_for_the_history_is_a_clear_error(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    from models.errors import SpecError

    spec = spec_with(sample_spec, backtest={"horizon_days": 400})
    with pytest.raises(SpecError, match="before the first order"):
        plan_folds(spec, sample_table, sample_calendar, folds=3)


def quoted_deadlines(run: WalkForward, name: str) -> dict[int, float]:
    """Order row -> deadline, over every fold."""
    return {
        int(r): float(d)
        for record in run.policies[name]
        for r, d in zip(record.rows, record.deadline_s, strict=True)
    }


def test_outcomes_and_orders_after_a_moment_change_no_quote_given_before_it(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    # Rewrite the future after T: later fulfilments, some orders never fulfilled, and other
    # features for orders placed after T. Nothing quoted before T may move, adaptive included
    # (it may only learn an outcome once it would have been known).
    plan = plan_folds(sample_spec, sample_table, sample_calendar, folds=2)
    moment = plan.cutoffs_s[1] + 20 * 86_400.0
    rng = np.random.default_rng(3)
    table = sample_table
    fulfilled = table.fulfilled_at_s.copy()
    after = fulfilled > moment
    fulfilled[after] += rng.uniform(0.0, 10 * 86_400.0, int(after.sum()))
    fulfilled[after & (rng.random(table.size) < 0.2)] = np.nan
    placed_after = table.ordered_at_s >= moment
    sphere = table.columns["sphere_power"].copy()
    sphere[placed_after] = rng.permutation(sphere[placed_after])
    rewritten = dataclasses.replace(
        table, fulfilled_at_s=fulfilled, columns={**table.columns, "sphere_power": sphere}
    )
    policies = ["conformal", "adaptive"]
    original = walk_forward(sample_spec, table, sample_calendar, policies, plan)
    changed = walk_forward(sample_spec, rewritten, sample_calendar, policies, plan)
    before = table.ordered_at_s < moment - 86_400.0  # the adaptive bucket holding T may differ
    for name in policies:
        old, new = quoted_deadlines(original, name), quoted_deadlines(changed, name)
        rows = [r for r in old if before[r]]
        assert len(rows) > 5000
        assert all(old[r] == new[r] for r in rows), name
    # ... while the adaptive policy did learn from the rewritten outcomes once they were known.
    old, new = quoted_deadlines(original, "adaptive"), quoted_deadlines(changed, "adaptive")
    assert any(old[r] != new[r] for r in old if not before[r])


def test_a_planted_future_only_signal_brings_no_benefit_before_it_exists(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    # `hint` is every order's true duration, but only for orders placed from the first
    # cut-off on (0 before). The first fold's model could not have known it: its quotes must be
    # exactly those of a run without it. Later folds train on orders that carry it and do
    # benefit, which shows the signal is real and the test has teeth.
    plan = plan_folds(sample_spec, sample_table, sample_calendar, folds=2)
    table = sample_table
    hint = np.where(
        table.ordered_at_s >= plan.cutoffs_s[0],
        (table.fulfilled_at_s - table.ordered_at_s) / 3600.0,
        0.0,
    )
    planted = dataclasses.replace(table, columns={**table.columns, "hint": hint})
    spec = spec_with(sample_spec, features={"numeric": [*sample_spec.features.numeric, "hint"]})
    honest = build_report(
        sample_spec,
        table,
        sample_calendar,
        walk_forward(sample_spec, table, sample_calendar, ["conformal"], plan),
    )
    leaky = build_report(
        spec,
        planted,
        sample_calendar,
        walk_forward(spec, planted, sample_calendar, ["conformal"], plan),
    )
    first_honest = honest.policies["conformal"].by_fold[0].figures
    first_leaky = leaky.policies["conformal"].by_fold[0].figures
    assert first_leaky.late_rate == first_honest.late_rate
    assert first_leaky.mean_promise_hours == first_honest.mean_promise_hours
    assert leaky.model.by_fold[0].mae_hours == honest.model.by_fold[0].mae_hours
    later, honest_later = leaky.model.by_fold[1].mae_hours, honest.model.by_fold[1].mae_hours
    assert later is not None and honest_later is not None
    assert later < 0.5 * honest_later


# --------------------------------------------------------------------------- the sample data


@pytest.fixture(scope="module")
def sample_run(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> tuple[WalkForward, BacktestReport]:
    plan = plan_folds(sample_spec, sample_table, sample_calendar, folds=5)
    run = walk_forward(sample_spec, sample_table, sample_calendar, ["conformal", "adaptive"], plan)
    return run, build_report(sample_spec, sample_table, sample_calendar, run)


def test_the_engine_beats_the_business_rule_of_thumb_on_the_sample(
    sample_run: tuple[WalkForward, BacktestReport],
) -> None:
    _, report = sample_run
    assert report.company_promise is not None
    engine, company = report.policies["conformal"].overall, report.company_promise.overall
    assert engine.n_quotes == company.n_quotes > 25_000
    # Fewer broken promises, and promises no longer on average.
    assert engine.late_rate is not None and company.late_rate is not None
    assert engine.late_rate < company.late_rate - 0.01
    assert engine.mean_promise_hours is not None and company.mean_promise_hours is not None
    assert engine.mean_promise_hours <= company.mean_promise_hours
    # Every fold is reported in time order with its cut-off.
    cutoffs = [fold.cutoff for fold in report.policies["conformal"].by_fold]
    assert cutoffs == sorted(cutoffs) and len(cutoffs) == 5
    assert set(report.policies["conformal"].by_segment) == set(np.unique(report_segments(report)))


def report_segments(report: BacktestReport) -> list[str]:
    assert report.company_promise is not None
    return list(report.company_promise.by_segment)


def test_adaptive_holds_the_target_nearer_than_static_conformal_through_the_drift(
    sample_spec: Spec,
    sample_table: OrderTable,
    sample_calendar: BusinessCalendar,
    sample_run: tuple[WalkForward, BacktestReport],
) -> None:
    # MAN moves to a slower lab on 2025-09-01; the calibration slice lags behind it.
    run, _ = sample_run
    rates = {}
    for name in ("conformal", "adaptive"):
        scored: Scored = score(
            sample_spec, sample_table, sample_calendar, run.plan.as_of_s, run.policies[name]
        )
        drifted = scored.known & (scored.segment == "MAN") & (scored.ordered_at_s >= DRIFT_START)
        assert drifted.sum() > 1000
        rates[name] = float(scored.late[drifted].mean())
    target = sample_spec.quote.target_late_rate
    assert abs(rates["adaptive"] - target) < abs(rates["conformal"] - target), rates


def test_each_fold_reports_right_censoring_and_drift(
    sample_run: tuple[WalkForward, BacktestReport],
) -> None:
    _, report = sample_run
    for fold in report.folds:
        censoring, drift = fold.censoring, fold.drift
        assert censoring.n_open_at_cutoff > 0  # glasses take days: some are always open
        assert censoring.naive_late_rate is not None and 0.0 <= censoring.naive_late_rate <= 1.0
        assert drift.train_median_hours is not None and drift.fold_median_hours is not None
        assert drift.train_median_hours > 0 and drift.fold_median_hours > 0
        assert drift.adaptive_late_rate is not None
    # Dropping the open orders calibrates on the fast ones: it breaks more promises overall.
    naive = np.mean([f.censoring.naive_late_rate for f in report.folds])
    ours = np.mean([f.censoring.late_rate for f in report.folds])
    assert naive > ours


def test_the_manifest_summary_has_the_figures_models_lists(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> None:
    summary = backtest_summary(sample_spec, sample_table, sample_calendar, None, folds=1)
    record = summary.to_json()  # what the manifest keeps
    json.dumps(record, allow_nan=False)
    assert summary.policy == "adaptive" and summary.folds == 1  # the default
    for key in (
        "late_rate",
        "target_late_rate",
        "n_quotes",
        "mean_promise_hours",
        "median_promise_hours",
        "mae_hours",
        "company_late_rate",
        "company_mean_promise_hours",
    ):
        assert isinstance(record[key], float | int), key
    card = summary.scorecard
    assert card.policy == "adaptive"
    assert [t.target_late_rate for t in card.targets] == [0.05, 0.10]
    five, ten = card.targets
    assert five.late_rate == summary.late_rate  # the spec's target is 5%
    assert five.late_rate is not None and ten.late_rate is not None
    assert ten.late_rate > five.late_rate
    assert "(adaptive)" in card.sentence and " days" in card.sentence


# --------------------------------------------------------------------------- the command line


def test_cli_backtest_prints_a_summary_and_writes_both_reports(
    sample_spec: Spec, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--spec",
            str(sample_spec.source),
            "--policy",
            "conformal",
            "--folds",
            "1",
            "--no-tradeoff",
            "--json",
            str(tmp_path / "out" / "report.json"),
            "--html",
            str(tmp_path / "out" / "report.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "conformal" in result.stdout and "company" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert list(report["policies"]) == ["conformal"]
    assert report["protocol"]["folds"] == 1
    assert (tmp_path / "out" / "report.html").read_text(encoding="utf-8").startswith("<!doctype")


def test_cli_backtest_with_a_bad_spec_is_one_red_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset\npath = 'x.csv'\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["backtest", "--spec", str(bad)])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "not valid TOML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_backtest_with_an_unknown_policy_is_one_red_line(sample_spec: Spec) -> None:
    result = CliRunner().invoke(
        app, ["backtest", "--spec", str(sample_spec.source), "--policy", "psychic"]
    )
    assert result.exit_code == 1
    assert "'psychic' is not one of" in result.stderr


@pytest.mark.parametrize("segments", [["store_id"], ["store_id", "lens_type"]])
def test_scored_orders_are_named_by_their_segment_as_the_core_names_it(
    sample_spec: Spec, sample_table: OrderTable, segments: list[str]
) -> None:
    spec = spec_with(sample_spec, quote={"segments": segments})
    rows = np.random.default_rng(3).permutation(sample_table.size)[:20_000]
    labels = segment_labels({n: sample_table.columns[n][rows] for n in segments}, segments, 20_000)
    keys = _segment_keys(spec, sample_table, rows)
    assert keys.dtype == object
    assert keys.tolist() == segment_keys(labels, len(segments))
    assert len(set(keys.tolist())) > len(segments)
