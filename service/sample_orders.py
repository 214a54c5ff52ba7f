"""A few sample open orders for a fresh install, so the call list can be seen working.

`seed_sample_orders(base_url, api_key)` waits until the service answers `/readyz`, then quotes
eight orders of the optical-shop sample (data/optical.toml) through the normal API
(`service.client`), placed one to six days ago at 10:00 in the shop's zone, within the API's
seven-day back-dating limit. On the sample model the oldest orders of the fast stores are past
their promise by now, the middle-aged ones are on the call list, and the newest (slow) ones are
on track. Each is marked as a sample: customer "Sample customer N" (a phone number in a range
kept for drama, 01632 960xxx), reference "SAMPLE-N".

Every order's `Idempotency-Key` is fixed for the order and the shop's day, and so is its
`ordered_at`: running it twice the same day (`make run` twice) gets the quotes already stored
back, never a second set.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from service.client import PromiseClient

__all__ = ["SAMPLE_ORDERS", "SampleOrder", "seed_sample_orders"]

READY_LIMIT_SECONDS = 120.0
PLACED_AT = dt.time(10, 0)  # shop time: before any cut-off, inside opening hours


@dataclass(frozen=True, slots=True)
class SampleOrder:
    """One sample order: placed `days_ago` shop days before today at `PLACED_AT`."""

    days_ago: int
    order: Mapping[str, Any]


def _glasses(store: str, lens: str = "single_vision", coating: str = "none") -> dict[str, Any]:
    return {
        "store_id": store,
        "lens_type": lens,
        "coating": coating,
        "frame_in_stock": 1,
        "n_items": 1,
        "sphere_power": 1.5,
    }


# The sample model's fast stores promise simple glasses in about a week: placed six days ago
# they are past their promise, four or five days ago at risk of missing it. MAN's lab is the
# slow one, and a fresh varifocal order is on track.
SAMPLE_ORDERS: tuple[SampleOrder, ...] = (
    SampleOrder(6, _glasses("LDN-CAM")),
    SampleOrder(6, _glasses("BHM")),
    SampleOrder(6, _glasses("LDS", coating="anti_reflective")),
    SampleOrder(5, _glasses("LDN-OXF")),
    SampleOrder(5, _glasses("BRS")),
    SampleOrder(4, _glasses("LIV")),
    SampleOrder(4, _glasses("NCL")),
    SampleOrder(1, _glasses("MAN", lens="progressive", coating="anti_reflective")),
)


def seed_sample_orders(
    base_url: str,
    api_key: str | None = None,
    *,
    orders: Sequence[SampleOrder] = SAMPLE_ORDERS,
    ready_limit_seconds: float = READY_LIMIT_SECONDS,
) -> int:
    """Quote the sample orders through the API at `base_url` (with `api_key`, a point-of-sale
    key, when the service has keys) once `/readyz` answers 200; returns how many sample quotes
    the service holds for today (stored now, or by an earlier run today).

    Raises `TimeoutError` when the service is not ready within `ready_limit_seconds`,
    `ValueError` when the served model does not take the sample's order fields, and the
    client's `PromiseApiError` for an answer it refuses (a key without the sample's stores)."""
    _wait_ready(base_url, ready_limit_seconds)
    with PromiseClient(base_url, api_key) as client:
        model = client.model()
        _check_fields(model, orders)
        zone = ZoneInfo(str(model["time_zone"]))
        today = dt.datetime.now(zone).date()
        stored = 0
        for n, sample in enumerate(orders, start=1):
            day = today - dt.timedelta(days=sample.days_ago)
            placed = dt.datetime.combine(day, PLACED_AT, tzinfo=zone)
            body = {
                "order": dict(sample.order),
                "ordered_at": placed.isoformat(),
                "reference": f"SAMPLE-{n}",
                "customer": {"name": f"Sample customer {n}", "phone": f"01632 960{n:03d}"},
            }
            quotes = client.create_quotes([body], idempotency_key=f"sample-{today}-{n}")
            stored += len(quotes)
    return stored


def _wait_ready(base_url: str, limit_seconds: float) -> None:
    deadline = time.monotonic() + limit_seconds
    while True:
        try:
            if httpx.get(f"{base_url.rstrip('/')}/readyz", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/readyz did not answer 200 within {limit_seconds:g} s")
        time.sleep(0.5)


def _check_fields(model: Mapping[str, Any], orders: Sequence[SampleOrder]) -> None:
    fields = set(model.get("order_fields") or ())
    wanted = {name for sample in orders for name in sample.order}
    if fields != wanted:
        raise ValueError(
            "the served model does not take the optical sample's orders "
            f"(it takes {', '.join(sorted(fields)) or 'nothing'}; the sample sends "
            f"{', '.join(sorted(wanted))}): seed sample orders only for the sample model"
        )
