"""`promise train` end to end: spec -> data -> (back-test summary) -> engine -> registry."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.features import FeatureSchema
from models.registry import Manifest, Registry
from models.units import iso_utc
from training.backtest import BacktestReport, run_backtest, summary_of
from training.backtest import Progress as BacktestProgress
from training.data import OrderTable, load_orders
from training.json_form import JsonObject
from training.spec import load_spec
from training.train import build_calendar, fit_engine

Progress = Callable[[str], None]

# The manifest lists at most this many known values per categorical feature.
MANIFEST_CATEGORY_LIMIT = 500


def train_bundle(
    spec_path: Path,
    registry: Registry,
    now: dt.datetime,
    policy: str | None = None,
    backtest_folds: int = 0,
    progress: Progress | None = None,
    data: Path | None = None,
    on_report: Callable[[BacktestReport], None] | None = None,
    backtest_progress: BacktestProgress | None = None,
) -> Manifest:
    """Train on the whole history, record how it was made, and save a new bundle.

    `data` reads another order table than the spec's `[dataset] path`; `on_report` is given
    the back-test's whole report (the manifest keeps its summary). `progress` hears each step's
    message, `backtest_progress` (what, done, total) each step of the back-test summary."""
    say = progress or (lambda _message: None)
    spec = load_spec(spec_path)
    if data is not None:
        spec = spec.with_data(data)
    table = load_orders(spec)
    say(f"read {table.rows_read:,} orders from {table.source}")
    calendar = build_calendar(spec, table, now.date())
    backtest: JsonObject = {}
    if backtest_folds > 0:
        say(f"back-testing over {backtest_folds} folds")
        name = policy or spec.quote.policy
        full = run_backtest(
            spec, table, calendar, [name], backtest_folds, backtest_progress, tradeoff=False
        )
        if on_report is not None:
            on_report(full)  # the whole report: the command line logs it to MLflow
        backtest = summary_of(spec, full, name).to_json()
    say("fitting the model on the whole history")
    # Everything in the file is known now: the cut-off is just after its latest timestamp.
    model, report = fit_engine(spec, table, calendar, table.as_of_s + 1.0, policy)
    engine = model.engine
    say(
        f"trained on {report.n_train:,} orders, calibrated on {report.n_calibration:,} "
        f"({report.n_censored_calibration:,} still open)"
    )
    info = {
        "spec": spec.model_dump(mode="json", exclude={"source"}),
        "spec_path": str(spec.source),
        "spec_sha256": _file_sha256(spec.source),
        "data": _data_info(table),
        "feature_schema": schema_info(engine.schema),
        "segments_by": list(engine.segments),
        "fit": report.to_info().to_json(),
        "backtest": backtest,
        # What the staff pages and the customer's slip call things, and whose shop it is.
        "labels": spec.labels.model_dump(mode="json"),
        "shop": spec.shop.model_dump(mode="json", exclude_none=True),
    }
    return registry.save(model, info, now)


def schema_info(schema: FeatureSchema) -> dict[str, Any]:
    """The feature schema as the manifest shows it: categories and numeric ranges."""
    return {
        "categorical": {
            cat.name: sorted(cat.known)[:MANIFEST_CATEGORY_LIMIT] for cat in schema.categorical
        },
        "numeric": {
            num.name: {"low": num.low, "high": num.high, "is_integer": num.is_integer}
            for num in schema.numeric
        },
        "columns": schema.column_names,
    }


def _data_info(table: OrderTable) -> dict[str, Any]:
    return {
        "path": str(table.source),
        "fingerprint": table.fingerprint(),
        "rows_read": table.rows_read,
        "rows_used": table.size,
        "open_orders": int(table.is_open.sum()),
        "first_order": iso_utc(float(table.ordered_at_s.min())),
        "last_order": iso_utc(float(table.ordered_at_s.max())),
    }


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
