"""Promise units: the grain a promise is rounded up to."""

from __future__ import annotations

from typing import Literal

Unit = Literal["day", "hour", "minute"]

HOURS_PER_UNIT: dict[str, float] = {"day": 24.0, "hour": 1.0, "minute": 1.0 / 60.0}
SECONDS_PER_UNIT: dict[str, int] = {"day": 86_400, "hour": 3_600, "minute": 60}
