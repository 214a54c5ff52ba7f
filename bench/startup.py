"""A serving worker for `make bench`: its start-up, and its memory under `promise serve`.

A child process imports `service.app`, loads the promoted bundle's serving form and quotes one
order (spawn to that answer is the start-up figure; one run before the measured ones, so the
kernels are built: `models.kernels`), then builds the app and answers one `POST /v1/quotes` on
a SQLite ledger, migrated before the child starts, as `promise serve` migrates it before its
workers start. It reports each part's seconds, its resident memory after the quote and after
the app's answer, and which of the training stack and of the build tools it imported (numba,
LLVM, Alembic, Mako): none of either, by design (`models.kernels` are compiled ahead of time,
`service.database.migrate_schema` reads a migrated ledger's version without Alembic).

`serve_worker_rss` runs `promise serve --workers 2` alone (no reference server beside it), sends
2,000 quotes from 32 clients and reads each worker's VmRSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARTUP_RUNS = 5
TRAINING_STACK = ("sklearn", "scipy", "pandas", "pyarrow", "matplotlib", "joblib")
# What a worker no longer needs either: a compiler (the kernels are built ahead of time,
# `models.kernels`) and the migration tool (`promise serve` migrates before its workers start).
BUILD_STACK = ("numba", "llvmlite", "alembic", "mako")
# A fresh worker: import the app, load the serving form, quote one order; then the app itself.
STARTUP_CODE = """
import time
began = time.perf_counter()
import datetime as dt, json, sys
import service.app
from models.quoting import Order, quote
from models.registry import Registry
imported = time.perf_counter()
engine = Registry(sys.argv[1]).load_promoted().engine
loaded = time.perf_counter()
order = json.loads(sys.argv[3])
[promise] = quote(engine, [Order(order, dt.datetime.now(dt.UTC))])
quoted = time.perf_counter()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024.0
def private():
    kib = 0
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith(("Private_Clean", "Private_Dirty")):
            kib += int(line.split()[1])
    return kib / 1024.0
rss_quoted, private_quoted = rss(), private()
print(json.dumps({"import_s": imported - began, "load_s": loaded - imported,
                  "first_quote_s": quoted - loaded, "rss_mib": rss_quoted,
                  "private_mib": private_quoted}), flush=True)
from fastapi.testclient import TestClient
from service.settings import Settings
start = time.perf_counter()
app = service.app.create_app(Settings(registry=sys.argv[1], database_url=sys.argv[2]))
# Open mode answers a loopback Host only (TestClient says "testserver" unless told).
with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000)) as client:
    status = client.post("/v1/quotes", json={"order": order}).status_code
stack, build = json.loads(sys.argv[4]), json.loads(sys.argv[5])
loaded = {m.split(".")[0] for m in sys.modules}
print(json.dumps({"app_first_quote_s": time.perf_counter() - start, "status": status,
                  "app_rss_mib": rss(), "training_stack": sorted(loaded & set(stack)),
                  "build_stack": sorted(loaded & set(build))}))
"""


def worker_startup(registry: Path, work: Path, order: dict[str, Any]) -> dict[str, Any]:
    """The bench's start-up figures: medians over `STARTUP_RUNS` fresh workers (after one)."""
    runs = [_start_worker(registry, work, order, i) for i in range(STARTUP_RUNS + 1)][1:]
    wall = sorted(run["wall_s"] for run in runs)
    return {
        "worker_startup_seconds": round(float(np.median(wall)), 3),
        "worker_startup_all_seconds": [round(w, 3) for w in wall],
        "worker_startup_parts_seconds": {
            part: round(float(np.median([run[part] for run in runs])), 3)
            for part in ("import_s", "load_s", "first_quote_s", "app_first_quote_s")
        },
        "worker_startup_rss_mib": round(float(np.median([run["rss_mib"] for run in runs])), 1),
        "worker_startup_private_mib": round(
            float(np.median([run["private_mib"] for run in runs])), 1
        ),
        "worker_app_rss_mib": round(float(np.median([run["app_rss_mib"] for run in runs])), 1),
        "worker_training_stack": sorted({m for run in runs for m in run["training_stack"]}),
        "worker_build_stack": sorted({m for run in runs for m in run["build_stack"]}),
    }


def _start_worker(registry: Path, work: Path, order: dict[str, Any], i: int) -> dict[str, Any]:
    from service.database import create_ledger_engine, migrate_schema

    ledger = f"sqlite:///{work / f'startup-{i}.db'}"
    engine = create_ledger_engine(ledger)
    migrate_schema(engine, "store_id")  # as `promise serve` does before its workers start
    engine.dispose()
    args = [str(registry), ledger, json.dumps(order), json.dumps(TRAINING_STACK)]
    args.append(json.dumps(BUILD_STACK))
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", STARTUP_CODE, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    wall = time.perf_counter() - start
    rest, err = process.communicate(timeout=300)
    if process.returncode != 0 or not first:
        raise RuntimeError(f"the worker failed: {err[-2000:]}")
    app = json.loads(rest.strip().splitlines()[-1])
    if app["status"] != 201:
        raise RuntimeError(f"the worker's app answered {app['status']}")
    return {"wall_s": wall, **json.loads(first), **app}


def serve_worker_rss(registry: Path, work: Path, features: list[dict[str, Any]]) -> dict[str, Any]:
    """VmRSS (MiB) of each `promise serve` worker after quoting `features` over HTTP."""
    import os

    from bench.load import run_load
    from bench.processes import (
        free_port,
        server,
        wait_ready,
        worker_private_mib,
        worker_rss_mib,
    )
    from bench.run import HTTP_CLIENTS

    bodies = [json.dumps({"order": f}).encode("utf-8") for f in features]
    env = {
        **os.environ,
        "PROMISE_REGISTRY": str(registry),
        "PROMISE_DATABASE_URL": f"sqlite:///{work / 'workers.db'}",
    }
    env.pop("PROMISE_API_KEYS", None)  # open mode: no keys, loopback only
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("promise")), "serve", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    with server(command, env, work / "workers.log") as service:
        wait_ready(port, "/readyz", service)
        result = run_load(port, "/v1/quotes", bodies, HTTP_CLIENTS, len(bodies), 60.0)
        if result.ok == 0:
            raise RuntimeError(f"no request succeeded: {result.statuses}")
        sizes = worker_rss_mib(service.pid)
        private = worker_private_mib(service.pid)
    return {
        "serve_worker_rss_mib": max(sizes) if sizes else None,
        "serve_worker_rss_all_mib": sizes,
        "serve_worker_private_mib": max(private) if private else None,
        "serve_worker_private_all_mib": private,
    }


def main() -> None:
    """`python -m bench.startup REGISTRY`: the figures for a registry's promoted bundle."""
    import tempfile

    from models.registry import Registry

    registry = Path(sys.argv[1])
    engine = Registry(registry).load_promoted().engine
    order: dict[str, Any] = {cat.name: cat.categories[0] for cat in engine.schema.categorical}
    order |= {num.name: num.low for num in engine.schema.numeric}
    with tempfile.TemporaryDirectory(prefix="promise-startup-") as work:
        figures = worker_startup(registry, Path(work), order)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
