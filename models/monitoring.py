"""Drift alarms: is a segment's live late rate really outside the band around its target?

The counts come from the promises decided in a recent window: each promise is decided at its
deadline at the latest, kept if the order was fulfilled by then, broken if it was fulfilled
later or is still open (the service counts them in its ledger, `service.ledger.stats`).

The alarm (`check_drift`) compares a Wilson interval of that late rate with the target band
[target / factor, target * factor]: it fires only when the whole interval lies outside the band,
so a small segment's bad week is read as noise until the evidence is there. Above the band
promises are breaking; below it they are longer than they need to be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

DEFAULT_BAND_FACTOR = 2.0
DEFAULT_CONFIDENCE = 0.95
DEFAULT_WINDOW_DAYS = 28.0
DEFAULT_MIN_DECIDED = 20

DriftStatus = Literal["too few decided", "within band", "above band", "below band"]


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One segment's check: counts, the interval, the band and what they mean."""

    decided: int
    late: int
    late_rate: float | None
    interval: tuple[float, float] | None
    band: tuple[float, float]
    status: DriftStatus

    @property
    def alarm(self) -> bool:
        return self.status in ("above band", "below band")

    def advice(self) -> str:
        """What staff or a data scientist should make of it, in a sentence."""
        low, high = self.band
        if self.status == "above band":
            assert self.interval is not None
            return (
                f"Promises are breaking: at least {self.interval[0]:.1%} are late, above the "
                f"{high:.1%} the target allows; retrain, or let the adaptive policy catch up."
            )
        if self.status == "below band":
            assert self.interval is not None
            return (
                f"Promises could be shorter: at most {self.interval[1]:.1%} are late, below "
                f"{low:.1%}; customers wait longer than the target needs."
            )
        if self.status == "too few decided":
            return f"Too few decided promises ({self.decided}) to tell yet."
        return "Within the target band."


def target_band(target: float, factor: float = DEFAULT_BAND_FACTOR) -> tuple[float, float]:
    """The late rates a segment may show without an alarm: [target / factor, target * factor]."""
    if factor < 1.0:
        raise ValueError("the band factor must be at least 1")
    return target / factor, min(1.0, target * factor)


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval of a proportion (n > 0), clipped to [0, 1]."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def check_drift(
    late: int,
    decided: int,
    target: float,
    *,
    band_factor: float = DEFAULT_BAND_FACTOR,
    confidence: float = DEFAULT_CONFIDENCE,
    min_decided: int = DEFAULT_MIN_DECIDED,
) -> DriftCheck:
    """The alarm for `late` broken promises among `decided` ones against `target`."""
    band = target_band(target, band_factor)
    if decided < max(1, min_decided):
        rate = late / decided if decided else None
        return DriftCheck(decided, late, rate, None, band, "too few decided")
    interval = wilson_interval(late, decided, confidence)
    status: DriftStatus = "within band"
    if interval[0] > band[1]:
        status = "above band"
    elif interval[1] < band[0]:
        status = "below band"
    return DriftCheck(decided, late, late / decided, interval, band, status)
