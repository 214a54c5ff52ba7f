"""What identifies a quoting request before it is quoted: the request as validated
(`payload_of`), its fingerprint (equal for a faithful retry, so a reused Idempotency-Key with
another body is told apart), and the 403 for an order of a store the key may not act for."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from service.auth import Caller
from service.errors import AccessDenied
from service.ledger.records import RequestKind
from service.schemas import CheckedOrder, QuoteRequest

Kind = Literal["single", "batch", "web"]


def fingerprint(kind: RequestKind, payload: Any) -> str:
    """The sha256 of a request's canonical JSON: equal for a faithful retry."""
    text = json.dumps(
        {"kind": kind, "body": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def payload_of(
    requests: Sequence[QuoteRequest], checked: Sequence[CheckedOrder], kind: Kind
) -> Any:
    """The request that asked for these quotes, as validated: each order's features as the
    model reads them (numbers as floats, categories as labels), its `ordered_at` and reference
    as sent (a retry without `ordered_at` is the same request); a batch's in a list."""
    bodies = [
        {
            "order": dict(item.order.features),
            "ordered_at": request.ordered_at,
            "reference": request.reference,
        }
        for request, item in zip(requests, checked, strict=True)
    ]
    return {"orders": bodies} if kind == "batch" else bodies[0]


def out_of_scope(caller: Caller, store: str | None, store_field: str) -> AccessDenied:
    """The 403 for quoting an order of a store the caller may not act for."""
    allowed = ", ".join(sorted(caller.stores or ()))
    if store is None:
        return AccessDenied(
            403, f"the order names no store ({store_field}); this key acts for {allowed} only"
        )
    return AccessDenied(
        403, f"this key may not quote for store {store!r}; it acts for {allowed} only"
    )
