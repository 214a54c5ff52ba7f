"""A small HTTP/1.1 load generator: N concurrent keep-alive clients on 127.0.0.1 only.

Each client sends the next request as soon as its previous answer is read, until the request
or the time budget runs out, whichever first. Written on asyncio streams rather than an HTTP
client library so that on a 2-core machine the generator takes as little CPU as possible from
the servers it measures (httpx costs several times more per request).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured: answers by status, elapsed seconds, latencies (seconds)."""

    statuses: dict[int, int]
    elapsed_s: float
    latencies_s: list[float]

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def per_second(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies_s), q) * 1000.0)


@dataclass(frozen=True)
class LoadPlan:
    """`bodies` (cycled) to POST to http://127.0.0.1:`port``path` from `clients` connections,
    until `max_requests` are answered or `max_seconds` have passed."""

    port: int
    path: str
    bodies: Sequence[bytes]
    clients: int
    max_requests: int
    max_seconds: float


def run_load(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    clients: int,
    max_requests: int,
    max_seconds: float,
) -> LoadResult:
    """POST `bodies` (cycled) to http://127.0.0.1:`port``path` from `clients` connections."""
    return asyncio.run(_run(LoadPlan(port, path, bodies, clients, max_requests, max_seconds)))


async def _run(plan: LoadPlan) -> LoadResult:
    port = plan.port
    requests = [
        (
            f"POST {plan.path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        + body
        for body in plan.bodies
    ]
    numbers = itertools.count()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + plan.max_seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while True:
                i = next(numbers)
                if i >= plan.max_requests or time.perf_counter() >= deadline:
                    return
                sent = time.perf_counter()
                writer.write(requests[i % len(requests)])
                await writer.drain()
                status, keep_alive = await _read_response(reader)
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1
                if not keep_alive:
                    writer.close()
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(plan.clients)))
    return LoadResult(dict(statuses), time.perf_counter() - start, latencies)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the connection stays open) after reading one whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"
