"""Statistics over the ledger, computed by the database: the live late rate, the drift window,
the revisions made, and the promises the adaptive policy's replay learns from.

The drift window's rule lives here and only here (`decided_in_window`): a promise is decided at
its deadline at the latest, kept if the order was fulfilled by then, broken if it was fulfilled
later or is still open. Counting the promises whose deadline fell in a recent window needs no
wait for slow orders and is not biased towards quick ones, as counting recorded outcomes would
be while the slow orders are open. The adaptive replay (`decided_promises`) learns by the same
rule, from the outcomes recorded by its `now` only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Integer, Select, case, func, select
from sqlalchemy.engine import Engine

from models.features import category_label
from service.database import epoch_seconds
from service.ledger.rows import in_scope, utc
from service.settings import Stores
from service.tables import outcomes, quotes

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Decided and broken: no outcome (open past its deadline) or fulfilled after the deadline.
BROKEN = outcomes.c.quote_id.is_(None) | (outcomes.c.was_late == True)  # noqa: E712


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """Quotes given in a window for one segment, how many have outcomes, how many were late,
    and the quotes' mean target (None: no quotes, no target known)."""

    segment: str
    quotes: int
    outcomes: int
    late: int
    target_late_rate: float | None

    @classmethod
    def total(
        cls, rows: Sequence[SegmentCounts], segment: str, default_target: float | None = None
    ) -> SegmentCounts:
        """The rows added up as one segment; its target is the mean over all their quotes
        (`default_target` when there are none)."""
        quotes = sum(row.quotes for row in rows)
        targets = sum(
            row.target_late_rate * row.quotes for row in rows if row.target_late_rate is not None
        )
        return cls(
            segment=segment,
            quotes=quotes,
            outcomes=sum(row.outcomes for row in rows),
            late=sum(row.late for row in rows),
            target_late_rate=round(targets / quotes, 12) if quotes else default_target,
        )


@dataclass(frozen=True, slots=True)
class DecidedCounts:
    """Original promises whose deadline fell in a window, for one segment: decided and late
    (fulfilled after the deadline or still open), with their target and policy; `no_outcome`
    of the late ones are still open ("late, no outcome recorded")."""

    segment: str
    decided: int
    late: int
    target_late_rate: float
    policy: str
    model_version: str
    no_outcome: int = 0


@dataclass(frozen=True, slots=True)
class RevisionFacts:
    """One revision in a window: how long before the original's deadline it was made, and
    whether the revised promise was kept (None while open)."""

    hours_before_original: float
    was_late: bool | None


@dataclass(frozen=True, slots=True)
class DecidedPromises:
    """Decided promises in the order the adaptive policy learns them, and whether each broke."""

    late: BoolArray  # (n,)
    labels: list[tuple[str | None, ...]]  # each quote's segment values (`category_label`s)

    @property
    def size(self) -> int:
        return int(self.late.size)


@dataclass(frozen=True, slots=True)
class OrdersInProgress:
    """Orders the adaptive policy's nowcast watches: aligned arrays, epoch seconds and hours."""

    clock_start_s: FloatArray
    expected_hours: FloatArray
    fulfilled_s: FloatArray  # NaN: no outcome recorded by `now`
    labels: list[tuple[str | None, ...]]

    @property
    def size(self) -> int:
        return int(self.clock_start_s.size)

    @classmethod
    def none(cls) -> OrdersInProgress:
        empty = np.empty(0, dtype=np.float64)
        return cls(empty, empty, empty, [])


class LedgerStats:
    """Read-only questions to the ledger, each one query."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def segment_counts(
        self, since: dt.datetime | None, until: dt.datetime | None, stores: Stores = None
    ) -> list[SegmentCounts]:
        """Per segment: quotes of `stores` (None: all) given in [since, until), with outcomes,
        late; sorted by name."""
        late = func.sum(func.coalesce(outcomes.c.was_late.cast(Integer), 0))
        query = (
            select(
                quotes.c.segment,
                func.count().label("quotes"),
                func.count(outcomes.c.quote_id).label("outcomes"),
                late.label("late"),
                func.avg(quotes.c.target_late_rate).label("target"),
            )
            .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
            .where(in_scope(stores))
            .group_by(quotes.c.segment)
            .order_by(quotes.c.segment)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(_given_between(query, since, until)).all()
        return [
            SegmentCounts(
                segment=row.segment,
                quotes=int(row.quotes),
                outcomes=int(row.outcomes),
                late=int(row.late or 0),
                target_late_rate=round(float(row.target), 12),
            )
            for row in rows
        ]

    def decided_in_window(
        self, now_utc: dt.datetime, window_days: float, stores: Stores = None
    ) -> list[DecidedCounts]:
        """Per segment (and model version): original promises of `stores` (None: all) whose
        deadline fell in (now - window, now], all decided by now; late when fulfilled after the
        deadline or still open (those counted again in `no_outcome`). Revisions are left out:
        the alarm watches the policy's own promises."""
        since = now_utc - dt.timedelta(days=window_days)
        query = (
            select(
                quotes.c.segment,
                quotes.c.model_version,
                func.count().label("decided"),
                func.sum(case((BROKEN, 1), else_=0)).label("late"),
                func.sum(case((outcomes.c.quote_id.is_(None), 1), else_=0)).label("no_outcome"),
                func.avg(quotes.c.target_late_rate).label("target"),
                func.max(quotes.c.policy).label("policy"),
            )
            .select_from(quotes.outerjoin(outcomes, outcomes.c.quote_id == quotes.c.id))
            .where(
                quotes.c.revision == 0,
                quotes.c.deadline_at > since,
                quotes.c.deadline_at <= now_utc,
                in_scope(stores),
            )
            .group_by(quotes.c.segment, quotes.c.model_version)
            .order_by(quotes.c.segment, quotes.c.model_version)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DecidedCounts(
                segment=row.segment,
                decided=int(row.decided),
                late=int(row.late or 0),
                target_late_rate=round(float(row.target), 12),
                policy=row.policy,
                model_version=row.model_version,
                no_outcome=int(row.no_outcome or 0),
            )
            for row in rows
        ]

    def revision_facts(
        self, since: dt.datetime | None, until: dt.datetime | None, stores: Stores = None
    ) -> list[RevisionFacts]:
        """The revisions of `stores` (None: all) made in [since, until): how early, and whether
        they were kept."""
        original = quotes.alias("original")
        query = (
            select(
                quotes.c.created_at,
                original.c.deadline_at.label("original_deadline"),
                outcomes.c.was_late,
            )
            .select_from(
                quotes.join(original, original.c.id == quotes.c.revision_of).outerjoin(
                    outcomes, outcomes.c.quote_id == quotes.c.id
                )
            )
            .where((quotes.c.revision > 0) & in_scope(stores))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(_given_between(query, since, until)).all()
        return [
            RevisionFacts(
                hours_before_original=(
                    utc(row.original_deadline) - utc(row.created_at)
                ).total_seconds()
                / 3600.0,
                was_late=None if row.was_late is None else bool(row.was_late),
            )
            for row in rows
        ]

    def decided_promises(
        self, policy: str, segments: Sequence[str], now_utc: dt.datetime, limit: int
    ) -> DecidedPromises:
        """The newest `limit` promises of `policy` (every model version, revisions included)
        given by `now_utc` whose deadline has passed by then, oldest deadline first (ties in
        the order they were given). Late unless an outcome recorded by `now_utc` says the order
        was fulfilled at or before the deadline (open past the deadline is late)."""
        query = (
            select(case((BROKEN, True), else_=False).label("late"), *_segment_values(segments))
            .select_from(quotes.outerjoin(outcomes, _known_outcome(now_utc)))
            .where(
                (quotes.c.policy == policy)
                & (quotes.c.deadline_at <= now_utc)
                & (quotes.c.created_at <= now_utc)
            )
            .order_by(
                quotes.c.deadline_at.desc(), quotes.c.request_id.desc(), quotes.c.position.desc()
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()[::-1]
        return DecidedPromises(
            late=np.array([bool(row[0]) for row in rows], dtype=bool),
            labels=_labels(rows, 1, len(segments)),
        )

    def promises_in_progress(
        self,
        policy: str,
        segments: Sequence[str],
        now_utc: dt.datetime,
        given_since: dt.datetime,
        fulfilled_since: dt.datetime,
    ) -> OrdersInProgress:
        """The original promises of `policy` (one per order) given in [given_since, now_utc]
        whose clock started before `now_utc` and that were, as far as the ledger knew at
        `now_utc`, still open or fulfilled after `fulfilled_since`."""
        query = (
            select(
                epoch_seconds(quotes.c.clock_start),
                quotes.c.expected_hours,
                epoch_seconds(outcomes.c.fulfilled_at),
                *_segment_values(segments),
            )
            .select_from(quotes.outerjoin(outcomes, _known_outcome(now_utc)))
            .where(
                (quotes.c.policy == policy)
                & (quotes.c.revision == 0)
                & (quotes.c.created_at >= given_since)
                & (quotes.c.created_at <= now_utc)
                & (quotes.c.clock_start < now_utc)
                & (outcomes.c.quote_id.is_(None) | (outcomes.c.fulfilled_at > fulfilled_since))
            )
            .order_by(quotes.c.request_id, quotes.c.position)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return OrdersInProgress(
            clock_start_s=np.array([row[0] for row in rows], dtype=np.float64),
            expected_hours=np.array([row[1] for row in rows], dtype=np.float64),
            fulfilled_s=np.array(
                [math.nan if row[2] is None else row[2] for row in rows], dtype=np.float64
            ),
            labels=_labels(rows, 3, len(segments)),
        )


def _known_outcome(now_utc: dt.datetime) -> Any:
    """The join to a quote's outcome, as the ledger knew it at `now_utc`."""
    return (outcomes.c.quote_id == quotes.c.id) & (outcomes.c.recorded_at <= now_utc)


def _segment_values(segments: Sequence[str]) -> list[Any]:
    """Each segment's value read out of the features JSON by the database (text on both
    dialects, NULL when missing: `category_label` agrees with the value as quoted)."""
    return [quotes.c.features[name].as_string() for name in segments]


def _labels(rows: Sequence[Any], first: int, n: int) -> list[tuple[str | None, ...]]:
    """The segment values of each row (columns first..first + n), as canonical labels."""
    labels: dict[tuple[Any, ...], tuple[str | None, ...]] = {}
    found = []
    for row in rows:
        raw = tuple(row[first : first + n])
        label = labels.get(raw)
        if label is None:
            label = labels[raw] = tuple(category_label(v) for v in raw)
        found.append(label)
    return found


def _given_between(
    query: Select[Any], since: dt.datetime | None, until: dt.datetime | None
) -> Select[Any]:
    """`query` kept to quotes given in [since, until) (either end open when None)."""
    if since is not None:
        query = query.where(quotes.c.created_at >= since)
    if until is not None:
        query = query.where(quotes.c.created_at < until)
    return query
