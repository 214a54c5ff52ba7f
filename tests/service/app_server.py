"""The real app over real HTTP for client tests: uvicorn's own factory command line, so the
tests do not depend on Promise's command line (a subprocess: its own clock, limits and
int-parsing, as a server elsewhere would have)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.service.conftest import ADMIN_KEY, POS_KEY, STAFF_KEY
from tests.service.servers import free_port, running_process


def server_env(
    folder: Path, registry: Path, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A served app's environment: its ledger `folder/ledger.db`, the trained `registry` and
    every role's key, with `env` on top."""
    return {
        "PROMISE_DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
        "PROMISE_REGISTRY": str(registry),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_ADMIN_KEY": ADMIN_KEY,
        **(env or {}),
    }


@contextmanager
def app_server(
    folder: Path, registry: Path, env: Mapping[str, str] | None = None, ready: bool = True
) -> Iterator[str]:
    """`create_app()` under uvicorn on a free port, its ledger `folder/ledger.db`, every role's
    key set (override with `env`); yields the base URL once /readyz (or, not `ready`, /healthz)
    answers 200."""
    port = free_port()
    values = server_env(folder, registry, env)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "service.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = folder / f"server-{port}.log"
    with running_process(command, values, port, log, ready=ready) as (base, _process):
        yield base
