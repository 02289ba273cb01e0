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
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.models import DoraDay, DoraHistory, Incident, LeadSample

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
SPARK_WEEKS = 12
DEFAULT_DAYS = 30
MAX_DAYS = 3650
JSON_VERSION = 1
_LISTED_TARGETS = 4  # more environments than this: the overall title counts them
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
    """One key over the window: its value (None when there is nothing to measure), its level, the
    numbers behind it, and one value per week of the last 12 (oldest first) for its trend."""

    key: str
    name: str
    value: float | None
    text: str
    level: Level | None
    weekly: tuple[float | None, ...]
    numbers: Mapping[str, float | int | None]

    @property
    def trend(self) -> str:
        """The weekly values as a text sparkline."""
        return sparkline(self.weekly)


@dataclass(frozen=True)
class Scope:
    """The four figures of one repo, or of every counted repo (``repo`` None)."""

    repo: str | None
    targets: tuple[tuple[str, str], ...]
    frequency: Figure
    lead_time: Figure
    failure_rate: Figure
    recovery: Figure

    @property
    def figures(self) -> tuple[Figure, Figure, Figure, Figure]:
        """The four figures in DORA's order: frequency, lead time, failure rate, recovery."""
        return (self.frequency, self.lead_time, self.failure_rate, self.recovery)


@dataclass(frozen=True)
class DoraReport:
    """DORA figures over the ``days`` before ``until``: every counted repo together, then each."""

    until: datetime
    days: int
    overall: Scope
    repos: tuple[Scope, ...]
    uncounted: tuple[str, ...] = ()  # repos none of whose environments count

    @property
    def since(self) -> datetime:
        """Where the report's window starts."""
        return self.until - timedelta(days=self.days)


def lookback_days(days: int) -> int:
    """The days of history a report over ``days`` reads: its window, and the trends' 12 weeks."""
    return max(days, SPARK_WEEKS * 7)


def build_report(
    history: DoraHistory,
    targets: Sequence[tuple[str, str]],
    until: datetime,
    days: int,
    uncounted: Sequence[str] = (),
) -> DoraReport:
    """The figures of ``history`` (read over lookback_days(days) before ``until``) per repo and overall."""
    repos = list(dict.fromkeys(repo for repo, _ in targets))
    overall = _scope(None, tuple(targets), history, days)
    by_repo = _by_repo(history)
    per_repo = tuple(
        _scope(repo, tuple(t for t in targets if t[0] == repo), by_repo.get(repo, DoraHistory()), days)
        for repo in repos
    )
    return DoraReport(until, days, overall, per_repo, tuple(uncounted))


def _by_repo(history: DoraHistory) -> dict[str, DoraHistory]:
    """The history split by repo, in one pass over each kind of row."""
    days: dict[str, list[DoraDay]] = defaultdict(list)
    leads: dict[str, list[LeadSample]] = defaultdict(list)
    incidents: dict[str, list[Incident]] = defaultdict(list)
    for day in history.days:
        days[day.repo].append(day)
    for lead in history.leads:
        leads[lead.repo].append(lead)
    for incident in history.incidents:
        incidents[incident.repo].append(incident)
    return {
        repo: DoraHistory(tuple(days[repo]), tuple(leads[repo]), tuple(incidents[repo]))
        for repo in {*days, *leads, *incidents}
    }


def _scope(repo: str | None, targets: tuple[tuple[str, str], ...], history: DoraHistory, days: int) -> Scope:
    return Scope(
        repo,
        targets,
        _frequency(history.days, days),
        _lead_time(history.leads, days),
        _failure_rate(history.days, days),
        _recovery(history.incidents, days),
    )


def _week(day: int) -> int | None:
    """The trend's week a day falls in (0 the oldest of the 12, 11 the last); None before them."""
    back = day // 7
    return SPARK_WEEKS - 1 - back if back < SPARK_WEEKS else None


def _weekly_values(pairs: Iterable[tuple[int, float]]) -> dict[int, list[float]]:
    weeks: dict[int, list[float]] = defaultdict(list)
    for day, value in pairs:
        week = _week(day)
        if week is not None:
            weeks[week].append(value)
    return weeks


def _frequency(rows: Sequence[DoraDay], days: int) -> Figure:
    deploys = sum(r.succeeded for r in rows if r.day < days)
    per_day = deploys / days
    weeks = _weekly_values((r.day, r.succeeded) for r in rows)
    weekly = tuple(float(sum(weeks.get(w, ()))) for w in range(SPARK_WEEKS))
    text = f"{_rate(per_day)} per day · {_rate(per_day * 7)} per week · {_count(deploys, 'deploy')}"
    numbers = {"deploys": deploys, "per_day": per_day, "per_week": per_day * 7}
    return Figure(
        "deployment_frequency",
        "Deployment frequency",
        per_day,
        text,
        frequency_level(per_day),
        weekly,
        numbers,
    )


def _lead_time(samples: Sequence[LeadSample], days: int) -> Figure:
    seconds: list[float] = []
    weeks: dict[int, list[float]] = defaultdict(list)
    # One pass, the week worked out inline: tens of thousands of samples, read once per scope.
    for sample in samples:
        # A commit stamped after its deploy ended (a skewed clock) waited no time at all.
        value = max(sample.seconds, 0.0)
        day = sample.day
        if day < days:
            seconds.append(value)
        back = day // 7
        if back < SPARK_WEEKS:
            weeks[SPARK_WEEKS - 1 - back].append(value)
    median, p90 = percentile(seconds, 0.5), percentile(seconds, 0.9)
    weekly = tuple(percentile(weeks.get(w, []), 0.5) for w in range(SPARK_WEEKS))
    if median is None:
        text = "no commits recorded as shipped"
    else:
        text = f"median {duration_text(median)} · p90 {duration_text(p90)} · {_count(len(seconds), 'commit')}"
    numbers = {"commits": len(seconds), "median_seconds": median, "p90_seconds": p90}
    level = lead_time_level(median) if median is not None else None
    return Figure("lead_time", "Lead time for changes", median, text, level, weekly, numbers)


def _failure_rate(rows: Sequence[DoraDay], days: int) -> Figure:
    window = [r for r in rows if r.day < days]
    failed = sum(r.failed for r in window)
    rolled_back = sum(r.rolled_back for r in window)
    finished = failed + sum(r.succeeded for r in window)
    rate = (failed + rolled_back) / finished if finished else None
    by_week: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        week = _week(r.day)
        if week is not None:
            by_week[week][0] += r.failed + r.rolled_back
            by_week[week][1] += r.failed + r.succeeded
    weekly = tuple(
        (by_week[w][0] / by_week[w][1]) if by_week.get(w, [0, 0])[1] else None for w in range(SPARK_WEEKS)
    )
    if rate is None:
        text = "no finished deploys"
    else:
        text = (
            f"{rate * 100:.1f} % · {failed + rolled_back} of {finished} "
            f"({failed} failed, {rolled_back} rolled back)"
        )
    numbers = {"finished": finished, "failed": failed, "rolled_back": rolled_back, "rate": rate}
    level = failure_rate_level(rate) if rate is not None else None
    return Figure("change_failure_rate", "Change failure rate", rate, text, level, weekly, numbers)


def _recovery(incidents: Sequence[Incident], days: int) -> Figure:
    window = [i for i in incidents if i.day < days]
    recovered = [i.seconds for i in window if i.seconds is not None]
    median = percentile(recovered, 0.5)
    weeks = _weekly_values((i.day, i.seconds) for i in incidents if i.seconds is not None)
    weekly = tuple(percentile(weeks.get(w, []), 0.5) for w in range(SPARK_WEEKS))
    still_open = len(window) - len(recovered)
    if not window:
        text = "no failed or rolled-back deploys"
    else:
        text = f"median {duration_text(median)} · {_count(len(window), 'incident')}"
        text += f", {still_open} not recovered yet" if still_open else ""
    numbers = {
        "incidents": len(window),
        "recovered": len(recovered),
        "not_recovered": still_open,
        "median_seconds": median,
    }
    level = recovery_level(median) if median is not None else None
    return Figure("recovery_time", "Failed deployment recovery time", median, text, level, weekly, numbers)


def _rate(value: float) -> str:
    if value == 0:
        return "0"
    if value < 0.1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def iso(when: datetime) -> str:
    """A time as ISO 8601 UTC to the second: ``2026-12-01T13:30:00Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the two plain renderings: --json for dashboards, text for the terminal --------------------


def report_json(report: DoraReport) -> dict[str, Any]:
    """The report as JSON-ready data with stable keys (README "DORA figures" shows an example)."""
    return {
        "version": JSON_VERSION,
        "since": iso(report.since),
        "until": iso(report.until),
        "days": report.days,
        "trend_weeks": SPARK_WEEKS,
        "overall": _scope_json(report.overall),
        "repos": [_scope_json(scope) for scope in report.repos],
        "uncounted_repos": list(report.uncounted),
    }


def _scope_json(scope: Scope) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "repo": scope.repo,
        "environments": [{"repo": repo, "env": env} for repo, env in scope.targets],
    }
    for figure in scope.figures:
        figures[figure.key] = {
            "value": _rounded(figure.value),
            "level": figure.level.value if figure.level is not None else None,
            **{name: _rounded(value) for name, value in figure.numbers.items()},
            "weekly": [_rounded(value) for value in figure.weekly],
            "sparkline": figure.trend,
        }
    return figures


def _rounded(value: float | int | None) -> float | int | None:
    """Floats to 6 decimals: 1.4, not 1.4000000000000001."""
    return round(value, 6) if isinstance(value, float) else value


def report_lines(report: DoraReport) -> list[str]:
    """The report for a terminal: a heading, then each scope's four figures with level and trend."""
    lines = [
        f"DORA figures, last {report.days} days ({report.since:%Y-%m-%d %H:%M} → "
        f"{report.until:%Y-%m-%d %H:%M} UTC); trends: {SPARK_WEEKS} weeks, oldest first",
    ]
    scopes = list(report.repos) if len(report.repos) == 1 else [report.overall, *report.repos]
    if not report.repos:
        lines.append("")
        lines.append("No environment is counted: mark one `dora: true` in robot.yaml.")
        scopes = []
    for scope in scopes:
        lines.append("")
        lines.append(scope_title(scope))
        width = max(len(f.name) for f in scope.figures)
        for figure in scope.figures:
            level = figure.level.value if figure.level is not None else "–"
            lines.append(
                f"  {figure.name:<{width}}  {level:<6}  {figure.trend:<{SPARK_WEEKS}}  {figure.text}"
            )
    if report.uncounted:
        lines.append("")
        lines.append(f"Not counted (no `production`, no `dora: true`): {', '.join(report.uncounted)}")
    return lines


def scope_title(scope: Scope) -> str:
    """``acme/api: production`` for a repo; every counted environment for the overall scope."""
    if scope.repo is not None:
        return f"{scope.repo}: {', '.join(env for _, env in scope.targets)}"
    if len(scope.targets) > _LISTED_TARGETS:
        repos = len({repo for repo, _ in scope.targets})
        return f"All {repos} repos ({len(scope.targets)} environments)"
    return "All repos: " + ", ".join(f"{repo} {env}" for repo, env in scope.targets)
