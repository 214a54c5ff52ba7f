"""Operations endpoints: liveness and readiness (open to all), Prometheus metrics (a metrics or
admin key once keys are configured).

Ready means a model is loaded and the ledger accepts writes: the latest write of this worker
committed (`service.health`), or, when no write has reported for `readiness_probe_seconds`, a
probe write of this worker's `write_probes` row does. A ledger that answers a SELECT while every
write fails (a full disk, a read-only database) is not ready, and `ledger` says why.
"""

from __future__ import annotations

import logging
import os
import socket

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from models.errors import PromiseError
from service.auth import require
from service.bundles import BundleHolder
from service.database import probe_write
from service.deps import MetricsDep, SettingsDep
from service.errors import ErrorBody
from service.health import REASONS, WriteHealth, classify
from service.ledger import Ledger
from service.schemas import HealthResponse, ReadyResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> HealthResponse:
    """Alive: the process answers (says nothing about the model or the ledger)."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready; see Retry-After"}},
)
def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    """Ready when a model is loaded and the ledger accepts writes; else 503 with Retry-After
    and `ledger` saying what is wrong ("not writable: the disk is full")."""
    holder: BundleHolder = request.app.state.bundles
    ledger: Ledger = request.app.state.ledger
    ledger_state = _ledger_state(ledger, settings.readiness_probe_seconds)
    serving = holder.snapshot()
    if not ledger_state.startswith("unreachable"):
        try:
            serving = holder.current()  # may follow a reload made by another worker
        except SQLAlchemyError as err:
            # Readiness reports the outage instead of failing with it.
            log.warning("ledger.read_failed", extra={"error": type(err).__name__})
            ledger_state = f"unreachable: {type(err).__name__}"
    body = ReadyResponse(
        ready=serving is not None and ledger_state == "ok",
        model_version=serving.version if serving else None,
        model_error=None if serving else (holder.load_error or "no model loaded"),
        ledger=ledger_state,
        promoted_version=_promoted(holder),
    )
    if body.ready:
        return JSONResponse(body.model_dump(mode="json"))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


def _ledger_state(ledger: Ledger, probe_seconds: float) -> str:
    """ "ok", "unreachable: ERROR" or "not writable: REASON" for this worker's ledger."""
    try:
        ledger.ping()
        ledger.ensure_migrated()  # a service started while the database was down
    except SQLAlchemyError as err:
        kind = classify(err)
        log.warning("ledger.ping_failed", extra={"error": type(err).__name__, "kind": kind})
        if kind in ("disk_full", "read_only"):  # it answers, but cannot migrate
            return f"not writable: {REASONS[kind]}"
        return f"unreachable: {type(err).__name__}"
    health = WriteHealth.of(ledger.engine)
    if health.is_stale(probe_seconds):
        try:
            probe_write(ledger.engine, _worker())  # its outcome goes to `health`
        except SQLAlchemyError as err:
            kind = classify(err)
            log.warning("ledger.probe_failed", extra={"error": type(err).__name__, "kind": kind})
            if kind is None:  # not the storage's fault, so `health` did not record it
                return f"not writable: {type(err).__name__}"
    latest = health.latest()
    if latest is None or latest.is_ok:
        return "ok"
    return f"not writable: {latest.reason}"


def _worker() -> str:
    # This worker's row in `write_probes`: a host may run several services and workers.
    return f"{socket.gethostname()}:{os.getpid()}"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"},
        401: {"model": ErrorBody, "description": "Keys are configured and none was sent"},
        403: {"model": ErrorBody, "description": "A key that is not a metrics or admin key"},
    },
    dependencies=[Depends(require("metrics", "admin"))],
)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests and latencies by route, quotes, outcomes, live late rate.

    Needs a metrics or admin key once keys are configured (the figures are per store); open
    to this machine when the service runs without keys."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def _promoted(holder: BundleHolder) -> str | None:
    """The version promoted for serving, None when none can be read (readiness says so)."""
    try:
        return holder.promoted_version()
    except PromiseError:
        return None
