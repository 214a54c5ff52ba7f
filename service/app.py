"""`create_app(settings)`: the service, ready to serve (uvicorn calls it as a factory).

On start it migrates the ledger (under a lock, so workers starting together are safe; when the
database cannot be reached it starts not ready and migrates once it answers), loads the
bundle the ledger says is served (the promoted one on a new ledger; without one it runs but is
not ready; it writes no choice of model until it serves: `service.bundles`), and wires the
API, the web form, the error handlers and the middleware: loopback guard (open mode only),
metrics, body size limit, body read timeout.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.exc import SQLAlchemyError

from models.registry import Registry
from service import api, ops, web
from service.auth import LoopbackOnly
from service.bundles import BundleHolder
from service.control import ControlCache
from service.errors import install_error_handlers
from service.keyring import KeyRing
from service.ledger import Ledger
from service.limits import BodyLimit, BodyTimeout
from service.metrics import Metrics, RequestMetrics
from service.openapi import ServedOpenApi, operation_id
from service.sessions import Sessions
from service.settings import Settings
from service.throttle import AuthThrottle

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DISTRIBUTION = "promise-engine"  # the name on the package index ("promise" is another library)
DESCRIPTION = """Calibrated order promises for point-of-sale systems and staff.

Send `Authorization: Bearer KEY` (or `X-API-Key: KEY`). Errors are JSON:
`{"error", "message", "field", "errors"}`; `field` names the offending input.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app for `settings` (default: read from PROMISE_* environment variables)."""
    settings = settings or Settings()
    ledger = Ledger.from_settings(settings)
    try:
        ledger.migrate()
    except SQLAlchemyError as err:
        # Start not ready instead of failing: requests answer 503 and the first one after the
        # database returns migrates (`deps.get_ledger`).
        log.error("ledger.unreachable_at_start", extra={"error": type(err).__name__})
    registry = Registry(settings.registry, signing_key=settings.signing_key())
    holder = BundleHolder(
        registry,
        ledger,
        settings.model_check_seconds,
        follow_promotions=settings.follow_promotions,
        model_uri=settings.model_uri,
    )
    holder.start()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ledger.close()

    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts from this service (the
    # package ships the Swagger UI and ReDoc assets), never from a CDN: back offices are often
    # offline.
    app = FastAPIOffline(
        title="Promise",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # FastAPI's own OpenTelemetry layer asked the global providers on every request (~2%
        # of a quote's CPU) to find them unconfigured: the service reports through its
        # Prometheus metrics and JSON logs instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.bundles = holder
    app.state.control = ControlCache(ledger, settings.control_refresh_seconds)
    app.state.keyring = KeyRing.from_settings(settings)
    app.state.throttle = AuthThrottle(
        settings.auth_failures_allowed, settings.auth_failure_window_seconds
    )
    app.state.sessions = Sessions(settings, ledger)
    app.state.metrics = metrics = Metrics(ledger, holder, settings)
    app.state.templates = Jinja2Templates(
        env=Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
        )
    )
    install_error_handlers(app, settings.retry_after_seconds, web.render_error)
    app.include_router(api.router)
    app.include_router(ops.router)
    app.include_router(web.router)
    app.openapi = ServedOpenApi(app, holder, (api.router, ops.router))  # type: ignore[method-assign]  # documented override
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # The last added middleware runs first: loopback guard, then metrics, then the size limit,
    # then the read timeout (innermost: it sees each chunk as the app asks for it).
    app.add_middleware(BodyTimeout, timeout_seconds=settings.body_read_timeout_seconds)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if settings.is_open:
        app.add_middleware(LoopbackOnly)
    _announce_access(settings)
    return app


def _announce_access(settings: Settings) -> None:
    if settings.is_open:
        log.warning(
            "auth.open_mode",
            extra={
                "detail": "NO API KEYS CONFIGURED: anyone on this machine may quote, read quotes "
                "and reload models; clients not on loopback are refused. Set "
                "PROMISE_API_KEYS, PROMISE_STAFF_KEY and PROMISE_ADMIN_KEY."
            },
        )
        return
    if not settings.has_role("staff"):
        log.warning("auth.no_staff_key", extra={"detail": "the staff web form is closed"})
    if not settings.has_role("admin"):
        log.warning("auth.no_admin_key", extra={"detail": "models cannot be reloaded"})
    if not settings.has_role("pos"):
        log.warning("auth.no_api_keys", extra={"detail": "no point-of-sale client can quote"})


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0.0.0"
