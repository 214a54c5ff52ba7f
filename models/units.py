"""Units of time: the grain a promise is rounded up to, and how an instant is written."""

from __future__ import annotations

import datetime as dt
from typing import Literal

Unit = Literal["day", "hour", "minute"]

HOURS_PER_UNIT: dict[str, float] = {"day": 24.0, "hour": 1.0, "minute": 1.0 / 60.0}
SECONDS_PER_UNIT: dict[str, int] = {"day": 86_400, "hour": 3_600, "minute": 60}


def iso_utc(seconds: float) -> str:
    """An instant (epoch seconds) as ISO 8601 text in UTC with a "Z": "2025-01-20T00:00:00Z";
    every instant the manifest and the reports write."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat().replace("+00:00", "Z")
