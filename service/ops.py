"""Operations endpoints, open to all: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from service.bundles import BundleHolder
from service.deps import MetricsDep, SettingsDep
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
    """Ready when a model is loaded and the ledger answers; else 503 with Retry-After."""
    holder: BundleHolder = request.app.state.bundles
    ledger: Ledger = request.app.state.ledger
    try:
        ledger.ping()
        ledger.ensure_migrated()  # a service started while the database was down
        serving = holder.current()  # may follow a reload made by another worker
        ledger_state = "ok"
    except SQLAlchemyError as err:
        # Readiness reports the outage instead of failing with it.
        log.warning("ledger.ping_failed", extra={"error": type(err).__name__})
        serving = holder.snapshot()
        ledger_state = f"unreachable: {type(err).__name__}"
    body = ReadyResponse(
        ready=serving is not None and ledger_state == "ok",
        model_version=serving.version if serving else None,
        model_error=None if serving else (holder.load_error or "no model loaded"),
        ledger=ledger_state,
    )
    if body.ready:
        return JSONResponse(body.model_dump(mode="json"))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}
    },
)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests and latencies by route, quotes, outcomes, live late rate."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
