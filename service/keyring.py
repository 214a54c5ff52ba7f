"""The configured API keys, held as sha256 digests only and compared in constant time, following
edits to the keys file without a restart.

Keys come from the environment (`PROMISE_API_KEYS`, `PROMISE_STAFF_KEY`, `PROMISE_ADMIN_KEY`,
`PROMISE_METRICS_KEY`: fixed for the process's life, every store) and from `PROMISE_KEYS_FILE`,
one key per line:

    # ROLE   SHA256-HEX (of the key, never the key)                          NAME   [stores=A,B]
    staff    5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 Ann Lee stores=LDS
    pos      a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3 Till 3 stores=LDS
    admin    2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae Head office

ROLE is pos, staff, admin or metrics; NAME (spaces allowed) is who holds the key: a staff line
is a named account, and the call list, contacts and revisions record that name; `stores=`
limits the key to those stores (without it the key acts for every store).

Every worker re-reads the file when its modification time, size or inode changes, checked at
most once every `CHECK_SECONDS` on a request: adding a line lets that key in, removing a line or
changing its hash (a rotation) refuses the old key at once, and ends the staff sessions made with
it the next time they are seen (`service.sessions`); a changed name or scope applies to open
sessions too. An edit that does not parse (or repeats a digest) keeps the previous keys and logs
`auth.keys_file_invalid` naming the line; an empty (0-byte) or missing file is taken as a write in
progress and keeps them too (to remove every key, leave a comment line). Replace the file in one
step (write a new one, then rename it over the old) so no worker reads it half-written. A
service started with no key at all runs open and stays so until restarted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from service.settings import ApiKey, HashedKey, Role, Settings, read_keys_file

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0

FileStamp = tuple[int, int, int]  # modification time (ns), size, inode
Entries = tuple[tuple[bytes, HashedKey], ...]


class KeyRing:
    """The configured keys, held as sha256 digests only; `identify` compares a presented key's
    digest with all of them, `find` names a session's key (None once it is gone)."""

    def __init__(
        self,
        keys: Sequence[ApiKey | HashedKey],
        keys_file: Path | None = None,
        check_seconds: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`keys` are fixed; the keys in `keys_file` (if any) are read now and again whenever
        the file changes (checked at most every `check_seconds` of `clock`); raises ValueError
        for a bad keys file now."""
        self._fixed = tuple(key.hashed() if isinstance(key, ApiKey) else key for key in keys)
        self._file = keys_file
        self._check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._next_check = clock() + check_seconds
        self._stamp: FileStamp | None = None
        from_file: list[HashedKey] = []
        if keys_file is not None:
            self._stamp = _stamp(keys_file)
            from_file = read_keys_file(keys_file)
        self._entries = _entries([*self._fixed, *from_file])

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keyring of `settings`: the environment's keys and `PROMISE_KEYS_FILE`, followed."""
        return cls([key.hashed() for key in settings.configured_keys()], settings.keys_file)

    def find(self, key_id: str, role: Role) -> HashedKey | None:
        """The configured key with this id and role (a session's key), or None once removed."""
        return next((k for _, k in self._current() if k.key_id == key_id and k.role == role), None)

    def identify(self, presented: str) -> HashedKey | None:
        """The key matching `presented`, or None; the time taken does not depend on which."""
        digest = _digest(presented)
        match = None
        for stored, key in self._current():
            if hmac.compare_digest(digest, stored):
                match = key
        return match

    def is_due(self) -> bool:
        """True when the next look-up checks the keys file first (a stat, perhaps a read): the
        event loop hands that one look-up's `refresh` to a thread."""
        return self._file is not None and self._clock() >= self._next_check

    def refresh(self) -> None:
        """Check the keys file now when due, as the next look-up would."""
        self._current()

    def _current(self) -> Entries:
        if self._file is None or self._clock() < self._next_check:
            return self._entries
        with self._lock:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self._check_seconds
                self._follow(self._file)
        return self._entries

    def _follow(self, path: Path) -> None:
        """Re-read the keys file if it changed; a bad edit keeps the keys as they were."""
        try:
            stamp: FileStamp | None = _stamp(path)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp  # each change is read (and logged) once
        if stamp is None or stamp[1] == 0:
            log.error(
                "auth.keys_file_invalid",
                extra={"path": str(path), "detail": "missing or empty: the keys stay as they were"},
            )
            return
        try:
            from_file = read_keys_file(path)
            entries = _entries([*self._fixed, *from_file])
        except ValueError as err:
            log.error(
                "auth.keys_file_invalid",
                extra={"path": str(path), "detail": f"{err}; the keys stay as they were"},
            )
            return
        self._entries = entries
        log.info("auth.keys_reloaded", extra={"path": str(path), "keys": len(entries)})


def _stamp(path: Path) -> FileStamp:
    status = os.stat(path)
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _entries(keys: Sequence[HashedKey]) -> Entries:
    digests = [key.sha256_hex for key in keys]
    if len(set(digests)) != len(digests):
        raise ValueError("a key's sha256 appears twice: each key must be different")
    return tuple((bytes.fromhex(key.sha256_hex), key) for key in keys)


def _digest(text: str) -> bytes:
    # Equal-length digests: compare_digest then leaks neither content nor length.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
