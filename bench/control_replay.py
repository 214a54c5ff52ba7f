"""How long a worker takes to replay the adaptive policy's control state from its ledger.

    .venv/bin/python -m bench.control_replay [--quotes 10000] [--per-day 200]
                                            [--database-url URL] [--repeat 5]

Trains the sample's adaptive bundle, fills a fresh ledger (a SQLite file, or a new schema of
the PostgreSQL database given, dropped afterwards) with `--quotes` adaptive quotes given over
the last `--quotes / --per-day` days (the sample's stores, nine in ten fulfilled in time, the
rest late or still open), then times the replay of `service.control.control_state` at now: the
two ledger reads, and the fold and nowcast over what they return. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from models.buffers import AdaptiveBuffers
from models.quoting import Promise
from models.registry import Registry
from service.control import (
    ADAPTIVE,
    NOWCAST_LOOKBACK_WINDOWS,
    learning_limit,
    replay,
    widest_window_hours,
)
from service.ledger import Ledger
from tests.service.conftest import fresh_schema
from tests.service.made_up import promise_due, store_promises
from training.pipeline import train_bundle
from training.sample_data import write_sample_data

ROOT = Path(__file__).resolve().parents[1]
STORES = ("MAN", "LDS", "BRS", "NCL", "LIV", "BHM", "LDN-CAM", "LDN-OXF")
UTC = dt.UTC


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_replay")
    parser.add_argument("--quotes", type=int, default=10_000)
    parser.add_argument("--per-day", type=float, default=200.0)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in /tmp")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, _fresh_ledger(args.database_url, folder) as url:
        work = Path(folder)
        engine = _adaptive_engine(work)
        policy = engine.buffer_rule
        assert isinstance(policy, AdaptiveBuffers)
        ledger = Ledger.connect(url)
        ledger.migrate()
        now = dt.datetime.now(UTC).replace(microsecond=0)
        _fill(ledger, args.quotes, args.per_day, now)
        widest = dt.timedelta(hours=widest_window_hours(policy))
        limit = learning_limit(policy)
        reads, folds = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            decided = ledger.stats.decided_promises(ADAPTIVE, engine.segments, now, limit)
            in_progress = ledger.stats.promises_in_progress(
                ADAPTIVE,
                engine.segments,
                now,
                given_since=now - NOWCAST_LOOKBACK_WINDOWS * widest,
                fulfilled_since=now - widest,
            )
            read = time.perf_counter()
            replay(policy, engine.target_late_rate, decided, in_progress, now.timestamp())
            reads.append(read - started)
            folds.append(time.perf_counter() - read)
        ledger.close()
    total = [r + f for r, f in zip(reads, folds, strict=True)]
    say(f"ledger: {ledger.engine.dialect.name}, {args.quotes:,} adaptive quotes")
    say(f"learning limit: {limit:,} promises; read {decided.size:,} decided, "
        f"{in_progress.size:,} in progress")  # fmt: skip
    say(f"ledger reads: median {statistics.median(reads) * 1e3:.1f} ms")
    say(f"fold + nowcast: median {statistics.median(folds) * 1e3:.1f} ms")
    say(f"replay: median {statistics.median(total) * 1e3:.1f} ms over {args.repeat} runs")
    return 0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


@contextmanager
def _fresh_ledger(database_url: str | None, folder: str) -> Iterator[str]:
    """A SQLite file in `folder`, or a new schema of the PostgreSQL database, dropped after."""
    if database_url is None:
        yield f"sqlite:///{Path(folder) / 'ledger.db'}"
        return
    with fresh_schema(database_url) as url:
        yield url


def _adaptive_engine(work: Path) -> Any:
    write_sample_data(work, n_orders=8000, seed=3)
    shutil.copy(ROOT / "data" / "optical.toml", work / "optical.toml")
    registry = Registry(work / "bundles")
    with threadpool_limits(1):
        manifest = train_bundle(
            work / "optical.toml", registry, now=dt.datetime.now(UTC), policy=ADAPTIVE
        )
    return registry.load(manifest.version).engine


def _fill(ledger: Ledger, n: int, per_day: float, now: dt.datetime) -> None:
    """`n` adaptive quotes given at `per_day` until now, with their outcomes (all recorded by
    now, as the replay at now reads them)."""
    rng = random.Random(7)
    span = dt.timedelta(days=n / per_day)
    promises: list[Promise] = []
    ready_at: list[dt.datetime | None] = []
    for i in range(n):
        given = now - span + span * (i / n)
        expected = rng.uniform(48.0, 200.0)
        deadline = given + dt.timedelta(hours=expected + rng.uniform(24.0, 150.0))
        store = STORES[i % len(STORES)]
        promises.append(promise_due(given, expected, deadline, policy=ADAPTIVE, segment=store))
        fate = rng.random()
        took = dt.timedelta(hours=expected * rng.uniform(0.7, 1.3))
        ready = given + (took if fate < 0.9 else (deadline - given) + took)
        ready_at.append(ready if fate < 0.97 and ready <= now else None)
    features = [
        {"store_id": p.segment, "lens_type": "single_vision", "coating": "none"} for p in promises
    ]
    quotes = store_promises(ledger, promises, features)
    done = [(q.quote_id, at) for q, at in zip(quotes, ready_at, strict=True) if at is not None]
    ledger.outcomes.record_many(done, now, "bench")


if __name__ == "__main__":
    sys.exit(main())
