"""The back-test report as frozen dataclasses: every figure `run_backtest` answers with.

`BacktestReport` is the whole report (`to_json()` gives what `promise backtest --json` writes,
keys in field order); `BacktestSummary` is the compact record a bundle's manifest keeps. Each
field says what it holds. Durations are hours unless a name says units (the spec's unit: days,
hours or minutes); instants are ISO 8601 text in UTC ("...Z"); rates and shares are in [0, 1];
a figure with nothing to compute it from is `None` (`null` in the JSON).

```
BacktestReport
├── scorecard        Scorecard: targets held, the promise at equal lateness (training.backtest
│                    .scorecard)
├── spec, dataset, protocol, target_late_rate, unit
├── policies         name -> PolicyFigures (overall, by_segment, by_fold)
├── company_promise  PolicyFigures of the business's own promise, or None
├── model            ModelFigures: MAE and pinball loss
├── tradeoff         TradeoffPoint per policy family and target, and per flat duration
├── comparison       Comparisons: promise lengths at equal late rates
├── folds            FoldDiagnostics per fold: windows, right-censoring and drift
├── earliness        Earliness: histograms of units early (negative: late)
└── at_risk          name -> AtRiskEntry per threshold: the call list of orders at risk
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.units import Unit
from training.json_form import INLINE, OMIT_IF_NONE, JsonRecord
from training.train import FitInfo

# The names the report gives to the two rules without a model: the business's own promise (in
# `at_risk`, `comparison` and `earliness`) and one flat duration for everyone (a `tradeoff`
# family).
COMPANY = "company_promise"
FLAT = "flat"


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True, slots=True)
class Figures:
    """Scored quotes summed up. Shares are of the known outcomes (fulfilled by the extraction,
    or still open with the deadline passed); promise lengths are from the order to the
    deadline."""

    late_rate: float | None  # share of promises broken: the headline
    n_quotes: int  # quotes with a known outcome
    n_late: int
    n_unknown: int  # quotes left out: still open, the deadline after the extraction
    mean_promise_hours: float | None
    median_promise_hours: float | None
    mean_promise_units: float | None
    median_promise_units: float | None
    mean_early_hours: float | None  # over kept promises: deadline - fulfilment
    median_early_hours: float | None
    mean_early_units: float | None
    # Over broken promises; an order still open counts the lateness reached by the extraction.
    mean_late_hours: float | None
    impressed: float | None  # share ready at least one unit before the promised one
    satisfied: float | None  # share ready on the promised unit, in time
    disappointed: float | None  # share late (the late rate)


@dataclass(frozen=True, slots=True)
class FoldFigures:
    """One fold's figures: the orders placed in [cutoff, end)."""

    fold: int
    cutoff: str
    end: str
    figures: Figures = field(metadata=INLINE)


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy's (or the business's) figures over every fold, per segment and per fold."""

    overall: Figures = field(metadata=INLINE)
    by_segment: dict[str, Figures]  # the order's own segment key -> its figures
    by_fold: tuple[FoldFigures, ...]  # in time order


# --------------------------------------------------------------------------- trade-off


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeoffPoint:
    """One point of a trade-off curve: a policy family calibrated at a target late rate, or the
    flat rule promising everyone one duration."""

    policy: str  # the family, or `FLAT`
    confidence: float | None = field(
        default=None, metadata=OMIT_IF_NONE
    )  # a family's 1 - target late rate, else None
    flat_hours: float | None = field(
        default=None, metadata=OMIT_IF_NONE
    )  # the flat rule's one duration, else None
    target_late_rate: float | None  # a family's target; None for the flat rule
    late_rate: float | None
    mean_promise_hours: float | None
    median_promise_hours: float | None
    mean_promise_units: float | None
    n_quotes: int


@dataclass(frozen=True, slots=True)
class PolicyComparison:
    """A policy's mean promise against the flat rule's and the `fixed` family's at its own late
    rate, read off their trade-off curves (None: off the curve)."""

    late_rate: float | None
    mean_promise_hours: float | None
    flat_mean_promise_hours: float | None
    saving_vs_flat_hours: float | None  # flat - ours
    fixed_mean_promise_hours: float | None
    mean_promise_units: float | None
    flat_mean_promise_units: float | None
    saving_vs_flat_units: float | None
    fixed_mean_promise_units: float | None


@dataclass(frozen=True, slots=True)
class CompanyComparison:
    """The business's promise, and the mean promise each family needs at its late rate."""

    late_rate: float | None
    mean_promise_hours: float | None
    flat_mean_promise_hours: float | None
    at_company_late_rate_hours: dict[str, float | None]  # family -> mean promise
    mean_promise_units: float | None
    flat_mean_promise_units: float | None
    at_company_late_rate_units: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Comparisons:
    """Promise lengths at equal late rates: one entry per policy, and one for the business's
    promise under the key `COMPANY` (absent without one)."""

    policies: dict[str, PolicyComparison] = field(metadata=INLINE)
    company_promise: CompanyComparison | None = field(
        default=None, metadata=OMIT_IF_NONE
    )  # the business's promise


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class ModelFold:
    fold: int
    cutoff: str
    mae_hours: float | None


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """The duration model's error on the quoted orders, for the data scientist."""

    quantile: float  # 1 - target late rate: the level the pinball loss is taken at
    mae_hours: float | None  # mean absolute error of the expectation
    median_absolute_error_hours: float | None
    pinball_loss_hours: dict[str, float | None]  # policy -> loss of its promised duration
    n_scored: int  # fulfilled orders the errors are over
    by_fold: tuple[ModelFold, ...]


# --------------------------------------------------------------------------- folds


@dataclass(frozen=True, slots=True)
class Censoring:
    """Right-censoring at a fold's cut-off: our calibration against the naive one (the latest
    orders fulfilled before the cut-off, the open ones dropped)."""

    n_open_at_cutoff: int
    n_censored_calibration: int  # calibration orders still open, kept in as censored
    settle_hours: float
    late_rate: float | None  # conformal as the engine calibrates it
    naive_late_rate: float | None
    naive_mean_promise_hours: float | None
    mean_promise_hours: float | None


@dataclass(frozen=True, slots=True)
class Drift:
    """How a fold's orders differ from what its model was fitted and calibrated on."""

    train_median_hours: float | None
    calibration_median_hours: float | None
    fold_median_hours: float | None
    median_shift: float | None  # fold median / training median - 1
    calibration_median_residual_hours: float | None
    fold_median_residual_hours: float | None
    conformal_late_rate: float | None
    adaptive_late_rate: float | None  # None when adaptive was not run


@dataclass(frozen=True, slots=True)
class FoldDiagnostics:
    """One fold: its window, the fit at its cut-off, right-censoring and drift."""

    fold: int
    cutoff: str
    end: str
    n_orders: int
    n_unknown: int
    fit: FitInfo
    censoring: Censoring
    drift: Drift
    late_rates: dict[str, float | None]  # policy -> its late rate in the fold


@dataclass(frozen=True, slots=True)
class Earliness:
    """Histograms of units early (negative: late) of fulfilled orders, on shared bins."""

    unit: Unit
    edges: tuple[float, ...]  # bin edges in units; the end bins hold the tails
    counts: dict[str, tuple[int, ...]]  # policy (or `COMPANY`) -> orders per bin


@dataclass(frozen=True, slots=True)
class AtRiskEntry:
    """The call list of orders at risk replayed at one threshold (`call_list(...).counts()`)."""

    threshold: float
    recall: float | None  # share of late orders flagged in time
    false_alarm_share: float | None  # share of flagged orders that came in time
    median_warning_hours: float | None  # over flagged late orders: flag to deadline
    flagged: int
    late: int
    flagged_late: int
    revised_late_rate: float | None  # share of honest revisions at the flag broken too
    n_quotes: int  # orders watched: quoted, with a known outcome
    n_revised: int  # flagged orders whose revised promise has a known outcome


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class SpecInfo:
    source: str
    policy: str  # the spec's policy: the one a report's headline is about
    segments: tuple[str, ...]
    relative: bool


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    path: str
    rows_read: int
    rows_used: int
    skipped: dict[str, int]  # reason -> rows skipped
    open_at_extraction: int
    first_order: str
    last_order: str
    as_of: str  # the extraction moment: outcomes after it are unknown
    span_days: float
    orders_quoted: int


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    """How the walk was run (see `training.backtest`)."""

    folds: int
    cutoffs: tuple[str, ...]
    ends: tuple[str, ...]
    horizon_hours: float
    settle_hours: float
    as_of: str
    adaptive_bucket_hours: float
    control_gain: float
    nowcast: bool
    refit_every_days: float
    recalibrate_every_days: float
    calibration_share: float
    settle_quantile: float
    scoring: str  # the scoring rule in words


# --------------------------------------------------------------------------- the scorecard


@dataclass(frozen=True, slots=True)
class Band:
    target_late_rate: float
    tolerance: float  # how far either side of the target a late rate may fall


@dataclass(frozen=True, slots=True)
class LateCounts:
    late_rate: float | None
    n_quotes: int
    n_late: int
    within_band: bool | None  # None without a known outcome


@dataclass(frozen=True, slots=True)
class FoldLateCounts:
    fold: int
    counts: LateCounts = field(metadata=INLINE)


@dataclass(frozen=True, slots=True)
class TargetEntry:
    """One policy at one scorecard target: late rate and band verdict overall, per fold and per
    segment, and its mean promise against the flat rule's at the same late rate."""

    target_late_rate: float
    tolerance: float
    late_rate: float | None
    deviation: float | None  # late rate - target
    within_band: bool | None
    n_quotes: int
    n_late: int
    mean_promise_hours: float | None
    flat_mean_promise_hours: float | None
    mean_promise_units: float | None
    flat_mean_promise_units: float | None
    ratio_to_flat: float | None  # below 1: the engine promises shorter
    by_fold: tuple[FoldLateCounts, ...]
    by_segment: dict[str, LateCounts]


@dataclass(frozen=True, slots=True)
class FamilyAtRate:
    """A policy family (or the flat rule) at the business's late rate, off its curve."""

    mean_promise_hours: float | None
    mean_promise_units: float | None
    ratio: float | None  # over the business's mean promise


@dataclass(frozen=True, slots=True)
class CompanyCard:
    late_rate: float | None
    n_quotes: int
    mean_promise_hours: float | None
    mean_promise_units: float | None
    at_company_late_rate: dict[str, FamilyAtRate]


@dataclass(frozen=True, slots=True)
class Recommendation:
    policy: str | None
    within_band: bool
    ratio: float | None  # the ratio it was ranked by
    basis: str | None  # "company", "flat" or None: what the ratio is to
    reason: str


@dataclass(frozen=True, slots=True)
class FallbackCount:
    """A segment too small for a buffer of its own: in how many folds, and who served it."""

    n_folds: int
    served_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scorecard:
    """What opens every report (training.backtest.scorecard)."""

    targets: tuple[Band, ...]
    unit: Unit
    policies: dict[str, tuple[TargetEntry, ...]]  # per policy, one entry per target
    company: CompanyCard | None
    recommendation: Recommendation
    sentence: str  # one plain sentence in the spec's units
    fallbacks: dict[str, FallbackCount]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompactTarget:
    target_late_rate: float
    late_rate: float | None
    within_band: bool | None
    ratio_to_flat: float | None


@dataclass(frozen=True, slots=True)
class CompactScorecard:
    """What a bundle's manifest keeps of the scorecard for one policy."""

    policy: str
    targets: tuple[CompactTarget, ...]
    company_ratio: float | None  # over the business's promise at its late rate
    recommended: str | None
    sentence: str
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestReport(JsonRecord):
    """The walk-forward back-test's report (see the module docstring)."""

    created_at: str | None = field(
        default=None, metadata=OMIT_IF_NONE
    )  # set by the command line when it writes one
    scorecard: Scorecard
    spec: SpecInfo
    dataset: DatasetInfo
    protocol: ProtocolInfo
    target_late_rate: float
    unit: Unit
    policies: dict[str, PolicyFigures]  # in the order run
    company_promise: PolicyFigures | None  # None when the spec names no company promise
    model: ModelFigures
    tradeoff: tuple[TradeoffPoint, ...]
    comparison: Comparisons
    folds: tuple[FoldDiagnostics, ...]
    earliness: Earliness
    at_risk: dict[str, tuple[AtRiskEntry, ...]]  # policy (or `COMPANY`) -> one per threshold


@dataclass(frozen=True, slots=True)
class CompanySummary:
    company_late_rate: float | None
    company_mean_promise_hours: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestSummary(JsonRecord):
    """The compact back-test record a bundle's manifest keeps: one policy, no trade-off sweep."""

    policy: str
    unit: Unit
    target_late_rate: float
    late_rate: float | None
    folds: int
    n_quotes: int
    n_unknown: int
    mean_promise_hours: float | None
    median_promise_hours: float | None
    mean_promise_units: float | None
    mae_hours: float | None
    pinball_loss_hours: float | None
    flat_mean_promise_hours: float | None  # one duration for all reaching the same late rate
    flat_mean_promise_units: float | None
    first_cutoff: str
    last_end: str
    company: CompanySummary | None = field(metadata=INLINE)  # when the spec names a company promise
    at_risk_threshold: float
    at_risk_recall: float | None  # the call list at `at_risk_threshold` (None: no risk model)
    at_risk_false_alarm_share: float | None
    at_risk_median_warning_hours: float | None
    scorecard: CompactScorecard
