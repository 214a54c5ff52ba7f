"""The configured API keys, held as sha256 digests only and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from service.settings import ApiKey, HashedKey, Role


class KeyRing:
    """The configured keys, held as sha256 digests only; `identify` compares a presented key's
    digest with all of them."""

    def __init__(self, keys: Sequence[ApiKey | HashedKey]) -> None:
        hashed = [key.hashed() if isinstance(key, ApiKey) else key for key in keys]
        self._keys = [(bytes.fromhex(key.sha256_hex), key) for key in hashed]

    def find(self, key_id: str, role: Role) -> HashedKey | None:
        """The configured key with this id and role (a session's key), or None once removed."""
        return next((k for _, k in self._keys if k.key_id == key_id and k.role == role), None)

    def identify(self, presented: str) -> HashedKey | None:
        """The key matching `presented`, or None; the time taken does not depend on which."""
        digest = _digest(presented)
        match = None
        for stored, key in self._keys:
            if hmac.compare_digest(digest, stored):
                match = key
        return match


def _digest(text: str) -> bytes:
    # Equal-length digests: compare_digest then leaks neither content nor length.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
