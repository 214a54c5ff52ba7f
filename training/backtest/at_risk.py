"""Orders at risk: the call list a monitor would have kept, replayed over a back-test's quotes.

Each quoted order is watched by the risk model fitted at its fold's cut-off (`models.risk`) and
is flagged at a threshold when its risk of missing the promise reaches it while the order is
still open, at least one unit before the deadline (a warning that comes later is too late to act
on). Per policy and threshold the report gives the share of late orders warned of (recall), the
share of warnings about orders that came in time (false alarms), the median warning, and how
often the revision the service would have issued at the warning (`models.revision.revise`, the
rule `assess` applies) would itself have been broken (near the target if the risk model is
honest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.calendar import BusinessCalendar
from models.quoting import segment_labels
from models.revision import revise
from models.risk import RiskModel, flag_elapsed_hours
from models.units import HOURS_PER_UNIT, Unit
from training.backtest.replay import FloatArray, QuoteRecord, concat
from training.backtest.report_data import COMPANY, AtRiskEntry
from training.backtest.scoring import median, share
from training.backtest.walk import WalkForward
from training.data import OrderTable
from training.spec import Spec

# Risk thresholds at which the call list of orders at risk is replayed.
AT_RISK_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
# Risks and warning times are ratios and differences of floats: within these they tie.
RISK_TOLERANCE = 1e-9
WARNING_TOLERANCE_HOURS = 1e-9


@dataclass(frozen=True, slots=True)
class WatchedOrders:
    """Quoted orders as a monitor would have watched them (aligned arrays, epoch seconds)."""

    keys: list[str]  # each order's segment key in the risk model (`RiskModel.resolve_keys`)
    clock_start_s: FloatArray
    expected_hours: FloatArray  # the model's expectation from the clock start (NaN: none)
    deadline_s: FloatArray  # NaN: no promise given
    fulfilled_s: FloatArray  # NaN: still open at the extraction


@dataclass(frozen=True, slots=True)
class AtRiskCounts:
    """The call list at one risk threshold, replayed over orders with a known outcome.

    Counts add up over folds (`pool_at_risk`); `warning_hours` holds, for each flagged late
    order, how long before its deadline the flag came."""

    threshold: float
    n_quotes: int  # orders watched: quoted, with a known outcome
    late: int
    flagged: int
    flagged_late: int
    n_revised: int  # flagged orders the service would have revised, with a known outcome
    revised_late: int  # of those, revised promises broken too
    warning_hours: FloatArray


@dataclass(frozen=True, slots=True)
class CallList:
    """The call list at one threshold, order by order: the orders scored (`index`, positions
    in the `WatchedOrders`) and, aligned with them, when each was flagged and its revision."""

    threshold: float
    as_of_s: float  # the extraction: outcomes known by then
    index: NDArray[np.intp]
    flag_hours: FloatArray  # elapsed hours from the clock start when the risk reached it
    flagged: NDArray[np.bool_]  # flagged while open, at least a unit before the deadline
    late: NDArray[np.bool_]  # the promise given was broken (open past its deadline: late)
    warning_hours: FloatArray  # from the flag to the deadline
    fulfilled_s: FloatArray  # NaN: still open at the extraction
    # The revision issued at the flag; NaN where none: not flagged, or the service would not
    # have revised (risk not above both the target and the risk at issue, or a revision no
    # later than the promise given).
    revised_deadline_s: FloatArray

    def counts(self) -> AtRiskCounts:
        """The call list counted: orders scored, late, flagged, flagged late, the warning each
        flagged late order had, and how the revisions issued at the flags fared.

        `n_revised` counts the flagged orders the service would have revised at the flag whose
        revised promise has a known outcome (fulfilled, or open past the revised deadline at
        `as_of_s`); `revised_late` those of them whose revised promise was broken too, so
        `revised_late_rate` is over revisions actually issued. A flagged order the service would
        not have revised keeps its original promise: it counts in `flagged` (and `flagged_late`),
        never in `n_revised` or `revised_late`."""
        fulfilled, revised = self.fulfilled_s, self.revised_deadline_s
        issued = ~np.isnan(revised)
        revised_known = issued & (~np.isnan(fulfilled) | (revised < self.as_of_s))
        return AtRiskCounts(
            threshold=self.threshold,
            n_quotes=int(self.index.size),
            late=int(self.late.sum()),
            flagged=int(self.flagged.sum()),
            flagged_late=int((self.flagged & self.late).sum()),
            n_revised=int(revised_known.sum()),
            revised_late=int((revised_known & ~(fulfilled <= revised)).sum()),
            warning_hours=self.warning_hours[self.flagged & self.late],
        )


def call_list(
    orders: WatchedOrders,
    risk: RiskModel,
    calendar: BusinessCalendar,
    unit: Unit,
    target_late_rate: float,
    as_of_s: float,
    threshold: float,
) -> CallList:
    """Which orders a monitor alerting at `threshold` would have flagged in time, and the
    revision the service would have issued for each at the flag.

    Only orders scored as the back-test scores them count (fulfilled by `as_of_s`, or open with
    the deadline passed). An order is flagged when its risk reaches the threshold (within
    `RISK_TOLERANCE`: a risk computed as exactly the threshold reaches it) while it is still open
    (fulfilled after that moment, or never), at least one unit before its deadline: a call in
    the last unit comes too late to change anything for the customer. Risk only grows while an
    order is open, so the first moment it reaches the threshold decides (`flag_elapsed_hours`).

    A flagged order's revision is the service's at that moment (`models.revision.revise`, the
    rule `assess` applies): issued only when the risk exceeds both the target and the risk the
    promise had at issue, to the conditional quantile rounded as quoting rounds, and only when
    that is later than the promise given.
    """
    has_quote = np.isfinite(orders.deadline_s) & np.isfinite(orders.expected_hours)
    is_done = ~np.isnan(orders.fulfilled_s)
    index = np.flatnonzero(has_quote & (is_done | (orders.deadline_s < as_of_s)))
    keys = [orders.keys[i] for i in index.tolist()]
    start = orders.clock_start_s[index]
    expected = orders.expected_hours[index]
    deadline = orders.deadline_s[index]
    fulfilled = orders.fulfilled_s[index]
    deadline_hours = (deadline - start) / 3600.0
    flag_hours = flag_elapsed_hours(
        risk, keys, expected, deadline_hours, threshold - RISK_TOLERANCE
    )
    warning_hours = deadline_hours - flag_hours
    open_at_flag = ~(fulfilled <= start + flag_hours * 3600.0)
    in_time = warning_hours >= HOURS_PER_UNIT[unit] - WARNING_TOLERANCE_HOURS
    flagged = open_at_flag & in_time
    revised_deadline = np.full(index.size, np.nan)
    chosen = np.flatnonzero(flagged)
    if chosen.size:
        revisions = revise(
            risk,
            [keys[i] for i in chosen.tolist()],
            calendar,
            unit,
            target_late_rate,
            start[chosen],
            expected[chosen],
            deadline[chosen],
            flag_hours[chosen],
        )
        revised_deadline[chosen] = revisions.deadline_s
    return CallList(
        threshold=threshold,
        as_of_s=as_of_s,
        index=index,
        flag_hours=flag_hours,
        flagged=flagged,
        late=~(fulfilled <= deadline),  # NaN (open past the deadline): late
        warning_hours=warning_hours,
        fulfilled_s=fulfilled,
        revised_deadline_s=revised_deadline,
    )


def pool_at_risk(parts: Sequence[AtRiskCounts], threshold: float) -> AtRiskCounts:
    """Counts of several folds at one threshold, added up (none: all zero)."""
    return AtRiskCounts(
        threshold=threshold,
        n_quotes=sum(p.n_quotes for p in parts),
        late=sum(p.late for p in parts),
        flagged=sum(p.flagged for p in parts),
        flagged_late=sum(p.flagged_late for p in parts),
        n_revised=sum(p.n_revised for p in parts),
        revised_late=sum(p.revised_late for p in parts),
        warning_hours=concat([p.warning_hours for p in parts], np.float64),
    )


def at_risk_entry(counts: AtRiskCounts) -> AtRiskEntry:
    """The report's entry for one threshold: shares (None when nothing to share) and counts."""
    return AtRiskEntry(
        threshold=counts.threshold,
        recall=share(counts.flagged_late, counts.late),
        false_alarm_share=share(counts.flagged - counts.flagged_late, counts.flagged),
        median_warning_hours=median(counts.warning_hours),
        flagged=counts.flagged,
        late=counts.late,
        flagged_late=counts.flagged_late,
        revised_late_rate=share(counts.revised_late, counts.n_revised),
        n_quotes=counts.n_quotes,
        n_revised=counts.n_revised,
    )


def call_lists(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, run: WalkForward
) -> dict[str, tuple[AtRiskEntry, ...]]:
    """Replay the call list for every policy, and for the company's promise watched by the same
    fold's risk model and model expectation; folds without a risk model are left out."""
    sources: dict[str, list[QuoteRecord]] = dict(run.policies)
    if run.company is not None:
        sources[COMPANY] = [
            dataclasses.replace(own, expected_hours=ours.expected_hours)
            for own, ours in zip(run.company, run.reference, strict=True)
        ]
    segments = tuple(spec.quote.segments)
    parts: dict[str, list[list[AtRiskCounts]]] = {name: [] for name in sources}
    for k, risk in enumerate(run.risk_models):
        if risk is None:
            continue
        reference = run.reference[k]  # every record of a fold quotes the same orders
        rows = reference.rows
        labels = segment_labels({n: table.columns[n][rows] for n in segments}, segments, rows.size)
        keys = risk.resolve_keys(labels)
        for name, records in sources.items():
            record = records[k]
            if not np.array_equal(record.rows, rows):
                raise AssertionError(f"{name} quoted other orders than the reference in fold {k}")
            orders = WatchedOrders(
                keys=keys,
                clock_start_s=reference.clock_start_s,
                expected_hours=record.expected_hours,
                deadline_s=record.deadline_s,
                fulfilled_s=table.fulfilled_at_s[rows],
            )
            parts[name].append(
                [
                    call_list(
                        orders,
                        risk,
                        calendar,
                        spec.quote.unit,
                        run.target_late_rate,
                        run.plan.as_of_s,
                        threshold,
                    ).counts()
                    for threshold in AT_RISK_THRESHOLDS
                ]
            )
    return {
        name: tuple(
            at_risk_entry(pool_at_risk([fold[i] for fold in folds], threshold))
            for i, threshold in enumerate(AT_RISK_THRESHOLDS)
        )
        for name, folds in parts.items()
    }
