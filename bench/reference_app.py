"""The references `make bench` serves beside `promise serve`, each with uvicorn on its own
loopback port, to compare throughput on the same machine, model and body:

- `create_app`, the naive reference service: `POST /v1/quotes`, one DataFrame and one sklearn
  predict per request, no ledger, no validation beyond JSON;
- `create_bare_app`, the ceiling of the stack: `POST /v1/quotes` validates the body as the
  service does (`service.schemas.QuoteRequest`, a sync route run in the threadpool) and
  answers a constant; no model, no ledger.

    PROMISE_REGISTRY=DIR uvicorn bench.reference_app:create_app --factory --port PORT
    uvicorn bench.reference_app:create_bare_app --factory --port PORT
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench.reference import NaiveQuoter
from models.registry import Registry
from service.schemas import QuoteRequest

# What the bare endpoint answers to every valid body: the shape of a quote, fixed.
BARE_ANSWER: dict[str, Any] = {
    "quote_id": "Q-0000-0000-0000",
    "expected_hours": 72.0,
    "buffer_hours": 24.0,
    "deadline_at": "2026-11-27T17:00:00+00:00",
    "promise_date": "2026-11-27",
}


def create_app() -> FastAPI:
    """The reference app for the bundle promoted in `$PROMISE_REGISTRY`."""
    registry = Registry(Path(os.environ["PROMISE_REGISTRY"]))
    version = registry.promoted_version()
    if version is None:
        raise SystemExit(f"no model is promoted in {registry.root}")
    quoter = NaiveQuoter(registry.load_model(version))
    app = FastAPI(title="Promise naive reference")

    @app.post("/v1/quotes", status_code=201)
    def create_quote(body: dict[str, Any]) -> dict[str, Any]:
        """Quote `body["order"]`, placed now."""
        answer = quoter.quote(body["order"], dt.datetime.now(dt.UTC))
        return {
            "expected_hours": answer["expected_hours"],
            "buffer_hours": answer["buffer_hours"],
            "deadline_at": answer["deadline"].isoformat(),
            "promise_date": answer["promise_date"].isoformat(),
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_bare_app() -> FastAPI:
    """The bare endpoint: the body validated as `POST /v1/quotes` validates it, a constant
    answered (what FastAPI and uvicorn cost on this machine, the ceiling of the stack)."""
    app = FastAPI(title="Promise bare endpoint")

    @app.post("/v1/quotes", status_code=201)
    def create_quote(body: QuoteRequest) -> dict[str, Any]:
        """Validate `body`, answer the same constant."""
        return BARE_ANSWER

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
