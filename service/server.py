"""Run the service: migrate once, then start uvicorn with N workers sharing one ledger.

`python -m service.server --host 127.0.0.1 --port 8000 --workers 2` (what `promise serve`
should call). Before the workers start it refuses a non-loopback address when no key is
configured, applies the ledger's migrations once, and gives the workers one folder for their
Prometheus metrics so a scrape adds up all of them.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import tempfile
from pathlib import Path

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from service.auth import is_loopback
from service.ledger import Ledger
from service.logs import logging_config
from service.metrics import MULTIPROCESS_ENV
from service.settings import Settings

log = logging.getLogger(__name__)


def run(
    host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until stopped; raises SystemExit with a message for a refused configuration."""
    settings = Settings()
    if settings.is_open and not (host == "localhost" or is_loopback(host)):
        raise SystemExit(
            f"refusing to listen on {host} without API keys: set PROMISE_API_KEYS, "
            "PROMISE_STAFF_KEY and PROMISE_ADMIN_KEY, or listen on 127.0.0.1"
        )
    config = logging_config(log_level.upper())
    logging.config.dictConfig(config)
    prepare_metrics_folder(workers)
    ledger = Ledger.from_settings(settings)
    try:
        ledger.migrate()
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    run(args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    main()
