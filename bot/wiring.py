"""The composition root of the core: one store, one GitHub gateway, then pipeline and service, in order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bot.changes import ChangeLists
from bot.config import Settings
from bot.deploys import DeployService
from bot.github import GitHubGateway
from bot.models import Deploy
from bot.pipeline import Pipeline, step_labels
from bot.ports import NO_METRICS, DeployObserver, Metrics, PollStore, StorePort
from bot.redact import Redactor
from bot.steps.dispatch import StepDispatcher
from bot.store import SqlStore


class CoreStore(StorePort, PollStore, Protocol):
    """The one store of a core: what the deploy path and the merge poller keep in it."""


@dataclass(frozen=True)
class Foundation:
    """What the core and whatever shows its deploys are built on, each once: store, GitHub, redactor."""

    settings: Settings
    store: CoreStore
    github: GitHubGateway
    redactor: Redactor
    opened_store: SqlStore | None  # the store opened here (Core.close closes it); None when given
    changes: ChangeLists  # what deploys ship, worked out once per SHA pair for every process

    def step_labels(self, deploy: Deploy) -> list[str]:
        """The deploy's steps as shown, before any has run (for observers that list them up front)."""
        return step_labels(self.settings, self.redactor, deploy)


@dataclass
class Core:
    """Everything a front end (CLI, Slack) drives; close() releases the store it opened."""

    settings: Settings
    store: CoreStore
    github: GitHubGateway
    redactor: Redactor
    pipeline: Pipeline
    service: DeployService
    opened_store: SqlStore | None = None
    changes: ChangeLists | None = None

    def close(self) -> None:
        self.service.close()
        if self.opened_store is not None:
            self.opened_store.close()


def lay_foundation(
    settings: Settings,
    environ: Mapping[str, str],
    store: CoreStore | None = None,
    metrics: Metrics = NO_METRICS,
) -> Foundation:
    """Open the store from ``state.url`` unless ``store`` is given, and the GitHub gateway.

    A given store is the caller's to close; tests pass the real store wrapped to inject faults.
    The gateway reports each GitHub call to ``metrics``.
    """
    gh = settings.github
    github = GitHubGateway(
        gh.token,
        gh.api_url,
        app=gh.app,
        seconds_between_requests=gh.seconds_between_requests,
        seconds_between_writes=gh.seconds_between_writes,
        timeout=gh.timeout,
        max_retries=gh.max_retries,
    )
    if metrics is not NO_METRICS:
        github.on_response = metrics.github_response
    opened: SqlStore | None = None
    if store is None:
        store = opened = SqlStore.from_url(settings.state.url)
    redactor = Redactor.for_environment(settings.secrets, environ)
    changes = ChangeLists(settings, github, store, redactor)
    return Foundation(settings, store, github, redactor, opened, changes)


def assemble_core(
    base: Foundation,
    environ: Mapping[str, str],
    observer: DeployObserver,
    members_of: Callable[[str], frozenset[str]] = lambda group: frozenset(),
) -> Core:
    """Pipeline and service on ``base``, showing deploys through ``observer``."""
    settings = base.settings
    pipeline = Pipeline(settings, base.github, base.store, StepDispatcher(), base.redactor, environ)
    pipeline.changes = base.changes
    service = DeployService(settings, base.store, base.github, pipeline, observer, environ, members_of)
    return Core(
        settings, base.store, base.github, base.redactor, pipeline, service, base.opened_store, base.changes
    )


def build_core(
    settings: Settings,
    environ: Mapping[str, str],
    observer: DeployObserver,
    *,
    store: CoreStore | None = None,
    members_of: Callable[[str], frozenset[str]] = lambda group: frozenset(),
) -> Core:
    """The whole core in one call, for front ends whose observer needs nothing from it (CLI, tests)."""
    return assemble_core(lay_foundation(settings, environ, store), environ, observer, members_of)
