"""Run the service: migrate once, then start uvicorn with N workers sharing one ledger.

`promise serve --host 127.0.0.1 --port 8000 --workers 2` calls `run` (`service.commands`).
Before anything is written it reads the settings (a bad one is a message naming the variable),
refuses a non-loopback address when no key is configured and refuses a port in use; only then
does it apply the ledger's migrations once and give the workers one folder for their
Prometheus metrics so a scrape adds up all of them. `promise serve --check` stops after the
checks (`check`; `make run` calls it before training anything).
"""

from __future__ import annotations

import logging
import logging.config
import os
import socket
import tempfile
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from models.errors import SettingsError
from service.auth import is_loopback
from service.database import migrate_schema
from service.ledger import Ledger
from service.logs import logging_config
from service.metrics import MULTIPROCESS_ENV
from service.settings import Settings

log = logging.getLogger(__name__)
WORKER_START_SECONDS = 120


def check(host: str, port: int) -> Settings:
    """The settings, once this server could start: raises `SettingsError` for bad settings, a
    public address without keys, or a port another process listens on."""
    try:
        settings = Settings()
    except ValidationError as err:
        problems = "; ".join(
            f"PROMISE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"refusing to start: {problems}") from None
    if settings.is_open and not (host == "localhost" or is_loopback(host)):
        raise SettingsError(
            f"refusing to listen on {host} without API keys: set PROMISE_API_KEYS, "
            "PROMISE_STAFF_KEY and PROMISE_ADMIN_KEY, or listen on 127.0.0.1"
        )
    problem = port_problem(host, port)
    if problem is not None:
        raise SettingsError(f"refusing to start: {problem}")
    return settings


def port_problem(host: str, port: int) -> str | None:
    """Why this process cannot listen on host:port (another one does), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"cannot resolve {host}: {err.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            return f"cannot listen on {host}:{port}: {err.strerror} (is another server running?)"
    return None


def run(
    host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until stopped; raises `SettingsError` for a refused configuration."""
    settings = check(host, port)
    config = logging_config(log_level.upper())
    logging.config.dictConfig(config)
    prepare_metrics_folder(workers)
    ledger = Ledger.from_settings(settings)
    try:
        # Once here, so that each worker finds the ledger migrated: one read, no Alembic. A
        # ledger of a newer release is refused here (`SettingsError`), before any worker runs.
        migrate_schema(ledger.engine, settings.store_field)
    except SQLAlchemyError as err:
        # The workers start not ready and migrate once the database answers.
        log.error("ledger.unreachable_at_start", extra={"error": type(err).__name__})
    finally:
        ledger.close()
    log.info("server.starting", extra={"host": host, "port": port, "workers": workers})
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=config,
        log_level=log_level,
        # A worker builds its app (imports, migrations, the model's trees) before it answers
        # uvicorn's start-up health check: on a busy host that takes longer than uvicorn's 5 s,
        # and workers killed for it would restart in a loop.
        timeout_worker_healthcheck=WORKER_START_SECONDS,
    )


def prepare_metrics_folder(workers: int) -> None:
    """Give several workers one empty folder for their metrics (PROMETHEUS_MULTIPROC_DIR)."""
    folder = os.environ.get(MULTIPROCESS_ENV)
    if not folder:
        if workers <= 1:
            return
        folder = tempfile.mkdtemp(prefix="promise-metrics-")
        os.environ[MULTIPROCESS_ENV] = folder
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # values of a previous run would be added to this one's
        stale.unlink()
