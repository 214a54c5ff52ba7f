"""Promise in a notebook: fit, quote and back-test straight from pandas DataFrames.

    from training.notebook import PromiseEngine

    engine = PromiseEngine.fit(history, "data/optical.toml")  # past orders, as the spec names them
    engine.quote(new_orders)       # a DataFrame: one row per order, the promise's columns
    engine.backtest(history)       # a DataFrame: one row per policy (and the business)
    engine.save("models/bundles")  # a bundle `promise promote` and the service can serve

Timestamps go in as pandas timestamps: timezone-aware ones are taken as the instants they are,
naive ones as the shop's wall clock (the spec's `[dataset] timezone`), exactly as the order
files are read. Everything runs the command line's code: the frame is read by the one order
reader (`training.data.load_orders`, with its checks: a bad cell is a `SpecError` naming the
row and column), trained by `fit_engine`, quoted by `models.quoting.quote` (the service's one
path) and back-tested by `run_backtest`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from models.errors import InputError, SpecError
from models.quoting import Order, Promise, quote
from models.registry import Manifest, Registry
from models.trained import TrainedModel
from training.backtest.build import run_backtest
from training.data import OrderTable, load_orders
from training.spec import Spec, load_spec
from training.train import FitReport, build_calendar, fit_engine

FRAME_NAME = "the DataFrame"
PROMISE_COLUMNS = tuple(field.name for field in dataclasses.fields(Promise))


@dataclasses.dataclass(frozen=True)
class PromiseEngine:
    """A trained model with the spec it was trained by: quote and back-test DataFrames."""

    model: TrainedModel
    spec: Spec
    report: FitReport

    @classmethod
    def fit(
        cls, orders: pd.DataFrame, spec: Spec | str | Path, *, policy: str | None = None
    ) -> PromiseEngine:
        """Train on `orders` (columns named as the spec's `[dataset]` and `[features]`)."""
        loaded = _spec(spec)
        table = _table(orders, loaded)
        calendar = build_calendar(loaded, table, _today(table))
        model, report = fit_engine(loaded, table, calendar, table.as_of_s + 1.0, policy)
        return cls(model=model, spec=loaded, report=report)

    def quote(self, orders: pd.DataFrame) -> pd.DataFrame:
        """The promise for each order (the spec's feature columns and its `ordered_at`
        column), indexed as `orders`: `promise_date` / `promise_local` to tell the customer,
        `deadline_at` (UTC), the expected hours, the buffer and the explanation."""
        engine = self.model.engine
        schema = engine.schema
        ordered_column = self.spec.dataset.ordered_at
        missing = [c for c in (*schema.feature_names, ordered_column) if c not in orders]
        if missing:
            raise SpecError(f"{FRAME_NAME} has no column {missing[0]!r}")
        ordered_at = _instants(orders[ordered_column], self.spec.dataset.timezone)
        checked = []
        for position, (row, at) in enumerate(
            zip(orders[schema.feature_names].to_dict("records"), ordered_at, strict=True)
        ):
            features = {str(name): (None if pd.isna(v) else v) for name, v in row.items()}
            try:
                clean, _warnings = schema.check_order(features, strict_categories=False)
            except InputError as err:  # name the row, as the order files' errors do
                raise SpecError(f"{FRAME_NAME}, row {position}: {err}") from err
            checked.append(Order(features=clean, ordered_at=at))
        promises = quote(engine, checked)
        frame = pd.DataFrame(
            [dataclasses.asdict(promise) for promise in promises],
            columns=list(PROMISE_COLUMNS),
            index=orders.index,
        )
        frame.insert(0, "promise_date", [promise.promise_date for promise in promises])
        for column in ("ordered_at", "clock_start", "expected_completion", "deadline_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def backtest(
        self,
        orders: pd.DataFrame,
        policies: Sequence[str] | None = None,
        folds: int | None = None,
    ) -> pd.DataFrame:
        """The walk-forward back-test of `orders` (train on the past, quote the future), one
        row per policy and one for the business's own promise when the spec names it: late
        rate, mean promise and the rest of the report's overall figures."""
        table = _table(orders, self.spec)
        calendar = build_calendar(self.spec, table, _today(table))
        report = run_backtest(
            self.spec,
            table,
            calendar,
            list(policies) if policies is not None else None,
            folds,
            tradeoff=False,
        )
        rows = {name: figures.overall for name, figures in report.policies.items()}
        if report.company_promise is not None:
            rows["business"] = report.company_promise.overall
        frame = pd.DataFrame.from_dict(
            {name: dataclasses.asdict(figures) for name, figures in rows.items()}, orient="index"
        )
        frame.index.name = "policy"
        return frame

    def save(self, registry: str | Path, info: dict[str, object] | None = None) -> Manifest:
        """Save as a new bundle in `registry` (promote it to serve it)."""
        return Registry(Path(registry)).save(
            self.model,
            {"spec_path": str(self.spec.source), **(info or {})},
            dt.datetime.now(dt.UTC),
        )


def _today(table: OrderTable) -> dt.date:
    """The day the history was extracted: the calendar is built to cover it."""
    return dt.datetime.fromtimestamp(table.as_of_s, dt.UTC).date()


def _spec(spec: Spec | str | Path) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def _table(orders: pd.DataFrame, spec: Spec) -> OrderTable:
    """`orders` read by the one order reader, through a file in the spec's own format."""
    with tempfile.TemporaryDirectory(prefix="promise-notebook-") as folder:
        path = Path(folder) / "orders.csv"
        _as_text(orders).to_csv(path, index=False)
        try:
            return load_orders(spec.with_data(path))
        except SpecError as err:
            raise SpecError(str(err).replace(str(path), FRAME_NAME)) from err


def _as_text(orders: pd.DataFrame) -> pd.DataFrame:
    """The frame as its file would hold it: timestamps as ISO 8601 text (with their offset
    when they have a zone), everything else as it is."""
    out = orders.copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(
            values.dtype
        ):
            out[column] = [None if pd.isna(v) else v.isoformat() for v in values]
    return out


def _instants(values: pd.Series, zone: str) -> list[dt.datetime]:
    """Timestamps as aware datetimes: naive ones on the shop's wall clock (`zone`)."""
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(zone, ambiguous="raise", nonexistent="raise")
    return [stamp.to_pydatetime() for stamp in stamps]
