"""DORA levels at their cut-offs, percentiles and sparklines, as data."""

from __future__ import annotations

import pytest

from bot.dora import (
    DAY,
    HOUR,
    WEEK,
    Level,
    duration_text,
    failure_rate_level,
    frequency_level,
    lead_time_level,
    percentile,
    recovery_level,
    sparkline,
)


@pytest.mark.parametrize(
    ("per_day", "level"),
    [(3.0, Level.ELITE), (1.0, Level.ELITE), (0.99, Level.HIGH), (1 / 7, Level.HIGH),
     (0.1, Level.MEDIUM), (1 / 30, Level.MEDIUM), (0.03, Level.LOW), (0.0, Level.LOW)],
)
def test_frequency_levels(per_day: float, level: Level) -> None:
    assert frequency_level(per_day) is level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(HOUR, Level.ELITE), (DAY - 1, Level.ELITE), (DAY, Level.HIGH), (WEEK, Level.MEDIUM),
     (40 * DAY, Level.LOW)],
)
def test_lead_time_levels(seconds: float, level: Level) -> None:
    assert lead_time_level(seconds) is level


@pytest.mark.parametrize(
    ("rate", "level"),
    [(0.0, Level.ELITE), (0.05, Level.ELITE), (0.06, Level.HIGH), (0.15, Level.MEDIUM),
     (0.16, Level.LOW), (1.0, Level.LOW)],
)
def test_failure_rate_levels(rate: float, level: Level) -> None:
    assert failure_rate_level(rate) is level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(59 * 60, Level.ELITE), (HOUR, Level.HIGH), (DAY, Level.MEDIUM), (WEEK, Level.LOW)],
)
def test_recovery_levels(seconds: float, level: Level) -> None:
    assert recovery_level(seconds) is level


def test_percentile_interpolates_and_is_none_when_empty() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 3.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(1, 11)], 0.9) == pytest.approx(9.1)


def test_sparkline_scales_to_the_largest_and_marks_empty_weeks() -> None:
    assert sparkline([0.0, 1.0, 2.0, 4.0]) == "▁▃▅█"
    assert sparkline([None, 2.0, None]) == " █ "
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([]) == ""


def test_duration_text() -> None:
    assert duration_text(None) == "–"
    assert duration_text(45 * 60) == "45 min"
    assert duration_text(3.2 * HOUR) == "3.2 h"
    assert duration_text(2.5 * DAY) == "2.5 d"
