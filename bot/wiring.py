"""The composition root of the core: builds store, GitHub gateway, runners, pipeline, service once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.config import Settings
from bot.deploys import DeployService
from bot.github import GitHubGateway
from bot.pipeline import Pipeline
from bot.ports import Reporter, StorePort
from bot.redact import Redactor
from bot.steps.dispatch import StepDispatcher
from bot.store import SqlStore


@dataclass
class Core:
    """Everything a front end (CLI, Slack) drives; close() releases the store."""

    settings: Settings
    store: SqlStore
    github: GitHubGateway
    redactor: Redactor
    pipeline: Pipeline
    service: DeployService

    def close(self) -> None:
        self.store.close()


def build_core(
    settings: Settings,
    environ: Mapping[str, str],
    reporter_for: Callable[[StorePort, GitHubGateway], Reporter],
    members_of: Callable[[str], frozenset[str]] = lambda group: frozenset(),
    store: StorePort | None = None,
) -> Core:
    """Wire the core from validated settings and the process environment.

    ``reporter_for`` builds what shows deploys (terminal, Slack) once the store and GitHub
    gateway it may need exist. ``store``, when given, is the port the deploy path (service,
    pipeline, reporter) uses instead of the SqlStore opened from ``state.url`` — the seam where
    tests put a store that refuses writes; the poller and ``Core.store`` keep the SqlStore.
    """
    gh = settings.github
    github = GitHubGateway(
        gh.token,
        gh.api_url,
        seconds_between_requests=gh.seconds_between_requests,
        seconds_between_writes=gh.seconds_between_writes,
        timeout=gh.timeout,
        max_retries=gh.max_retries,
    )
    sql_store = SqlStore.from_url(settings.state.url)
    deploy_store: StorePort = sql_store if store is None else store
    redactor = Redactor.for_environment(settings.secrets, environ)
    reporter = reporter_for(deploy_store, github)
    pipeline = Pipeline(settings, github, deploy_store, StepDispatcher(), redactor, environ, reporter.log_url)
    service = DeployService(settings, deploy_store, github, pipeline, reporter, environ, members_of)
    return Core(settings, sql_store, github, redactor, pipeline, service)
