"""The walk forward: at each cut-off fit, calibrate every policy, and quote the next horizon.

Only what was known at a moment is used at that moment (`training.train`): the model is fitted
once per fold (refitted and recalibrated inside it on production's cadence, `refit_schedule`),
every policy and trade-off target is calibrated on it, and the orders of each period are quoted
through the service's quoting function (`replay`). Nothing is scored here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from models.calendar import BusinessCalendar
from models.quoting import QuoteEngine
from models.regressor import QuantileRegressor
from models.risk import RiskModel
from models.units import iso_utc
from training.backtest.fits import Refits, walk_workers
from training.backtest.folds import FoldPlan, refit_schedule
from training.backtest.replay import (
    AdaptiveStream,
    IntArray,
    QuoteRecord,
    Watch,
    joined,
    quote_adaptive,
    quote_static,
    rule_record,
)
from training.backtest.scoring import median
from training.data import OrderTable
from training.spec import Spec
from training.train import FitReport, FoldModel, calibrate, fit_model

# (what is being done, steps done, steps in all): drives a progress bar.
Progress = Callable[[str, int, int], None]

# Target late rates swept for each policy family's trade-off curve.
TRADEOFF_TARGETS: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30, 0.40)
# Every policy run is also run at these targets, for the scorecard (kept in `WalkForward.tradeoff`
# under (policy, target late rate) like a trade-off target).
SCORECARD_TARGETS: tuple[float, ...] = (0.05, 0.10)


@dataclass(frozen=True, slots=True)
class FoldModelInfo:
    """What one fold's model was fitted and calibrated on (hours)."""

    train_median_hours: float | None
    calibration_median_hours: float | None
    calibration_median_residual_hours: float | None  # actual - expected, fulfilled orders


@dataclass(frozen=True)
class WalkForward:
    """Everything a back-test quoted, before it is summarised into a report."""

    plan: FoldPlan
    target_late_rate: float
    policies: dict[str, list[QuoteRecord]]  # per policy, one record per fold in time order
    company: list[QuoteRecord] | None
    naive: list[QuoteRecord]  # conformal calibrated naively (latest fulfilled, open dropped)
    reference: list[QuoteRecord]  # conformal as the engine calibrates it (for the comparison)
    fits: list[FitReport]
    fold_models: list[FoldModelInfo]  # per fold: training and calibration medians
    # (family, target late rate) -> one record per fold.
    tradeoff: dict[tuple[str, float], list[QuoteRecord]]
    # Per fold: the residual distributions that watch open orders (the same for every policy).
    risk_models: list[RiskModel | None] = dataclasses.field(default_factory=list)


def walk_forward(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    policies: Sequence[str],
    plan: FoldPlan,
    *,
    target: float | None = None,
    tradeoff_families: Sequence[str] = (),
    tradeoff_targets: Sequence[float] = TRADEOFF_TARGETS,
    progress: Progress | None = None,
    workers: int | None = None,
) -> WalkForward:
    """Fit at each cut-off, calibrate each policy, quote the next horizon; nothing is scored.

    `target` is the late rate the policies are run at (default: the spec's); every family of
    `tradeoff_families` is also calibrated at each of `tradeoff_targets`. The refits are
    trained ahead by `workers` processes (`fits`; None: one per core on a large table, else
    none), with the same results.

    Runs OpenMP single-threaded: the batches here are small, and OpenMP threads spinning on a
    busy machine made one model fit take a minute instead of a second."""
    goal = spec.quote.target_late_rate if target is None else target
    tasks = _tasks(policies, goal, tradeoff_families, tradeoff_targets)
    with threadpool_limits(limits=1, user_api="openmp"):
        return _walk_forward(spec, table, calendar, plan, goal, tasks, progress, workers)


@dataclass(frozen=True, slots=True)
class _Task:
    """One policy (or trade-off target) to calibrate and quote on a fold."""

    name: str
    target_late_rate: float
    is_sweep: bool

    @property
    def label(self) -> str:
        return f"{self.name} at {self.target_late_rate:.1%}" if self.is_sweep else self.name

    @property
    def as_run(self) -> _Task:
        """The policy run at the same target."""
        return _Task(self.name, self.target_late_rate, False)


def _tasks(
    policies: Sequence[str], goal: float, families: Sequence[str], targets: Sequence[float]
) -> list[_Task]:
    """Each policy at the goal, each family at each trade-off target, each policy at each
    scorecard target; once each, in that order."""
    tasks = [_Task(name, goal, False) for name in policies]
    tasks += [_Task(family, float(t), True) for family in families for t in targets]
    tasks += [_Task(name, t, True) for name in policies for t in SCORECARD_TARGETS]
    return list(dict.fromkeys(tasks))


def _same_as(spec: Spec, tasks: Sequence[_Task]) -> dict[_Task, _Task]:
    """A sweep at the target of a policy run is that run, when the spec sets no buffer that
    the sweep would drop: quote it once."""
    return {
        task: task.as_run
        for task in tasks
        if task.is_sweep and task.as_run in tasks and _sweep_equals_policy(spec, task.name)
    }


def _sweep_equals_policy(spec: Spec, name: str) -> bool:
    """Whether the policy as the spec configures it is the same as its trade-off sweep's."""
    return spec.policy_config(name).calibrates_all


class _Quoter:
    """Calibrates and quotes the tasks on each fold's model, keeping what carries across the
    periods of a walk: each adaptive task's stream, and the quantile policy's own model per fold
    and task (refitted once per fold, not at every refit)."""

    def __init__(
        self, spec: Spec, table: OrderTable, calendar: BusinessCalendar, watch: Watch
    ) -> None:
        self.spec = spec
        self.table = table
        self.calendar = calendar
        self.watch = watch
        self.streams: dict[_Task, AdaptiveStream] = {}
        self.quantile_models: dict[tuple[int, _Task], QuantileRegressor] = {}

    def quote(
        self,
        task: _Task,
        fold: FoldModel,
        k: int,
        period: tuple[float, float],
        rows: IntArray,
        risk: RiskModel | None,
    ) -> QuoteRecord:
        """`task` calibrated on `fold` (fold number `k`, its calibration slice's risk
        distributions `risk`), quoting `rows` placed in `period`."""
        choice = self.spec.policy_config(task.name, task.target_late_rate)
        # The trade-off sweeps calibrated buffers: a buffer given in the spec would not move.
        model, _ = calibrate(
            self.spec,
            fold,
            self.calendar,
            choice.calibrating() if task.is_sweep else choice,
            self.quantile_models.get((k, task)),
            risk,
        )
        engine = model.engine
        if model.quantile_regressor is not None:
            self.quantile_models[(k, task)] = model.quantile_regressor
        if task.name != "adaptive":
            return quote_static(engine, self.table, rows, k)
        start, stop = period
        stream = self.streams.get(task, AdaptiveStream())
        record, self.streams[task] = quote_adaptive(
            engine, self.table, rows, start, stop, stream, self.watch, k
        )
        return record


def _walk_forward(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    plan: FoldPlan,
    goal: float,
    tasks: list[_Task],
    progress: Progress | None,
    workers: int | None,
) -> WalkForward:
    schedules = [
        refit_schedule(spec, calendar, cutoff, end)
        for cutoff, end in zip(plan.cutoffs_s, plan.ends_s, strict=True)
    ]
    starts = [start for schedule in schedules for start, _, refit in schedule if refit]
    count = walk_workers(table, len(starts)) if workers is None else workers
    with Refits(spec, table, calendar, starts, count) as refits:
        return _walk(spec, table, calendar, plan, goal, tasks, progress, schedules, refits)


def _walk(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    plan: FoldPlan,
    goal: float,
    tasks: list[_Task],
    progress: Progress | None,
    schedules: list[list[tuple[float, float, bool]]],
    refits: Refits,
) -> WalkForward:
    say = progress or (lambda _what, _done, _total: None)
    same_as = _same_as(spec, tasks)
    own_tasks = [task for task in tasks if task not in same_as]
    # The conformal policy at the target is the reference every fold quotes anyway.
    reference_task = _Task("conformal", goal, False)
    total = sum(len(schedule) for schedule in schedules) * (1 + len(own_tasks))
    watch = Watch.of(spec, table, calendar)
    quoter = _Quoter(spec, table, calendar, watch)
    done = 0
    records: dict[_Task, list[QuoteRecord]] = {task: [] for task in tasks}
    naive: list[QuoteRecord] = []
    reference: list[QuoteRecord] = []
    fits: list[FitReport] = []
    fold_models: list[FoldModelInfo] = []
    risk_models: list[RiskModel | None] = []
    for k, cutoff in enumerate(plan.cutoffs_s):
        parts: dict[_Task, list[QuoteRecord]] = {task: [] for task in own_tasks}
        fold_parts: list[QuoteRecord] = []
        naive_parts: list[QuoteRecord] = []
        fold: FoldModel | None = None
        for start, stop, refit in schedules[k]:
            where = f"fold {k + 1}/{plan.folds} ({iso_utc(start)[:10]})"
            say(f"{where}: {'fitting the model' if refit else 'recalibrating'}", done, total)
            fold = refits.fit(start) if refit else fit_model(spec, table, calendar, start, fold)
            rows = np.flatnonzero((table.ordered_at_s >= start) & (table.ordered_at_s < stop))
            calibrated, fit = calibrate(spec, fold, calendar, spec.policy_config("conformal", goal))
            conformal = calibrated.engine
            if start == cutoff:
                fits.append(fit)
                fold_models.append(_fold_model_info(fold))
                risk_models.append(conformal.risk)
            fold_parts.append(quote_static(conformal, table, rows, k))
            if k == 0 and start == cutoff:  # the history the walk starts on, as first modelled
                watch.expected_hours[: fold.known.size] = fold.regressor.compiled().predict_hours(
                    fold.matrix
                )
            watch.expected_hours[rows] = fold_parts[-1].expected_hours
            naive_engine = _naive_engine(spec, fold, calendar, conformal)
            naive_parts.append(quote_static(naive_engine, table, rows, k))
            done += 1
            for task in own_tasks:
                say(f"{where}: {task.label}", done, total)
                if task == reference_task:
                    parts[task].append(fold_parts[-1])
                else:
                    parts[task].append(
                        quoter.quote(task, fold, k, (start, stop), rows, conformal.risk)
                    )
                done += 1
        reference.append(joined(fold_parts, k))
        naive.append(joined(naive_parts, k))
        results = {task: joined(parts[task], k) for task in own_tasks}
        for task in tasks:
            records[task].append(results[same_as.get(task, task)])
    say("scoring", total, total)
    return WalkForward(
        plan=plan,
        target_late_rate=goal,
        policies={task.name: records[task] for task in tasks if not task.is_sweep},
        company=_company_records(spec, table, calendar, reference),
        naive=naive,
        reference=reference,
        fits=fits,
        fold_models=fold_models,
        tradeoff={
            (task.name, task.target_late_rate): records[task] for task in tasks if task.is_sweep
        },
        risk_models=risk_models,
    )


def _company_records(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, reference: Sequence[QuoteRecord]
) -> list[QuoteRecord] | None:
    """The business's own promises to the orders each fold quoted (None: the spec names none)."""
    deadlines = table.company_deadline_s
    if deadlines is None:
        return None
    return [
        rule_record(
            calendar,
            spec.quote.unit,
            rows=fold.rows,
            ordered_at_s=table.ordered_at_s[fold.rows],
            clock_start_s=fold.clock_start_s,
            deadline_s=deadlines[fold.rows],
            fold=fold.fold,
        )
        for fold in reference
    ]


def _naive_engine(
    spec: Spec, fold: FoldModel, calendar: BusinessCalendar, engine: QuoteEngine
) -> QuoteEngine:
    """The conformal engine recalibrated the naive way: on the latest orders fulfilled before
    the cut-off (as many as our calibration slice holds), orders still open dropped."""
    done_index = np.flatnonzero(fold.done)
    latest = done_index[-min(fold.cal_index.size, done_index.size) :]
    naive_fold = dataclasses.replace(
        fold,
        cal_index=latest,
        cal_expected_hours=fold.regressor.compiled().predict_hours(fold.matrix[latest]),
    )
    naive, _ = calibrate(
        spec, naive_fold, calendar, spec.policy_config("conformal", engine.target_late_rate)
    )
    return naive.engine


def _fold_model_info(fold: FoldModel) -> FoldModelInfo:
    cal_done = fold.cal_index[fold.done[fold.cal_index]]
    residual = fold.hours[cal_done] - fold.regressor.compiled().predict_hours(fold.matrix[cal_done])
    return FoldModelInfo(
        train_median_hours=median(fold.hours[fold.train_mask]),
        calibration_median_hours=median(fold.hours[cal_done]),
        calibration_median_residual_hours=median(residual),
    )
