"""The revision rule, written once (`revise`), on a residual distribution worked out by hand,
and `assess` giving the same answer for one order."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest

from models.calendar import BusinessCalendar, CalendarSpec
from models.quoting import QuoteEngine
from models.revision import OpenPromise, assess, assess_all, revise
from models.risk import RiskModel, fit_risk_model
from tests.models.test_quoting import tiny_engine

HOUR = 3600.0
START = dt.datetime(2025, 1, 6, tzinfo=dt.UTC).timestamp()
ORDER = {"lens": "sv", "items": 1.0}
# Residuals 1, 2, ..., 10 hours, one each: P(residual > r) = (10 - floor(r)) / 10.
#        deadline (h), elapsed (h), target, revised deadline (h; None: no revision)
CASES = [
    (8.0, 6.0, 0.1, 10.0),  # risk 0.5 > 0.2 at issue: of residuals above 6, 90% within 10 h
    (8.0, 0.0, 0.1, None),  # risk 0.2 is the risk at issue (above the target): as good as given
    (8.0, 3.0, 0.1, 10.0),  # risk 0.2 / 0.7 = 0.29 > 0.2: 90% of residuals above 3 within 10
    (9.5, 5.0, 0.25, None),  # risk 0.2 > 0.1 at issue but below the target: kept
    (9.5, 12.0, 0.1, 12.0),  # overdue past every residual seen: risk 1, promised now
]


def hand_risk() -> RiskModel:
    residuals = np.arange(1.0, 11.0)
    return fit_risk_model(np.zeros(10), residuals, np.zeros(10, bool), [()] * 10, 0, 1)


def hand_engine(target: float) -> QuoteEngine:
    calendar = BusinessCalendar(CalendarSpec(), first_year=2024, last_year=2026)
    engine = tiny_engine()
    return replace(
        engine, risk=hand_risk(), calendar=calendar, unit="hour", target_late_rate=target
    )


def test_the_rule_on_the_hand_distribution() -> None:
    risk = hand_risk()
    calendar = BusinessCalendar(CalendarSpec(), first_year=2024, last_year=2026)
    for deadline_h, elapsed_h, target, wanted in CASES:
        one = revise(
            risk,
            risk.resolve_keys([()]),
            calendar,
            "hour",
            target,
            np.array([START]),
            np.zeros(1),
            np.array([START + deadline_h * HOUR]),
            np.array([elapsed_h]),
        )
        case = (deadline_h, elapsed_h, target)
        if wanted is None:
            assert not one.is_revised[0] and np.isnan(one.deadline_s[0]), case
        else:
            assert one.is_revised[0], case
            assert one.deadline_s[0] == START + wanted * HOUR, case


@pytest.mark.parametrize(("deadline_h", "elapsed_h", "target", "wanted"), CASES)
def test_assess_suggests_what_the_rule_revises(
    deadline_h: float, elapsed_h: float, target: float, wanted: float | None
) -> None:
    engine = hand_engine(target)
    promise = OpenPromise(ORDER, START, START, 0.0, START + deadline_h * HOUR)
    view = assess(engine, promise, START + elapsed_h * HOUR)
    assert engine.risk is not None
    one = revise(
        engine.risk,
        [view.segment],
        engine.calendar,
        engine.unit,
        target,
        np.array([START]),
        np.zeros(1),
        np.array([promise.deadline_s]),
        np.array([view.elapsed_hours]),
    )
    assert view.probability_late == one.outlook.probability_late[0]
    if not one.is_revised[0]:
        assert view.suggested is None
    else:
        assert view.suggested is not None
        assert view.suggested.deadline_at.timestamp() == one.deadline_s[0]
        assert view.suggested.deadline_at.timestamp() > promise.deadline_s


def test_assessing_many_orders_at_once_answers_as_one_by_one() -> None:
    engine = hand_engine(0.1)
    rng = np.random.default_rng(7)
    now = START + 200.0 * HOUR
    promises = []
    for _ in range(300):
        start = now - rng.uniform(-5.0, 30.0) * HOUR
        promises.append(
            OpenPromise(ORDER, start - HOUR, start, 0.0, start + rng.uniform(1, 12) * HOUR)
        )
    together = assess_all(engine, promises, now)
    assert together == [assess(engine, promise, now) for promise in promises]
    assert 0 < sum(view.needs_revision for view in together) < len(promises)  # both kinds
    assert assess_all(replace(engine, risk=None), [], now) == []  # nothing to assess, no error
