"""Manifest signatures: HMAC-SHA256 over a manifest's canonical JSON, with a key from outside.

The key (`PROMISE_BUNDLE_SIGNING_KEY`, read by the entry points, never stored in the registry)
proves a bundle's origin where the manifest's hashes only prove its integrity: whoever can write
into the registry can update a hash, but cannot sign without the key. The signature covers the
manifest as parsed (canonical: sorted keys, no spaces, ASCII), so re-indenting the file keeps it
valid and changing any value (a file's hash, the version, the policy) breaks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: `document` as sorted, compact, ASCII JSON."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True
    ).encode("ascii")


def sign(document: Mapping[str, Any], key: str) -> str:
    """The hex HMAC-SHA256 of `document`'s canonical JSON under `key`."""
    return hmac.new(key.encode("utf-8"), canonical_json(document), hashlib.sha256).hexdigest()


def is_signed_by(document: Mapping[str, Any], signature: str, key: str) -> bool:
    """Whether `signature` is `document`'s under `key` (compared in constant time)."""
    return hmac.compare_digest(sign(document, key), signature.strip())
