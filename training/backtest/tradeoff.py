"""The trade-off curve: late rate against mean promise length as the buffer varies.

Each policy family is calibrated at `TRADEOFF_TARGETS` on the same fold models (`walk`), and a
model-free `FLAT` rule promises every order one duration, swept over whole units, so a report
can say how long a promise the engine needs against one duration for all at the same late
rate. `curve_at` reads a mean promise length off a curve at a late rate; `comparisons` puts
each policy and the business's promise against the curves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from models.calendar import BusinessCalendar
from models.quoting import promise_batch
from models.units import HOURS_PER_UNIT
from training.backtest.folds import FoldPlan
from training.backtest.replay import rule_record
from training.backtest.report_data import (
    FLAT,
    CompanyComparison,
    Comparisons,
    PolicyComparison,
    TradeoffPoint,
)
from training.backtest.scoring import Scored, figures, score
from training.data import OrderTable
from training.spec import Spec

# The flat rule is swept over whole units between these quantiles of the quoted orders' durations.
FLAT_QUANTILES = (0.3, 0.998)
FLAT_MAX_POINTS = 40
MIN_FLAT_POINTS = 10

# Which mean promise length a curve is read in: hours, or the spec's units.
Scale = Literal["hours", "units"]


def family_point(family: str, target_late_rate: float, scored: Scored) -> TradeoffPoint:
    """A policy family calibrated at `target_late_rate`, as a point of its curve."""
    return _point(family, scored, target_late_rate=target_late_rate)


def flat_points(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, plan: FoldPlan, reference: Scored
) -> list[TradeoffPoint]:
    """The model-free rule: every order of `reference` promised the same duration from its
    clock start, rounded and moved off closed days like the engine's promises; swept over whole
    units. The grid comes from the quoted orders' durations, so the rule is tuned in hindsight:
    comparisons with it flatter the rule, not the engine."""
    unit = spec.quote.unit
    unit_h = HOURS_PER_UNIT[unit]
    actual = reference.actual_hours[np.isfinite(reference.actual_hours)]
    if actual.size == 0:
        return []
    low, high = (np.quantile(actual, q) / unit_h for q in FLAT_QUANTILES)
    first, last = max(1, math.floor(low)), max(1, math.ceil(high))
    last = max(last, first + MIN_FLAT_POINTS - 1)
    units = np.arange(first, last + 1, dtype=np.float64)
    if units.size > FLAT_MAX_POINTS:
        units = np.unique(np.round(np.linspace(first, last, FLAT_MAX_POINTS)))
    points = []
    n = reference.clock_start_s.size
    no_buffer = np.zeros(n)
    for n_units in units:
        hours = float(n_units * unit_h)
        # Promised as every quote is: `hours` expected from the clock start, no buffer.
        promised = promise_batch(
            calendar,
            unit,
            None,
            ordered_at_s=reference.ordered_at_s,
            clock_start_s=reference.clock_start_s,
            expected_hours=np.full(n, hours),
            buffer_hours=no_buffer,
            segments=[FLAT] * n,
            levels=np.full(n, np.nan),
        )
        deadline = promised.deadline_s
        record = rule_record(
            calendar,
            unit,
            rows=reference.rows,
            ordered_at_s=reference.ordered_at_s,
            clock_start_s=reference.clock_start_s,
            deadline_s=deadline,
            fold=0,
            promised_hours=hours,
        )
        flat = dataclasses.replace(
            score(spec, table, calendar, plan.as_of_s, [record]), fold=reference.fold
        )
        points.append(_point(FLAT, flat, flat_hours=hours))
    return points


def _point(
    policy: str,
    scored: Scored,
    *,
    target_late_rate: float | None = None,
    flat_hours: float | None = None,
) -> TradeoffPoint:
    own = figures(scored)
    return TradeoffPoint(
        policy=policy,
        confidence=None if target_late_rate is None else 1.0 - target_late_rate,
        flat_hours=flat_hours,
        target_late_rate=target_late_rate,
        late_rate=own.late_rate,
        mean_promise_hours=own.mean_promise_hours,
        median_promise_hours=own.median_promise_hours,
        mean_promise_units=own.mean_promise_units,
        n_quotes=own.n_quotes,
    )


def _length(point: TradeoffPoint, scale: Scale) -> float | None:
    return point.mean_promise_hours if scale == "hours" else point.mean_promise_units


def curve_at(
    points: Sequence[TradeoffPoint], family: str, late_rate: float | None, scale: Scale = "hours"
) -> float | None:
    """The mean promise length (in `scale`) on `family`'s trade-off curve at `late_rate`,
    linear between points; None when the rate lies outside the curve."""
    if late_rate is None:
        return None
    curve = sorted(
        (p.late_rate, length)
        for p in points
        if p.policy == family
        and p.late_rate is not None
        and (length := _length(p, scale)) is not None
    )
    if len(curve) < 2:
        return None
    rates = np.array([c[0] for c in curve])
    lengths = np.array([c[1] for c in curve])
    if not rates[0] <= late_rate <= rates[-1]:
        return None
    # Equal late rates at several lengths: the shortest promise reaching it is the fair one.
    unique_rates = np.unique(rates)
    shortest = np.array([lengths[rates == r].min() for r in unique_rates])
    if unique_rates.size == 1:
        return float(shortest[0])
    return float(np.interp(late_rate, unique_rates, shortest))


def curve_lengths(
    points: Sequence[TradeoffPoint], family: str, late_rate: float | None
) -> tuple[float | None, float | None]:
    """(hours, units): the mean promise on `family`'s curve at `late_rate` (`curve_at`)."""
    return curve_at(points, family, late_rate, "hours"), curve_at(
        points, family, late_rate, "units"
    )


def comparisons(
    scored: Mapping[str, Scored], company: Scored | None, tradeoff: Sequence[TradeoffPoint]
) -> Comparisons:
    """Promise lengths at equal late rates (hours, and units of the spec).

    Per policy: its own mean promise against the flat rule's and the `fixed` family's at the same
    late rate. For the company's promise: the mean promise each family (and the flat rule) needs
    to reach the company's late rate."""
    return Comparisons(
        policies={name: _policy_comparison(s, tradeoff) for name, s in scored.items()},
        company_promise=None if company is None else _company_comparison(company, tradeoff),
    )


def _policy_comparison(scored: Scored, tradeoff: Sequence[TradeoffPoint]) -> PolicyComparison:
    own = figures(scored)
    flat_hours, flat_units = curve_lengths(tradeoff, FLAT, own.late_rate)
    fixed_hours, fixed_units = curve_lengths(tradeoff, "fixed", own.late_rate)
    return PolicyComparison(
        late_rate=own.late_rate,
        mean_promise_hours=own.mean_promise_hours,
        flat_mean_promise_hours=flat_hours,
        saving_vs_flat_hours=_saving(flat_hours, own.mean_promise_hours),
        fixed_mean_promise_hours=fixed_hours,
        mean_promise_units=own.mean_promise_units,
        flat_mean_promise_units=flat_units,
        saving_vs_flat_units=_saving(flat_units, own.mean_promise_units),
        fixed_mean_promise_units=fixed_units,
    )


def _saving(flat: float | None, mine: float | None) -> float | None:
    return None if flat is None or mine is None else flat - mine


def _company_comparison(company: Scored, tradeoff: Sequence[TradeoffPoint]) -> CompanyComparison:
    own = figures(company)
    rate = own.late_rate
    families = sorted({p.policy for p in tradeoff})
    flat_hours, flat_units = curve_lengths(tradeoff, FLAT, rate)
    return CompanyComparison(
        late_rate=rate,
        mean_promise_hours=own.mean_promise_hours,
        flat_mean_promise_hours=flat_hours,
        at_company_late_rate_hours={f: curve_at(tradeoff, f, rate, "hours") for f in families},
        mean_promise_units=own.mean_promise_units,
        flat_mean_promise_units=flat_units,
        at_company_late_rate_units={f: curve_at(tradeoff, f, rate, "units") for f in families},
    )
