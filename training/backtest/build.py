"""The report builder: a walk forward scored into the typed `BacktestReport`, and its summary.

`run_backtest` plans the folds, walks forward and scores every rule into the report;
`build_report` scores a walk already made; `backtest_summary` keeps the few figures a bundle's
manifest records. Each section of the report is built from scored quotes here, the scorecard in
`scorecard`, the trade-off curve and comparisons in `tradeoff`, the call list in `at_risk`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from models.calendar import BusinessCalendar
from models.policies import POLICY_NAMES
from models.units import Unit, iso_utc
from training.backtest.at_risk import call_lists
from training.backtest.folds import SECONDS_PER_DAY, FoldPlan, plan_folds
from training.backtest.replay import adaptive_bucket_seconds
from training.backtest.report_data import (
    COMPANY,
    BacktestReport,
    BacktestSummary,
    Censoring,
    CompanySummary,
    DatasetInfo,
    Drift,
    Earliness,
    FoldDiagnostics,
    FoldFigures,
    ModelFigures,
    ModelFold,
    PolicyFigures,
    ProtocolInfo,
    SpecInfo,
)
from training.backtest.scorecard import build_scorecard, compact_scorecard, runs_at_targets
from training.backtest.scoring import Scored, figures, mae_hours, median, pinball_loss, score
from training.backtest.tradeoff import comparisons, family_point, flat_points
from training.backtest.walk import Progress, WalkForward, walk_forward
from training.data import OrderTable
from training.spec import Spec

# Earliness histogram: at most this many bins, tails folded into the end bins.
EARLINESS_BINS = 40
SUMMARY_AT_RISK_THRESHOLD = 0.5  # the one a bundle's manifest records
SCORING_RULE = (
    "kept iff fulfilled at or before the deadline; an order open at the "
    "extraction is late if its deadline had passed, else unknown and excluded"
)


def run_backtest(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    policies: list[str] | None,
    folds: int | None,
    progress: Progress | None = None,
    *,
    target: float | None = None,
    tradeoff: bool | Sequence[str] = True,
    plan: FoldPlan | None = None,
    workers: int | None = None,
) -> BacktestReport:
    """Run the walk-forward back-test and answer with its report (`BacktestReport`).

    `policies` defaults to all five, `folds` to the spec's, `target` to the spec's target late
    rate; `tradeoff` sweeps each policy family (True: those run; or a list of families) over
    `TRADEOFF_TARGETS` (the flat rule is always swept: it needs no model). `plan` fixes the
    cut-offs (else `plan_folds`); `workers` processes train the refits ahead (`walk_forward`).
    Raises `SpecError` for an unknown policy before any work."""
    names = list(POLICY_NAMES) if not policies else list(dict.fromkeys(policies))
    for name in names:
        spec.policy_config(name)
    fold_plan = plan or plan_folds(spec, table, calendar, folds)
    if isinstance(tradeoff, bool):
        families = names if tradeoff else []
    else:
        families = list(dict.fromkeys(tradeoff))
        for name in families:
            spec.policy_config(name)
    run = walk_forward(
        spec,
        table,
        calendar,
        names,
        fold_plan,
        target=target,
        tradeoff_families=families,
        progress=progress,
        workers=workers,
    )
    return build_report(spec, table, calendar, run)


def backtest_summary(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, policy: str | None, folds: int
) -> BacktestSummary:
    """The compact back-test record a bundle's manifest keeps (one policy, no trade-off sweep)."""
    name = policy or spec.quote.policy
    report = run_backtest(spec, table, calendar, [name], folds, tradeoff=False)
    return summary_of(spec, report, name)


def summary_of(spec: Spec, report: BacktestReport, name: str) -> BacktestSummary:
    """The compact record of policy `name` in a back-test `report`."""
    own = report.policies[name].overall
    comparison = report.comparison.policies[name]
    company = report.company_promise
    watched = next(
        (e for e in report.at_risk.get(name, ()) if e.threshold == SUMMARY_AT_RISK_THRESHOLD),
        None,
    )
    return BacktestSummary(
        policy=name,
        unit=spec.quote.unit,
        target_late_rate=report.target_late_rate,
        late_rate=own.late_rate,
        folds=report.protocol.folds,
        n_quotes=own.n_quotes,
        n_unknown=own.n_unknown,
        mean_promise_hours=own.mean_promise_hours,
        median_promise_hours=own.median_promise_hours,
        mean_promise_units=own.mean_promise_units,
        mae_hours=report.model.mae_hours,
        pinball_loss_hours=report.model.pinball_loss_hours.get(name),
        flat_mean_promise_hours=comparison.flat_mean_promise_hours,
        flat_mean_promise_units=comparison.flat_mean_promise_units,
        first_cutoff=report.protocol.cutoffs[0],
        last_end=report.protocol.ends[-1],
        company=(
            None
            if company is None
            else CompanySummary(company.overall.late_rate, company.overall.mean_promise_hours)
        ),
        at_risk_threshold=SUMMARY_AT_RISK_THRESHOLD,
        at_risk_recall=None if watched is None else watched.recall,
        at_risk_false_alarm_share=None if watched is None else watched.false_alarm_share,
        at_risk_median_warning_hours=None if watched is None else watched.median_warning_hours,
        scorecard=compact_scorecard(report.scorecard, name),
    )


def build_report(
    spec: Spec, table: OrderTable, calendar: BusinessCalendar, run: WalkForward
) -> BacktestReport:
    """Score a walk-forward run into the report (see `run_backtest`)."""
    plan = run.plan
    as_of = plan.as_of_s
    scored = {
        name: score(spec, table, calendar, as_of, records) for name, records in run.policies.items()
    }
    company = None if run.company is None else score(spec, table, calendar, as_of, run.company)
    reference = score(spec, table, calendar, as_of, run.reference)
    naive = score(spec, table, calendar, as_of, run.naive)
    swept = {
        key: score(spec, table, calendar, as_of, records) for key, records in run.tradeoff.items()
    }
    tradeoff = [family_point(family, target, s) for (family, target), s in swept.items()]
    tradeoff += flat_points(spec, table, calendar, plan, reference)
    unit = spec.quote.unit
    return BacktestReport(
        scorecard=build_scorecard(
            unit,
            run.target_late_rate,
            runs_at_targets(scored, swept, run.target_late_rate),
            company,
            tradeoff,
            [fit.fallbacks for fit in run.fits],
            spec.quote.segments,
        ),
        spec=SpecInfo(
            source=str(spec.source),
            policy=spec.quote.policy,
            segments=tuple(spec.quote.segments),
            relative=spec.quote.relative,
        ),
        dataset=_dataset_info(table, reference),
        protocol=_protocol_info(spec, plan),
        target_late_rate=run.target_late_rate,
        unit=unit,
        policies={name: _policy_figures(s, plan) for name, s in scored.items()},
        company_promise=None if company is None else _policy_figures(company, plan),
        model=_model_figures(scored, reference, plan, 1.0 - run.target_late_rate),
        tradeoff=tuple(tradeoff),
        comparison=comparisons(scored, company, tradeoff),
        folds=_fold_diagnostics(run, scored, reference, naive),
        earliness=_earliness(unit, scored, company),
        at_risk=call_lists(spec, table, calendar, run),
    )


def _policy_figures(scored: Scored, plan: FoldPlan) -> PolicyFigures:
    segments = sorted({str(s) for s in scored.segment.tolist() if s != ""})
    return PolicyFigures(
        overall=figures(scored),
        by_segment={seg: figures(scored, scored.segment == seg) for seg in segments},
        by_fold=tuple(
            FoldFigures(k, iso_utc(c), iso_utc(e), figures(scored, scored.fold == k))
            for k, (c, e) in enumerate(zip(plan.cutoffs_s, plan.ends_s, strict=True))
        ),
    )


def _model_figures(
    scored: Mapping[str, Scored], reference: Scored, plan: FoldPlan, quantile: float
) -> ModelFigures:
    return ModelFigures(
        quantile=quantile,
        mae_hours=mae_hours(reference),
        median_absolute_error_hours=median(
            np.abs(reference.actual_hours - reference.expected_hours)
        ),
        pinball_loss_hours={
            name: pinball_loss(s.actual_hours, s.promised_hours, quantile)
            for name, s in scored.items()
        },
        n_scored=int(np.isfinite(reference.actual_hours).sum()),
        by_fold=tuple(
            ModelFold(k, iso_utc(c), mae_hours(reference, reference.fold == k))
            for k, c in enumerate(plan.cutoffs_s)
        ),
    )


def _fold_diagnostics(
    run: WalkForward, scored: Mapping[str, Scored], reference: Scored, naive: Scored
) -> tuple[FoldDiagnostics, ...]:
    plan = run.plan
    return tuple(_fold_diagnostic(run, k, scored, reference, naive) for k in range(plan.folds))


def _fold_diagnostic(
    run: WalkForward, k: int, scored: Mapping[str, Scored], reference: Scored, naive: Scored
) -> FoldDiagnostics:
    fit = run.fits[k]
    model = run.fold_models[k]
    in_fold = reference.fold == k
    ours = figures(reference, in_fold)
    theirs = figures(naive, naive.fold == k)
    fold_median = median(reference.actual_hours[in_fold])
    train_median = model.train_median_hours
    late_rates = {name: figures(s, s.fold == k).late_rate for name, s in scored.items()}
    return FoldDiagnostics(
        fold=k,
        cutoff=iso_utc(run.plan.cutoffs_s[k]),
        end=iso_utc(run.plan.ends_s[k]),
        n_orders=int(in_fold.sum()),
        n_unknown=int((in_fold & ~reference.known).sum()),
        fit=fit.to_info(),
        censoring=Censoring(
            n_open_at_cutoff=fit.n_open_at_cutoff,
            n_censored_calibration=fit.n_censored_calibration,
            settle_hours=fit.settle_hours,
            late_rate=ours.late_rate,
            naive_late_rate=theirs.late_rate,
            naive_mean_promise_hours=theirs.mean_promise_hours,
            mean_promise_hours=ours.mean_promise_hours,
        ),
        drift=Drift(
            train_median_hours=train_median,
            calibration_median_hours=model.calibration_median_hours,
            fold_median_hours=fold_median,
            median_shift=(
                None
                if fold_median is None or not train_median
                else fold_median / train_median - 1.0
            ),
            calibration_median_residual_hours=model.calibration_median_residual_hours,
            fold_median_residual_hours=median(
                reference.actual_hours[in_fold] - reference.expected_hours[in_fold]
            ),
            conformal_late_rate=ours.late_rate,
            adaptive_late_rate=late_rates.get("adaptive"),
        ),
        late_rates=late_rates,
    )


def _earliness(unit: Unit, scored: Mapping[str, Scored], company: Scored | None) -> Earliness:
    """Histograms of units early (negative: late) of fulfilled orders, on shared bins."""
    sources = dict(scored)
    if company is not None:
        sources[COMPANY] = company
    values = {name: s.early_units[np.isfinite(s.early_units)] for name, s in sources.items()}
    pooled = np.concatenate([v for v in values.values()] or [np.empty(0)])
    if pooled.size == 0:
        return Earliness(unit=unit, edges=(), counts={})
    low, high = (float(q) for q in np.quantile(pooled, [0.005, 0.995]))
    if unit == "day":
        # Whole days, centred on the integers; wide spreads get wider (still whole-day) bins.
        width = max(1, math.ceil((math.ceil(high) - math.floor(low) + 1) / EARLINESS_BINS))
        edges = np.arange(math.floor(low) - 0.5, math.ceil(high) + 0.5 + width, float(width))
    else:
        edges = np.linspace(min(low, 0.0), max(high, 1.0), EARLINESS_BINS + 1)
    counts = {
        name: tuple(int(c) for c in np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0])
        for name, v in values.items()
    }
    return Earliness(unit=unit, edges=tuple(float(e) for e in edges), counts=counts)


def _dataset_info(table: OrderTable, reference: Scored) -> DatasetInfo:
    first, last = float(table.ordered_at_s.min()), float(table.ordered_at_s.max())
    return DatasetInfo(
        path=str(table.source),
        rows_read=table.rows_read,
        rows_used=table.size,
        skipped=dict(table.skipped),
        open_at_extraction=int(table.is_open.sum()),
        first_order=iso_utc(first),
        last_order=iso_utc(last),
        as_of=iso_utc(table.as_of_s),
        span_days=(last - first) / SECONDS_PER_DAY,
        orders_quoted=int(reference.rows.size),
    )


def _protocol_info(spec: Spec, plan: FoldPlan) -> ProtocolInfo:
    refit_every_days, recalibrate_every_days = spec.refit_days
    return ProtocolInfo(
        folds=plan.folds,
        cutoffs=tuple(iso_utc(c) for c in plan.cutoffs_s),
        ends=tuple(iso_utc(e) for e in plan.ends_s),
        horizon_hours=plan.horizon_hours,
        settle_hours=plan.settle_hours,
        as_of=iso_utc(plan.as_of_s),
        adaptive_bucket_hours=adaptive_bucket_seconds(spec.quote.unit) / 3600.0,
        control_gain=spec.quote.control_gain,
        nowcast=spec.quote.nowcast,
        refit_every_days=refit_every_days,
        recalibrate_every_days=recalibrate_every_days,
        calibration_share=spec.model.calibration_share,
        settle_quantile=spec.model.settle_quantile,
        scoring=SCORING_RULE,
    )
