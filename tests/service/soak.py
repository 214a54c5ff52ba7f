"""`make soak`: the long concurrency run (`python -m tests.service.soak`), a CLI entry point
that prints its summary.

Two worker processes (`promise serve --workers 2`) on a loopback port, 32 clients, 10,000
quote requests of which 30 % repeat an earlier Idempotency-Key, on SQLite and, when
PROMISE_TEST_DATABASE_URL is set, on PostgreSQL (a fresh schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.service.bundle import ADMIN_KEY, POS_KEY, STAFF_KEY, trained_registry
from tests.service.conftest import find_postgres, fresh_schema
from tests.service.load import LoadReport, audit, run_load
from tests.service.servers import free_port, running_process, wait_until, worker_pids

PROMISE = Path(sys.executable).parent / "promise"


def soak(database_url: str, registry: Path, folder: Path, n_requests: int) -> LoadReport:
    """Serve with two workers on `database_url`, send the load, audit the ledger."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        "PROMISE_DATABASE_URL": database_url,
        "PROMISE_REGISTRY": str(registry),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": STAFF_KEY,
        "PROMISE_ADMIN_KEY": ADMIN_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
    }
    command = [
        str(PROMISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    with running_process(command, env, port, folder / "server.log") as (base, process):
        wait_until(lambda: len(worker_pids(process)) == 2, "two workers")
        report = run_load(base, POS_KEY, n_requests, clients=32, seed=7)
    return audit(report, database_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.service.soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="promise-soak-"))
    clean = True
    try:
        registry = trained_registry(folder)
        runs = [("sqlite", f"sqlite:///{folder / 'ledger.db'}")]
        pg_url, why = find_postgres()
        for name, url in runs:
            clean &= _report(name, soak(url, registry, folder / name, args.requests))
        if pg_url:
            with fresh_schema(pg_url) as url:
                clean &= _report("postgresql", soak(url, registry, folder / "pg", args.requests))
        else:
            print(f"postgresql: skipped ({why})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if clean else 1


def _report(name: str, report: LoadReport) -> bool:
    print(f"{name}:")
    for label, value in report.summary().items():
        print(f"  {label:30} {value}")
    return report.is_clean


if __name__ == "__main__":
    sys.exit(main())
