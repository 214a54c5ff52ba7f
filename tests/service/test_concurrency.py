"""Two worker processes, 32 concurrent clients, retries with the same Idempotency-Key (some
while the first attempt is in flight), and a worker killed with SIGKILL mid-load: the ledger
holds exactly one quote per key, every retry got the identical quote, nothing half-written.
The full run (10,000 requests) is `make soak` (`python -m tests.service.soak`)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.service.conftest import ADMIN_KEY, POS_KEY, STAFF_KEY
from tests.service.load import audit, run_load
from tests.service.servers import free_port, running_process, wait_until, worker_pids

PROMISE = Path(sys.executable).parent / "promise"
BOUNDED_REQUESTS = 600
CLIENTS = 32


@contextmanager
def two_workers(database_url: str, registry_root: Path, folder: Path) -> Iterator[tuple[str, int]]:
    """A `promise serve --workers 2` on a free loopback port: (base URL, server pid)."""
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": database_url,
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_ADMIN_KEY": ADMIN_KEY,
        "PROMISE_MODEL_CHECK_SECONDS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
    }
    command = [str(PROMISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with running_process(command, env, port, folder / "server.log") as (base, process):
        wait_until(lambda: len(worker_pids(process)) == 2, "two workers")
        yield base, process.pid


def test_concurrent_retries_store_one_quote_per_key(
    database_url: str, registry_root: Path, tmp_path: Path
) -> None:
    with two_workers(database_url, registry_root, tmp_path) as (base, _pid):
        report = run_load(base, POS_KEY, BOUNDED_REQUESTS, clients=CLIENTS, seed=1)
    audit(report, database_url)

    assert report.summary()["5xx seen (not 503)"] == 0
    assert report.retries > 0 and report.keys + report.retries == BOUNDED_REQUESTS
    assert report.is_clean, report.summary()


def test_a_worker_killed_mid_load_loses_nothing(
    database_url: str, registry_root: Path, tmp_path: Path
) -> None:
    killed: list[int] = []
    with two_workers(database_url, registry_root, tmp_path) as (base, server_pid):

        def kill_one_worker() -> None:
            pids = _workers_of(server_pid)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

        report = run_load(base, POS_KEY, 300, clients=CLIENTS, seed=2, after=(100, kill_one_worker))
    audit(report, database_url)

    assert killed, "no worker was killed"
    assert report.is_clean, report.summary()


def _workers_of(server_pid: int) -> list[int]:
    class _Process:
        pid = server_pid

    return worker_pids(_Process())  # type: ignore[arg-type]  # only .pid is read
