"""DORA's four keys: performance levels, their thresholds in one place, medians and sparklines.

Thresholds follow the performance clusters of the *2023 Accelerate State of DevOps Report*
(DORA, Google Cloud, https://dora.dev/research/2023/dora-report/), read as cut-offs between
neighbouring clusters:

=========================  ==================  =================  ===================  =========
figure                     elite               high               medium               low
=========================  ==================  =================  ===================  =========
deployment frequency       ≥ 1 per day         ≥ 1 per week       ≥ 1 per month        less
lead time for changes      < 1 day             < 1 week           < 1 month            longer
change failure rate        ≤ 5 %               ≤ 10 %             ≤ 15 %               more
failed deploy recovery     < 1 hour            < 1 day            < 1 week             longer
=========================  ==================  =================  ===================  =========
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
SPARK_WEEKS = 12
_BARS = "▁▂▃▄▅▆▇█"


class Level(StrEnum):
    """A DORA performance level."""

    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# Per figure: the cut-offs between elite, high, medium and low.
_FREQUENCY_PER_DAY = (1.0, 1 / 7, 1 / 30)
_LEAD_TIME_SECONDS = (DAY, WEEK, MONTH)
_FAILURE_RATE = (0.05, 0.10, 0.15)
_RECOVERY_SECONDS = (HOUR, DAY, WEEK)
_LEVELS = (Level.ELITE, Level.HIGH, Level.MEDIUM)


def frequency_level(per_day: float) -> Level:
    """Deployment frequency's level: at least once a day is elite."""
    return _at_least(per_day, _FREQUENCY_PER_DAY)


def lead_time_level(seconds: float) -> Level:
    """Lead time's level, from the median: under a day is elite."""
    return _below(seconds, _LEAD_TIME_SECONDS)


def failure_rate_level(rate: float) -> Level:
    """Change failure rate's level: at most 5 % is elite."""
    return next((lv for lv, cut in zip(_LEVELS, _FAILURE_RATE, strict=True) if rate <= cut), Level.LOW)


def recovery_level(seconds: float) -> Level:
    """Failed deployment recovery time's level, from the median: under an hour is elite."""
    return _below(seconds, _RECOVERY_SECONDS)


def _below(value: float, cuts: Sequence[float]) -> Level:
    return next((lv for lv, cut in zip(_LEVELS, cuts, strict=True) if value < cut), Level.LOW)


def _at_least(value: float, cuts: Sequence[float]) -> Level:
    return next((lv for lv, cut in zip(_LEVELS, cuts, strict=True) if value >= cut), Level.LOW)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile by linear interpolation (0.5 is the median); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled from 0 to the largest; a week without data is a space."""
    top = max((v for v in values if v is not None), default=0.0)
    bars = []
    for value in values:
        if value is None:
            bars.append(" ")
        elif top <= 0:
            bars.append(_BARS[0])
        else:
            bars.append(_BARS[min(len(_BARS) - 1, int(value / top * (len(_BARS) - 1) + 0.5))])
    return "".join(bars)


def duration_text(seconds: float | None) -> str:
    """A duration as people say it: ``45 min``, ``3.2 h``, ``2.5 d``; a dash when there is none."""
    if seconds is None:
        return "–"
    if seconds < HOUR:
        return f"{max(seconds, 0) / 60:.0f} min"
    if seconds < DAY:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / DAY:.1f} d"


@dataclass(frozen=True)
class Figure:
    """One key: its value (None when the history holds nothing to measure), level and 12-week trend."""

    name: str
    value: float | None
    text: str
    level: Level | None
    trend: str
