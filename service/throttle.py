"""Failed authentications counted per client address; too many in a window and it is refused.

Each address gets a fixed window that opens with its first failed key (an unknown API key,
a sign-in form that is not a staff key) and lasts `window_seconds`. Once `allowed` failures
fall in one window, every authentication attempt from that address is refused (429, with
Retry-After = the seconds until the window ends), a correct key too: otherwise a guesser
would still learn which guess was right. The window then closes and the count starts again.

The address is the direct peer (the ASGI client host), never `X-Forwarded-For`: a header
anyone can write would let a guesser pick a fresh address per request. Behind a proxy every
client shares the proxy's address, so its failures add up together. IPv6 addresses count per
/64 (one host usually holds a whole /64). The counts live in each worker process: N workers
allow N times as many failures. At most `max_addresses` addresses are tracked; a new one
beyond that evicts the address whose window opened first.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_ADDRESSES = 65_536
NO_ADDRESS = "local"  # a Unix socket has no peer address


@dataclass(slots=True)
class _Window:
    """One address's failures since `opened_at` (monotonic seconds); `logged` once refused."""

    opened_at: float
    failures: int = 0
    logged: bool = False


class AuthThrottle:
    """Counts failed authentications per client address (thread-safe, bounded)."""

    def __init__(
        self,
        allowed: int,
        window_seconds: float,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def retry_after(self, host: str | None) -> int | None:
        """Seconds until `host` may try again (at least 1), or None when it may try now.

        The first refusal in a window is logged as `auth.throttled`."""
        address = client_address(host)
        with self._lock:
            window = self._current(address)
            if window is None or window.failures < self.allowed:
                return None
            seconds = window.opened_at + self.window_seconds - self._clock()
            first = not window.logged
            window.logged = True
        if first:
            log.warning(
                "auth.throttled",
                extra={
                    "client": address,
                    "failures": self.allowed,
                    "window_seconds": self.window_seconds,
                },
            )
        return max(1, math.ceil(seconds))

    def failed(self, host: str | None) -> None:
        """Count one failed authentication from `host`."""
        address = client_address(host)
        with self._lock:
            window = self._current(address)
            if window is None:
                window = self._windows[address] = _Window(opened_at=self._clock())
                while len(self._windows) > self.max_addresses:
                    self._windows.popitem(last=False)
            window.failures += 1

    def tracked(self) -> int:
        """How many addresses are being counted now."""
        with self._lock:
            return len(self._windows)

    def _current(self, address: str) -> _Window | None:
        """The address's open window (an ended one is dropped); the lock is held."""
        window = self._windows.get(address)
        if window is not None and self._clock() - window.opened_at >= self.window_seconds:
            del self._windows[address]
            return None
        return window


def client_address(host: str | None) -> str:
    """The address failures are counted under: the host itself, an IPv6 one's /64."""
    if not host:
        return NO_ADDRESS
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]  # not an address (a test client's name): count it as it is
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
