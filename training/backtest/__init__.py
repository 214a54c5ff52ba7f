"""Walk-forward back-test: how often would our promises have been broken, and at what length?

`run_backtest` answers with the typed report (`BacktestReport`, `to_json()` for the file);
`backtest_summary` with the few figures a bundle's manifest records. The protocol (DESIGN.md,
issue 9):

```
history ────────────────────────────────┬──────┬──────┬──────┬──────┬──────┬─ settle ─┤ as_of
                                        c0     c1     c2     c3     c4    end
fold k: fit + calibrate on what was known at c_k, quote the orders placed in [c_k, c_k+1)
```

- Cut-offs are in time order (`folds`). At each one the model and every policy are fitted by
  `training.train` from what was known then only (orders placed before it, outcomes of those
  fulfilled before it, and which were still open); the model is fitted once per fold and every
  policy and trade-off target is calibrated on it (`walk`).
- The orders of the next horizon are quoted through `models.quoting.quote_batch`, the function
  the service uses (`replay`), and scored against what really happened (`scoring`): a promise
  is kept iff the order was fulfilled at or before its deadline. An order still open at the
  extraction moment (`as_of`) whose deadline had passed is known late; one whose deadline lies
  after it has an unknown outcome and is excluded (and counted as `n_unknown`).
- The last horizon ends a settle time (the spec's `settle_quantile` of the durations, orders
  still open at `as_of` censored at their age) before `as_of`, so almost every order it holds
  is observed.
- Inside each fold the engine is refitted and recalibrated on production's cadence
  (`refit_schedule`: weekly for date promises, daily for hour and minute promises, or the
  spec's `[backtest] refit_every` / `recalibrate_every`), each period quoted by the engine
  fitted at its start from what was known then. Fold diagnostics report the fit at the fold's
  cut-off; the quantile policy's own model is refitted once per fold and target.
- The adaptive policy quotes in buckets (one day for daily promises, one hour otherwise) with its
  control state as of the bucket's start (`models.control`): every promise is learnt at its
  deadline, kept or broken (an order still open at its deadline is late), never before; the
  nowcast reads the orders in progress with only the outcomes known by then. Its state carries
  across refits and folds, as a running service's would.

Two effects that break naive back-tests are reported per fold (`FoldDiagnostics`):
- right-censoring: how many orders were open at the cut-off, and the late rate a naive
  calibration (the latest orders fulfilled before the cut-off, open ones dropped) would have had
  next to ours;
- drift: the median duration of the fold's orders against the training slice's, the model's
  median residual on the calibration slice against the fold's, and the static (conformal)
  against the adaptive late rate.

Orders at risk (`at_risk`) replays the call list a monitor would have kept; the trade-off curve
(`tradeoff`) recalibrates each policy family at `TRADEOFF_TARGETS` on the same fold models (the
quantile family refits its quantile model per target: most of a full run's time) and sweeps a
model-free flat rule; the scorecard (`scorecard`) opens the report; `build` scores it all into
the frozen dataclasses of `report_data`.

Durations are hours unless a name says otherwise; times are epoch seconds (UTC) inside and ISO
8601 in the report; rates are shares in [0, 1].
"""

from training.backtest.at_risk import (
    AT_RISK_THRESHOLDS,
    AtRiskCounts,
    CallList,
    WatchedOrders,
    call_list,
    pool_at_risk,
)
from training.backtest.build import (
    SUMMARY_AT_RISK_THRESHOLD,
    backtest_summary,
    build_report,
    run_backtest,
    summary_of,
)
from training.backtest.folds import FoldPlan, plan_folds, refit_schedule
from training.backtest.replay import (
    AdaptiveStream,
    QuoteRecord,
    Watch,
    adaptive_bucket_seconds,
    quote_adaptive,
    quote_static,
    rule_record,
)
from training.backtest.report_data import COMPANY, FLAT, BacktestReport, BacktestSummary
from training.backtest.scoring import Scored, figures, pinball_loss, score
from training.backtest.tradeoff import curve_at
from training.backtest.walk import (
    SCORECARD_TARGETS,
    TRADEOFF_TARGETS,
    Progress,
    WalkForward,
    walk_forward,
)

__all__ = [
    "AT_RISK_THRESHOLDS",
    "COMPANY",
    "FLAT",
    "SCORECARD_TARGETS",
    "SUMMARY_AT_RISK_THRESHOLD",
    "TRADEOFF_TARGETS",
    "AdaptiveStream",
    "AtRiskCounts",
    "BacktestReport",
    "BacktestSummary",
    "CallList",
    "FoldPlan",
    "Progress",
    "QuoteRecord",
    "Scored",
    "WalkForward",
    "Watch",
    "WatchedOrders",
    "adaptive_bucket_seconds",
    "backtest_summary",
    "build_report",
    "call_list",
    "curve_at",
    "figures",
    "pinball_loss",
    "plan_folds",
    "pool_at_risk",
    "quote_adaptive",
    "quote_static",
    "refit_schedule",
    "rule_record",
    "run_backtest",
    "score",
    "summary_of",
    "walk_forward",
]
