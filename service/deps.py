"""Request dependencies, each named once as an `Annotated` alias for the routes.

Each is `async def` unless it can block: FastAPI runs a plain `def` dependency in the
threadpool, one thread hop (two event-loop wake-ups) each, and a quote used to need ten of
them before its route ran. What may block (a migration while the ledger comes back, a keys
file re-read) is handed to the threadpool only on the rare request that needs it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from service.auth import Caller, require
from service.bundles import BundleHolder, Serving
from service.control import ControlCache
from service.desk import Desk, QuoteDesk
from service.ledger import Ledger
from service.metrics import Metrics
from service.sessions import require_staff
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_ledger(request: Request) -> Ledger:
    """The ledger, migrated (a SQLAlchemy error, answered 503, while it cannot be reached)."""
    ledger: Ledger = request.app.state.ledger
    await _ensure_migrated(ledger)
    return ledger


async def get_holder(request: Request) -> BundleHolder:
    holder: BundleHolder = request.app.state.bundles
    await _ensure_migrated(holder.ledger)  # it reads the served model from the ledger
    return holder


async def _ensure_migrated(ledger: Ledger) -> None:
    if not ledger.is_migrated:  # only after a start without the database: it migrates now
        await run_in_threadpool(ledger.ensure_migrated)


async def get_control(request: Request) -> ControlCache:
    control: ControlCache = request.app.state.control
    return control


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_serving(holder: Annotated[BundleHolder, Depends(get_holder)]) -> Serving:
    """The bundle snapshot this request quotes with; 503 when none is loaded.

    In the threadpool: every `model_check_seconds` it reads the ledger's choice of model, and
    it may load a new bundle (seconds), which must not stop the event loop."""
    return holder.require()


async def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


SettingsDep = Annotated[Settings, Depends(get_settings)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
HolderDep = Annotated[BundleHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ControlDep = Annotated[ControlCache, Depends(get_control)]
BundleDep = Annotated[Serving, Depends(get_serving)]
NowDep = Annotated[dt.datetime, Depends(now_utc)]


async def get_desk(request: Request) -> Desk:
    """The desk of this request, its clock read now. Built from the app's state in one
    dependency (FastAPI's solving costs per dependency and request, and a quote is the hot
    path); 503 while the ledger cannot be reached."""
    state = request.app.state
    ledger: Ledger = state.ledger
    await _ensure_migrated(ledger)
    return Desk(
        ledger=ledger,
        control=state.control,
        settings=state.settings,
        metrics=state.metrics,
        now_utc=await now_utc(),
    )


DeskDep = Annotated[Desk, Depends(get_desk)]


async def get_quote_desk(request: Request) -> QuoteDesk:
    """The desk with the bundle snapshot to quote with (and the models of older quotes); 503
    when none is loaded (`quoting_snapshot`). It builds the desk itself rather than depending
    on `get_desk`: one dependency fewer to solve on every quote."""
    desk = await get_desk(request)
    holder: BundleHolder = request.app.state.bundles
    serving = await quoting_snapshot(holder)
    return desk.quoting(serving, holder.serving_for)


async def quoting_snapshot(holder: BundleHolder) -> Serving:
    """The bundle a quote uses: the one held while the holder's last look at the ledger's
    choice is fresh (`is_checked`, no thread hop), else `holder.require()` in the threadpool
    (it may read the ledger and load a bundle). A hop per quote cost about a tenth of its CPU."""
    serving = holder.snapshot()
    if serving is not None and holder.is_checked():
        return serving
    return await run_in_threadpool(get_serving, holder)


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
