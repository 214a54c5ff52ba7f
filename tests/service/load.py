"""Concurrent quote load with retries against a real server, and the ledger audit after it.

`run_load` sends quote requests from many threads; a share of them repeat an earlier request's
`Idempotency-Key` and body (some while the first is still in flight). A request that gets no
answer (a worker killed under it) or a 503 is retried with the same key, as a careful client
would. `audit` then counts, in the ledger, the answered quotes it lacks (lost) and the keys it
holds more than once (duplicated), and any request stored without its quote (half-written).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from sqlalchemy import func, select

from service.ledger import Ledger
from service.tables import quote_requests, quotes

STORES = ("MAN", "BHM", "LDS", "BRS")
LENSES = ("single_vision", "progressive", "bifocal")
# How far back a retry reaches: recent keys are often still in flight.
RECENT_KEYS = 48
MAX_ATTEMPTS = 20


@dataclass
class LoadReport:
    """What a load run sent and saw, and what the ledger audit found."""

    requests_sent: int = 0
    server_errors: int = 0  # 5xx answers other than 503 (503 is retried, and counted apart)
    unavailable: int = 0
    no_answer: int = 0  # connection dropped (a killed worker): retried with the same key
    rejected: int = 0  # 4xx answers: the load sends only valid requests, so none expected
    keys: int = 0
    retries: int = 0
    retries_differing: int = 0
    unanswered_keys: int = 0
    quotes_lost: int = 0
    quotes_duplicated: int = 0
    half_written: int = 0
    answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict[str, int]:
        return {
            "requests sent": self.requests_sent,
            "5xx seen (not 503)": self.server_errors,
            "503 seen (retried)": self.unavailable,
            "no answer (retried)": self.no_answer,
            "4xx seen": self.rejected,
            "idempotency keys": self.keys,
            "retries": self.retries,
            "retries answered differently": self.retries_differing,
            "keys never answered": self.unanswered_keys,
            "quotes lost": self.quotes_lost,
            "quotes duplicated": self.quotes_duplicated,
            "half-written requests": self.half_written,
        }

    @property
    def is_clean(self) -> bool:
        return not (
            self.server_errors
            or self.rejected
            or self.retries_differing
            or self.unanswered_keys
            or self.quotes_lost
            or self.quotes_duplicated
            or self.half_written
        )


def _body(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "order": {
            "store_id": rng.choice(STORES),
            "lens_type": rng.choice(LENSES),
            "coating": "none",
            "frame_in_stock": rng.randint(0, 1),
            "n_items": rng.randint(1, 2),
            "sphere_power": round(rng.uniform(-3.0, 3.0), 2),
        },
        "reference": f"load-{i}",
    }


def plan(n_requests: int, retry_share: float, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(Idempotency-Key, body) per request; a retry repeats a recent key with its body."""
    rng = random.Random(seed)
    tasks: list[tuple[str, dict[str, Any]]] = []
    issued: list[tuple[str, dict[str, Any]]] = []
    for i in range(n_requests):
        if issued and rng.random() < retry_share:
            tasks.append(rng.choice(issued[-RECENT_KEYS:]))
            continue
        task = (f"load-{seed}-{i}", _body(rng, i))
        issued.append(task)
        tasks.append(task)
    return tasks


def run_load(
    base: str,
    api_key: str,
    n_requests: int,
    clients: int = 32,
    retry_share: float = 0.3,
    seed: int = 0,
    after: tuple[int, Callable[[], None]] | None = None,
) -> LoadReport:
    """Send `n_requests` quote requests from `clients` threads; `after=(n, action)` runs
    `action` (e.g. kill a worker) once `n` requests have been answered."""
    report = LoadReport()
    lock = threading.Lock()
    answered = 0
    tasks = plan(n_requests, retry_share, seed)
    report.keys = len({key for key, _ in tasks})
    report.retries = n_requests - report.keys
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    with httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=120.0,
        limits=limits,
    ) as client:

        def send(task: tuple[str, dict[str, Any]]) -> None:
            nonlocal answered
            key, body = task
            for _attempt in range(MAX_ATTEMPTS):
                with lock:
                    report.requests_sent += 1
                try:
                    response = client.post(
                        "/v1/quotes", json=body, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    with lock:
                        report.no_answer += 1
                    time.sleep(0.2)
                    continue
                if response.status_code == 503:
                    with lock:
                        report.unavailable += 1
                    time.sleep(0.2)
                    continue
                with lock:
                    if response.status_code >= 500:
                        report.server_errors += 1
                    elif response.status_code >= 400:
                        report.rejected += 1
                    elif response.status_code == 201:
                        report.answers[key].append(response.text)
                    answered += 1
                    fire = after is not None and answered == after[0]
                if fire and after is not None:
                    after[1]()
                return

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, tasks))
    return report


def audit(report: LoadReport, database_url: str) -> LoadReport:
    """Fill in the ledger's side: lost, duplicated and half-written quotes."""
    ledger = Ledger.connect(database_url)
    try:
        with ledger.engine.connect() as conn:
            per_key = conn.execute(
                select(quote_requests.c.idempotency_key, func.count(quotes.c.id))
                .join(quotes, quotes.c.request_id == quote_requests.c.id, isouter=True)
                .group_by(quote_requests.c.id, quote_requests.c.idempotency_key)
            ).all()
            stored_ids = set(conn.execute(select(quotes.c.id)).scalars())
    finally:
        ledger.close()
    rows_per_key: dict[str, int] = defaultdict(int)
    for key, n_quotes in per_key:
        rows_per_key[str(key)] += 1
        if n_quotes != 1:
            report.half_written += int(n_quotes == 0)
            report.quotes_duplicated += max(0, int(n_quotes) - 1)
    report.quotes_duplicated += sum(n - 1 for n in rows_per_key.values() if n > 1)
    report.unanswered_keys = report.keys - len(report.answers)
    for texts in report.answers.values():
        if len(set(texts)) > 1:
            report.retries_differing += 1
        quote_id = json.loads(texts[0])["quote_id"]
        if quote_id not in stored_ids:
            report.quotes_lost += 1
    return report
