"""Where a serving worker's CPU goes under the bench's HTTP load, by part of the request.

    pip install py-spy   # a measuring tool only: not a dependency of the project
    python -m bench.profile_http --spec SPEC.toml --registry DIR [--database-url URL]

Starts the service as `python -m bench.run` does (uvicorn, 2 workers, JSON logs, open mode, a
fresh SQLite ledger unless a URL is given), warms it, then loads it from 32 keep-alive clients
while `py-spy record --gil` samples one worker: only the thread holding the GIL is sampled, so
the shares are of the Python work (an fsync or a wait on a lock is not counted). Each sample
goes to the innermost frame that names a part (`PARTS`); the table prints each part's share
and, scaled by the workers' CPU per request (`bench.processes.cpu_seconds`), its milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.load import run_load
from bench.processes import cpu_seconds, free_port, server, wait_ready, worker_pids

# (part, frame substrings): a sample belongs to the innermost frame matching any part.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (JSON lines)", ("logging/__init__", "service/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("ledger SQL (SQLAlchemy + driver)", ("sqlalchemy/", "sqlite3", "psycopg")),
    ("group commit (queue, lock)", ("group_commit.py", "service/database.py", "health.py")),
    ("model quote (models/)", ("(models/",)),
    ("body: JSON + validation", ("StrictJsonRequest.json", "request_body_to_args",
                                 "service/schemas.py", "Request.body")),
    ("desk (fingerprint, ids, rows)", ("service/desk.py", "service/control.py",
                                       "service/ledger/", "service/bundles.py")),
    ("response: validation + JSON", ("serialize_response", "jsonable_encoder", "service/api.py",
                                     "render (starlette/responses")),
    ("thread hops (threadpool)", ("run_in_threadpool", "to_thread.py", "WorkerThread",
                                  "queue.py", "call_soon_threadsafe", "threading.py")),
    ("dependency solving", ("solve_dependencies", "service/deps.py", "fastapi/security")),
    ("Promise middlewares", ("service/auth.py", "service/metrics.py", "service/limits.py",
                             "service/strict_json.py", "anyio/")),
    ("FastAPI/Starlette", ("fastapi/", "starlette/")),
    ("uvicorn + h11 + event loop", ("uvicorn/", "h11/", "asyncio/", "selectors.py")),
)  # fmt: skip


def part_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                return part
    return "other"


def shares(raw: Path) -> Counter[str]:
    """Samples per part in a `py-spy record -f raw` file (one `stack count` a line)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and "always_pong" not in stack:  # uvicorn's health check thread
            counts[part_of(re.sub(r":\d+\)", ")", stack))] += int(n)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_http", description=__doc__)
    parser.add_argument("--registry", type=Path, required=True, help="a registry with a "
                        "promoted bundle (e.g. the one `python -m bench.run` trains)")  # fmt: skip
    parser.add_argument("--spec", type=Path, required=True, help="the bundle's dataset spec: "
                        "the first 2,000 orders of its CSV are sent")  # fmt: skip
    parser.add_argument("--database-url", default="")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--raw", type=Path, default=None, help="also keep py-spy's raw "
                        "samples here (one `stack count` a line) to read further")  # fmt: skip
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        parser.error("py-spy is not installed: pip install py-spy (for measuring only)")
    bodies = _bodies(args.spec)
    with tempfile.TemporaryDirectory(prefix="promise-profile-") as scratch:
        work = Path(scratch)
        (work / "metrics").mkdir()
        log_config = work / "log-config.json"
        from service.logs import logging_config

        log_config.write_text(json.dumps(logging_config("INFO")), encoding="utf-8")
        env = {**os.environ, "PROMISE_REGISTRY": str(args.registry),
               "PROMISE_DATABASE_URL": args.database_url or f"sqlite:///{work / 'ledger.db'}",
               "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}  # fmt: skip
        env.pop("PROMISE_API_KEYS", None)
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                   "--timeout-worker-healthcheck", "120", "--log-level", "warning",
                   "--log-config", str(log_config)]  # fmt: skip
        with server(command, env, work / "service.log") as process:
            wait_ready(port, "/readyz", process, work / "service.log")
            run_load(port, "/v1/quotes", bodies, 32, 400, 30.0)
            worker = max(worker_pids(process.pid))
            raw = work / "profile.txt"
            sampler = subprocess.Popen(
                [spy, "record", "--gil", "--nonblocking", "-r", "400", "-f", "raw",
                 "-d", str(int(args.seconds)), "-p", str(worker), "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            before = cpu_seconds(process.pid)
            result = run_load(port, "/v1/quotes", bodies, 32, 1_000_000, args.seconds)
            cpu_ms = (cpu_seconds(process.pid) - before) * 1000.0 / max(1, result.ok)
            sampler.wait(timeout=args.seconds + 60)
        counts = shares(raw)
        if args.raw is not None:
            shutil.copy(raw, args.raw)
    total = sum(counts.values()) or 1
    out = [f"{result.per_second:.0f} quotes/s, {cpu_ms:.2f} ms of CPU per quote, load "
           f"average {os.getloadavg()[0]:.1f}; {total} samples of one worker", ""]  # fmt: skip
    out += ["| part | share | ms per quote |", "|---|---|---|"]
    for part, n in counts.most_common():
        out.append(f"| {part} | {100.0 * n / total:.1f}% | {cpu_ms * n / total:.2f} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _bodies(spec_path: Path) -> list[bytes]:
    """Request bodies from the first 2,000 orders of the spec's CSV, its features only."""
    import pandas as pd

    from training.spec import load_spec

    spec = load_spec(spec_path)
    columns = [*spec.features.categorical, *spec.features.numeric]
    frame = pd.read_csv(spec_path.parent / spec.dataset.path, nrows=2_000, usecols=columns)
    return [json.dumps({"order": row}).encode() for row in frame.to_dict("records")]


if __name__ == "__main__":
    raise SystemExit(main())
