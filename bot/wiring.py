"""The composition root of the core: builds store, GitHub gateway, runners, pipeline, service once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.config import Settings
from bot.deploys import DeployService
from bot.github import GitHubGateway
from bot.pipeline import Pipeline
from bot.ports import Reporter
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
    reporter_for: Callable[[SqlStore, GitHubGateway], Reporter],
    members_of: Callable[[str], frozenset[str]] = lambda group: frozenset(),
) -> Core:
    """Wire the core from validated settings and the process environment.

    ``reporter_for`` builds what shows deploys (terminal, Slack) once the store and GitHub
    gateway it may need exist.
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
    store = SqlStore.from_url(settings.state.url)
    redactor = Redactor.for_environment(settings.secrets, environ)
    reporter = reporter_for(store, github)
    pipeline = Pipeline(settings, github, store, StepDispatcher(), redactor, environ, reporter.log_url)
    service = DeployService(settings, store, github, pipeline, reporter, environ, members_of)
    return Core(settings, store, github, redactor, pipeline, service)
