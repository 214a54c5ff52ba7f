"""Fit a quote engine from what was known at a cut-off: the protocol `train` and `backtest` share.

At a cut-off C only orders placed before C are known, and only those fulfilled by C have an
outcome. Right-censoring makes "the latest fulfilled orders" the fast ones, so:

1. the settle time S is the `settle_quantile` of the durations known at C, by Kaplan-Meier with
   the orders still open at C censored at their age (`settle_quantile_hours`: the slow orders
   are the ones still open, so the quantile of the fulfilled ones alone is too short): orders
   placed before C - S are (nearly all) finished, later ones are mostly still open for the slow
   ones;
2. the model trains on fulfilled orders placed before the calibration slice;
3. the calibration slice is the latest `calibration_share` of the settled orders (later in time
   than the training slice, as split-conformal needs), and any of them still open at C stay in
   as censored scores (see `models.policies`), never silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.buffers import SegmentBuffers
from models.calendar import BusinessCalendar
from models.errors import SpecError
from models.features import FeatureSchema, fit_schema
from models.policies import CalibrationSlice, score_distribution
from models.quoting import QuoteEngine, segment_labels
from models.regressor import DurationRegressor, QuantileRegressor
from models.risk import RiskModel, fit_risk_model
from models.trained import TrainedModel
from models.units import iso_utc
from training.data import OrderTable
from training.json_form import JsonRecord
from training.spec import PolicyChoice, Spec

FloatArray = NDArray[np.float64]

MIN_TRAINING_ORDERS = 50
MIN_CALIBRATION_ORDERS = 30
CALENDAR_YEARS_AHEAD = 10
# An estimated CDF within this of the level reaches it (as `ScoreDistribution.quantile` reads it).
LEVEL_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class FitInfo(JsonRecord):
    """The record of one fit that a manifest and a back-test report keep (instants as text)."""

    cutoff: str
    settle_hours: float  # rounded to 3 decimals
    training_window: tuple[str, str]  # first and last order trained on
    calibration_window: tuple[str, str]
    n_train: int
    n_calibration: int
    n_censored_calibration: int  # calibration orders still open at the cut-off
    n_open_at_cutoff: int
    segments: tuple[dict[str, object], ...]  # the policy's segment table
    segment_fallbacks: dict[str, str]  # segment -> the key whose buffer served it


@dataclass(frozen=True)
class FitReport:
    """What one fit used: windows (epoch seconds), counts and the calibrated segments."""

    cutoff_s: float
    settle_hours: float
    train_window_s: tuple[float, float]
    calibration_window_s: tuple[float, float]
    n_train: int
    n_calibration: int
    n_censored_calibration: int
    n_open_at_cutoff: int
    segments: list[dict[str, object]] = field(default_factory=list)
    fallbacks: Mapping[str, str] = field(default_factory=dict)

    def to_info(self) -> FitInfo:
        """The manifest's record of this fit."""
        first_train, last_train = self.train_window_s
        first_cal, last_cal = self.calibration_window_s
        return FitInfo(
            cutoff=iso_utc(self.cutoff_s),
            settle_hours=round(self.settle_hours, 3),
            training_window=(iso_utc(first_train), iso_utc(last_train)),
            calibration_window=(iso_utc(first_cal), iso_utc(last_cal)),
            n_train=self.n_train,
            n_calibration=self.n_calibration,
            n_censored_calibration=self.n_censored_calibration,
            n_open_at_cutoff=self.n_open_at_cutoff,
            segments=tuple(self.segments),
            segment_fallbacks=dict(self.fallbacks),
        )


def settle_quantile_hours(
    durations_hours: FloatArray, censored: NDArray[np.bool_], quantile: float
) -> float:
    """The settle time in hours: the `quantile` of the durations, by Kaplan-Meier.

    `durations_hours[i]` is order i's duration, or where `censored[i]` (still open) its age,
    a duration only known to be longer. With nothing censored this is the plain quantile
    `np.quantile(durations_hours, quantile, method="inverted_cdf")`, a duration seen. When
    censoring is so heavy that the estimated CDF never reaches `quantile`, the answer is the
    longest duration or age seen: the estimate cannot reach beyond what was observed, and the
    true quantile is later still, so it is the least we know we must wait. 0.0 when empty.
    """
    if durations_hours.size == 0:
        return 0.0
    # One Kaplan-Meier estimate in the project: the buffer policies' score distribution.
    distribution = score_distribution(durations_hours, censored)
    if distribution.cdf.size == 0 or distribution.cdf[-1] < quantile - LEVEL_TOLERANCE:
        return float(durations_hours.max())
    return distribution.quantile(quantile)


def build_calendar(spec: Spec, table: OrderTable, today: dt.date) -> BusinessCalendar:
    """The spec's business calendar, with tables covering the data and the years ahead."""
    first = dt.datetime.fromtimestamp(float(table.ordered_at_s.min()), tz=dt.UTC).year - 1
    last = max(dt.datetime.fromtimestamp(table.as_of_s, tz=dt.UTC).year, today.year)
    return BusinessCalendar(
        spec.calendar_spec(), first_year=first, last_year=last + CALENDAR_YEARS_AHEAD
    )


@dataclass(frozen=True)
class FoldModel:
    """The model fitted at a cut-off, with what calibrating any policy on it needs."""

    cutoff_s: float
    known: OrderTable
    schema: FeatureSchema
    regressor: DurationRegressor
    matrix: FloatArray  # every known order's features
    hours: FloatArray  # duration from the clock start where done (>= 0), NaN-free
    done: NDArray[np.bool_]  # fulfilled by the cut-off
    start_s: FloatArray
    train_mask: NDArray[np.bool_]
    cal_index: NDArray[np.intp]
    settle_hours: float
    cal_expected_hours: FloatArray  # the model's expectation on the calibration slice


def fit_model(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    cutoff_s: float,
    model_from: FoldModel | None = None,
) -> FoldModel:
    """Split what was known at `cutoff_s` in time and train the duration model.

    With `model_from` (the fit at an earlier cut-off) nothing is trained: the split and
    calibration slice are those of `cutoff_s` and the given model is kept, which is how a
    service recalibrates its buffer between two refits. The feature schema is then the model's
    own (an earlier cut-off's), so categories first seen since are encoded as unknown, and the
    clock starts and matrix rows `model_from` holds are kept (`_extended`): the table is sorted
    by order time, so what is known at any cut-off is a first stretch of it, and only the
    orders placed since are computed."""
    known = table.subset(table.ordered_at_s < cutoff_s)
    if known.size == 0:
        raise SpecError(
            f"{table.source}: no orders were placed before the cut-off {iso_utc(cutoff_s)}"
        )
    done = ~np.isnan(known.fulfilled_at_s) & (known.fulfilled_at_s <= cutoff_s)
    start_s = _extended(
        None if model_from is None else model_from.start_s,
        known.ordered_at_s,
        calendar.clock_starts,
    )
    hours = np.where(done, np.maximum((known.fulfilled_at_s - start_s) / 3600.0, 0.0), 0.0)
    needed = MIN_TRAINING_ORDERS + MIN_CALIBRATION_ORDERS
    if int(done.sum()) < needed:
        raise SpecError(
            f"{table.source}: only {int(done.sum())} orders were fulfilled before "
            f"{iso_utc(cutoff_s)}; at least {needed} are needed to train and calibrate"
        )
    # Orders open at the cut-off (the slow ones) count as censored at their age then.
    age_hours = np.maximum((cutoff_s - start_s) / 3600.0, 0.0)
    settle_hours = settle_quantile_hours(
        np.where(done, hours, age_hours), ~done, spec.model.settle_quantile
    )
    settled = known.ordered_at_s < cutoff_s - settle_hours * 3600.0
    if int((settled & done).sum()) < needed:
        settled = np.ones(known.size, dtype=bool)  # too little history to wait for stragglers
    settled_index = np.flatnonzero(settled)
    n_cal = max(MIN_CALIBRATION_ORDERS, round(settled_index.size * spec.model.calibration_share))
    cal_index = settled_index[-n_cal:]
    train_mask = np.zeros(known.size, dtype=bool)
    train_mask[settled_index[:-n_cal]] = True
    train_mask &= done
    if int(train_mask.sum()) < MIN_TRAINING_ORDERS:
        raise SpecError(
            f"{table.source}: too few fulfilled orders to train before "
            f"{iso_utc(cutoff_s)} ({int(train_mask.sum())})"
        )
    if model_from is not None:
        schema, regressor = model_from.schema, model_from.regressor
        matrix = _extended(
            model_from.matrix,
            np.arange(known.size),
            lambda rows: schema.encode(
                {name: column[rows] for name, column in known.columns.items()},
                calendar.local_parts(known.ordered_at_s[rows]),
            ),
        )
    else:
        schema = fit_schema(
            {n: known.columns[n][settled_index] for n in spec.feature_names},
            spec.features.categorical,
            spec.features.numeric,
        )
        matrix = schema.encode(known.columns, calendar.local_parts(known.ordered_at_s))
        regressor = _train_regressor(spec, table, schema, matrix, hours, train_mask, cutoff_s)
    return FoldModel(
        cutoff_s=cutoff_s,
        known=known,
        schema=schema,
        regressor=regressor,
        matrix=matrix,
        hours=hours,
        done=done,
        start_s=start_s,
        train_mask=train_mask,
        cal_index=cal_index,
        settle_hours=settle_hours,
        # Through the compiled trees: the booster's numbers bit for bit, ~10x faster a row.
        cal_expected_hours=regressor.compiled().predict_hours(matrix[cal_index]),
    )


def _extended(
    held: NDArray[Any] | None, values: NDArray[Any], compute: Callable[[NDArray[Any]], NDArray[Any]]
) -> NDArray[Any]:
    """`compute(values)`, row-wise, reusing the first rows of `held` (computed by `compute` for
    a first stretch of the same values, shorter or longer): only the rest is computed."""
    reused = 0 if held is None else min(held.shape[0], values.shape[0])
    if held is None or reused == 0:
        return compute(values)
    if reused == values.shape[0]:
        return held[:reused]
    return np.concatenate([held[:reused], compute(values[reused:])])


def _train_regressor(
    spec: Spec,
    table: OrderTable,
    schema: FeatureSchema,
    matrix: FloatArray,
    hours: FloatArray,
    train_mask: NDArray[np.bool_],
    cutoff_s: float,
) -> DurationRegressor:
    rows = matrix[train_mask]  # one copy, checked and trained on
    empty = np.flatnonzero(np.isnan(rows).all(axis=0))
    blank = [schema.column_names[j] for j in empty.tolist()]
    if blank:
        raise SpecError(
            f"{table.source}: {', '.join(blank)} has no value in any of the "
            f"{int(train_mask.sum())} orders trained on before {iso_utc(cutoff_s)}; "
            "fill it or drop it from [features]"
        )
    return DurationRegressor(**_booster_params(spec)).fit(
        rows, hours[train_mask], schema.categorical_mask
    )


def calibrate(
    spec: Spec,
    fold: FoldModel,
    calendar: BusinessCalendar,
    choice: PolicyChoice | None = None,
    quantile_regressor: QuantileRegressor | None = None,
    risk: RiskModel | None = None,
) -> tuple[TrainedModel, FitReport]:
    """Calibrate a buffer policy (`choice`, the spec's by default) on the fold's calibration
    slice: the fitted estimators and the ready-to-quote engine compiled from them.

    The quantile policy fits its own quantile model at 1 - target, unless one is given (the
    back-test refits it once per fold rather than at every refit: one model per swept level).
    `risk` is the risk distributions of this fold's calibration slice when they are fitted
    already: they depend on the slice and the spec's segments, never on the policy, so the
    back-test fits them once for all the policies it calibrates on a fold."""
    config = choice or spec.policy_config()
    known, cal_index = fold.known, fold.cal_index
    if config.name != "quantile":
        quantile_regressor = None
    elif quantile_regressor is None:
        quantile_regressor = QuantileRegressor(
            quantile=1.0 - config.target_late_rate, **_booster_params(spec)
        ).fit(
            fold.matrix[fold.train_mask], fold.hours[fold.train_mask], fold.schema.categorical_mask
        )
    cal_done = fold.done[cal_index]
    # An open order would meet its promise only if its deadline were after the cut-off at least.
    reached_s = np.where(cal_done, known.fulfilled_at_s[cal_index], fold.cutoff_s)
    needed_hours = (
        calendar.earliest_raw_meeting(reached_s, spec.quote.unit) - fold.start_s[cal_index]
    ) / 3600.0
    labels = segment_labels(
        {n: known.columns[n][cal_index] for n in config.segments}, config.segments, cal_index.size
    )
    # Plain residuals for the adaptive policy and the risk of open orders: how long each took
    # (or had been open at the cut-off, censored) against the model's expectation.
    reached_hours = (reached_s - fold.start_s[cal_index]) / 3600.0
    calibration = CalibrationSlice(
        expected_hours=fold.cal_expected_hours,
        needed_hours=needed_hours,
        censored=~cal_done,
        segment_labels=labels,
        reached_hours=reached_hours,
        placed_s=known.ordered_at_s[cal_index],
        cutoff_s=fold.cutoff_s,
    )
    buffer_policy = config.policy().fit(calibration)
    if risk is None:
        risk = fit_risk_model(
            fold.cal_expected_hours,
            reached_hours,
            ~cal_done,
            labels,
            len(config.segments),
            config.min_segment_size,
        )
    rule = buffer_policy.rule
    fallbacks = rule.fallbacks(labels) if isinstance(rule, SegmentBuffers) else {}
    engine = QuoteEngine(
        schema=fold.schema,
        expected_trees=fold.regressor.compiled(),
        quantile_trees=None if quantile_regressor is None else quantile_regressor.compiled(),
        buffer_rule=rule,
        policy_name=config.name,
        calendar=calendar,
        unit=spec.quote.unit,
        target_late_rate=config.target_late_rate,
        segments=config.segments,
        max_promise_units=spec.quote.max_promise,
        risk=risk,
    )
    train_times = known.ordered_at_s[fold.train_mask]
    cal_times = known.ordered_at_s[cal_index]
    report = FitReport(
        cutoff_s=fold.cutoff_s,
        settle_hours=fold.settle_hours,
        train_window_s=(float(train_times.min()), float(train_times.max())),
        calibration_window_s=(float(cal_times.min()), float(cal_times.max())),
        n_train=int(fold.train_mask.sum()),
        n_calibration=int(cal_index.size),
        n_censored_calibration=int((~cal_done).sum()),
        n_open_at_cutoff=int((~fold.done).sum()),
        segments=rule.segment_table(),
        fallbacks=fallbacks,
    )
    return TrainedModel(engine, fold.regressor, quantile_regressor, buffer_policy), report


def fit_engine(
    spec: Spec,
    table: OrderTable,
    calendar: BusinessCalendar,
    cutoff_s: float,
    policy: str | None = None,
    target: float | None = None,
) -> tuple[TrainedModel, FitReport]:
    """Train and calibrate on what was known at `cutoff_s`; nothing later is looked at."""
    fold = fit_model(spec, table, calendar, cutoff_s)
    return calibrate(spec, fold, calendar, spec.policy_config(policy, target))


def _booster_params(spec: Spec) -> dict[str, Any]:
    model = spec.model
    return {
        "max_iter": model.max_iter,
        "learning_rate": model.learning_rate,
        "max_leaf_nodes": model.max_leaf_nodes,
        "min_samples_leaf": model.min_samples_leaf,
        "random_state": model.random_state,
    }
