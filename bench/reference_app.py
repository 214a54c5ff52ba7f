"""The naive reference service: `POST /v1/quotes`, one DataFrame and one sklearn predict per
request, no ledger, no validation beyond JSON. `make bench` starts it with uvicorn on its own
loopback port, next to `promise serve`, to compare throughput on the same machine and model.

    PROMISE_REGISTRY=DIR uvicorn bench.reference_app:create_app --factory --port PORT
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench.reference import NaiveQuoter
from models.registry import Registry


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
