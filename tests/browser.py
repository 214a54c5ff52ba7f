"""Headless chromium for browser tests: Debian's package, driven by Playwright.

A tool's own browser download fails on these machines, so tests launch /usr/bin/chromium with
the flags that keep it off the (closed) network, and skip with a clear message without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is absent: browser tests skipped (apt-get install chromium)",
    ),
]

Test = TypeVar("Test", bound=Callable[..., object])


def needs_chromium(test: Test) -> Test:
    """Mark a test as a browser test that skips where chromium is absent."""
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test
