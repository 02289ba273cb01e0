"""DORA figures from the store, for the environments robot.yaml counts: `robot stats`, `/deploy stats`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.dora import DEFAULT_DAYS, MAX_DAYS, DoraReport, build_report, lookback_days
from bot.errors import BadCommand, UnknownEnvironment
from bot.ports import DoraSource

if TYPE_CHECKING:
    from bot.config import Settings


def _now() -> datetime:
    return datetime.now(UTC)


def dora_targets(
    settings: Settings, repo: str | None = None, env: str | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The (repo, env) pairs counted, and the repos none of whose environments count.

    ``env`` counts that environment of each repo that has it, whatever `dora:` says.
    """
    repos = [settings.repo(repo)[0]] if repo else list(settings.repos)
    targets: list[tuple[str, str]] = []
    uncounted: list[str] = []
    for name in repos:
        if env is not None:
            if repo is not None:
                targets.append((name, settings.environment(name, env)[0]))
            elif env in settings.repos[name].environments:
                targets.append((name, env))
            continue
        counted = settings.repos[name].dora_environments
        targets.extend((name, e) for e in counted)
        if not counted:
            uncounted.append(name)
    if env is not None and not targets:
        raise UnknownEnvironment(f"No configured repo has an environment `{env}`.")
    return targets, uncounted


class DoraStats:
    """Reads the store's DORA sums for the counted environments and makes the report of them."""

    def __init__(self, settings: Settings, store: DoraSource, clock: Callable[[], datetime] = _now) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock

    def report(self, repo: str | None = None, env: str | None = None, days: int = DEFAULT_DAYS) -> DoraReport:
        """The figures over the last ``days`` days, per repo and overall (one store read)."""
        if not 1 <= days <= MAX_DAYS:
            raise BadCommand(f"The DORA window is 1 to {MAX_DAYS} days, not {days}.")
        targets, uncounted = dora_targets(self._settings, repo, env)
        until = self._clock()
        history = self._store.dora_history(targets, until, lookback_days(days))
        return build_report(history, targets, until, days, uncounted)
