"""Request dependencies, each named once as an `Annotated` alias for the routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Header, Request

from service.auth import Caller, require
from service.bundles import BundleHolder, Serving
from service.control import ControlCache
from service.desk import Desk, QuoteDesk
from service.ledger import Ledger
from service.metrics import Metrics
from service.sessions import require_staff
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_ledger(request: Request) -> Ledger:
    """The ledger, migrated (a SQLAlchemy error, answered 503, while it cannot be reached)."""
    ledger: Ledger = request.app.state.ledger
    ledger.ensure_migrated()
    return ledger


def get_holder(request: Request) -> BundleHolder:
    holder: BundleHolder = request.app.state.bundles
    holder.ledger.ensure_migrated()  # it reads the served model from the ledger
    return holder


def get_control(request: Request) -> ControlCache:
    control: ControlCache = request.app.state.control
    return control


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_serving(holder: Annotated[BundleHolder, Depends(get_holder)]) -> Serving:
    """The bundle snapshot this request quotes with; 503 when none is loaded."""
    return holder.require()


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


SettingsDep = Annotated[Settings, Depends(get_settings)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
HolderDep = Annotated[BundleHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ControlDep = Annotated[ControlCache, Depends(get_control)]
BundleDep = Annotated[Serving, Depends(get_serving)]
NowDep = Annotated[dt.datetime, Depends(now_utc)]


def get_desk(
    ledger: LedgerDep,
    control: ControlDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    now: NowDep,
) -> Desk:
    return Desk(ledger=ledger, control=control, settings=settings, metrics=metrics, now_utc=now)


DeskDep = Annotated[Desk, Depends(get_desk)]


def get_quote_desk(serving: BundleDep, desk: DeskDep, holder: HolderDep) -> QuoteDesk:
    """The desk with the bundle snapshot to quote with (and the models of older quotes); 503
    when none is loaded."""
    return desk.quoting(serving, holder.serving_for)


QuoteDeskDep = Annotated[QuoteDesk, Depends(get_quote_desk)]

QuoteCaller = Annotated[Caller, Depends(require("pos", "staff"))]
ReadCaller = Annotated[Caller, Depends(require("pos", "staff", "admin"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
StaffCaller = Annotated[Caller, Depends(require_staff)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any printable ASCII text up to 200 characters (a UUID is ideal): a "
        "retried request with the same key gets the same quote back.",
    ),
]
