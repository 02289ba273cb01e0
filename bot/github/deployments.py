"""The deploy path's GitHub calls: resolve a ref, read CI, create a deployment, post its statuses."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import quote

from github.CheckRun import CheckRun
from github.CommitStatus import CommitStatus
from github.GithubException import GithubException
from github.PaginatedList import PaginatedList
from github.Repository import Repository

from bot.errors import BotError, DeploymentRefused, GitHubError
from bot.github.client import REASON_LIMIT, GitHubClient, _github_reason
from bot.models import ContextResult, ContextState, GateResult, RequiredContext
from bot.text import cut_description, one_line

_MAX_LISTED = 1000  # statuses / check runs read per commit; GitHub caps statuses at 1000 too
_AUTO_MERGE_TRIES = 4
_STATUS_STATES = {
    "success": ContextState.SUCCESS,
    "pending": ContextState.PENDING,
    "failure": ContextState.FAILURE,
    "error": ContextState.FAILURE,
}
_ACCEPTABLE = frozenset({"neutral", "skipped"})  # green only where a context accepts them
_SEVERITY = {ContextState.SUCCESS: 0, ContextState.PENDING: 1, ContextState.FAILURE: 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DeploymentCalls(GitHubClient):
    """The GitHubPort calls a deploy makes: ref, CI gate, Deployment and its statuses."""

    def resolve_ref(self, repo: str, ref: str) -> str:
        """The commit SHA of a branch, tag or (short) SHA."""
        handle = self._repo(repo)
        unknown = self._unknown_ref(repo, ref)
        with self._guard("resolve ref", repo, {404: unknown, 422: unknown}):
            return str(handle.get_commit(ref).sha)

    def ci_state(self, repo: str, sha: str, contexts: Sequence[RequiredContext | str]) -> GateResult:
        """Each required context's state for the commit, in the given order (see GitHubPort)."""
        required = [RequiredContext(c) if isinstance(c, str) else c for c in contexts]
        handle = self._repo(repo)
        unknown = self._unknown_ref(repo, sha)
        with self._guard("read CI state", repo, {404: unknown, 422: unknown}):
            statuses = list(self._statuses(handle, sha))
            runs = list(self._check_runs(handle, sha))
        return GateResult(tuple(_judge(context, statuses, runs) for context in required))

    def create_deployment(
        self,
        repo: str,
        sha: str,
        environment: str,
        required_contexts: Sequence[str],
        payload: Mapping[str, object],
        description: str,
    ) -> int:
        """Create a Deployment of exactly ``sha``; 409/422 → DeploymentRefused."""
        handle = self._repo(repo)

        def refused(exc: GithubException) -> BotError:
            return DeploymentRefused(f"GitHub refused the deployment ({exc.status}): {_github_reason(exc)}")

        reason = ""
        for attempt in range(_AUTO_MERGE_TRIES):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), self._max_backoff))
            with self._guard("create deployment", repo, {409: refused, 422: refused}):
                deployment = handle.create_deployment(
                    ref=sha,
                    task="deploy",
                    auto_merge=False,
                    required_contexts=list(required_contexts),
                    payload=dict(payload),
                    environment=environment,
                    description=description,
                )
                if deployment.id is not None:
                    return int(deployment.id)
                # 202: GitHub merged the default branch into the ref instead of deploying.
                reason = str(deployment.raw_data.get("message") or "202 Accepted")
        raise GitHubError(
            f"GitHub kept answering 202 on create deployment for {repo} "
            f"({_AUTO_MERGE_TRIES} tries): {one_line(reason, REASON_LIMIT)}"
        )

    def set_deployment_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        description: str,
        log_url: str | None = None,
    ) -> None:
        """Post a deployment status; ``log_url`` is sent raw (PyGithub's create_status lacks it)."""
        handle = self._repo(repo)
        body: dict[str, Any] = {"state": state, "description": cut_description(description)}
        if log_url:
            body["log_url"] = log_url
        with self._guard("set deployment status", repo):
            handle.requester.requestJsonAndCheck(
                "POST",
                f"{handle.url}/deployments/{deployment_id}/statuses",
                input=body,
                headers={"Accept": "application/vnd.github+json"},
            )

    def _statuses(self, handle: Repository, sha: str) -> Iterable[CommitStatus]:
        url = f"{handle.url}/commits/{quote(sha, safe='')}/statuses"
        return islice(PaginatedList(CommitStatus, handle.requester, url, None), _MAX_LISTED)

    def _check_runs(self, handle: Repository, sha: str) -> Iterable[CheckRun]:
        url = f"{handle.url}/commits/{quote(sha, safe='')}/check-runs"
        runs = PaginatedList(CheckRun, handle.requester, url, None, list_item="check_runs")
        return islice(runs, _MAX_LISTED)


def _judge(
    context: RequiredContext, statuses: Iterable[CommitStatus], runs: Iterable[CheckRun]
) -> ContextResult:
    """One required context: its newest check run and newest status, weighed against each other."""
    run = _newest_run(context, runs)
    # An app-pinned context trusts that app's check runs only: anyone who may push may post a status.
    status = None if context.app else _newest_status(context.name, statuses)
    if run is None:
        return status[1] if status is not None else ContextResult(context.name, ContextState.MISSING)
    if status is None:
        return run[1]
    # A status never overrides a check run that failed or still runs (a hand-posted `success`
    # must not open the gate); otherwise the newer report wins, the worse one at the same instant.
    if run[1].state is not ContextState.SUCCESS:
        return run[1]
    if status[0] > run[0] or (status[0] == run[0] and _SEVERITY[status[1].state] > _SEVERITY[run[1].state]):
        return status[1]
    return run[1]


def _newest_run(context: RequiredContext, runs: Iterable[CheckRun]) -> tuple[datetime, ContextResult] | None:
    best: tuple[tuple[datetime, int], CheckRun] | None = None
    for run in runs:
        if run.name != context.name or (context.app and (run.app is None or run.app.slug != context.app)):
            continue
        key = (run.started_at or run.completed_at or _EPOCH, run.id)
        if best is None or key > best[0]:
            best = (key, run)
    if best is None:
        return None
    run = best[1]
    title = run.output.title if run.output is not None else None
    detail = title or run.conclusion or run.status
    if run.status != "completed":
        state = ContextState.PENDING
    elif run.conclusion == "success" or run.conclusion in context.accept:
        state = ContextState.SUCCESS
    else:
        state = ContextState.FAILURE
        if run.conclusion in _ACCEPTABLE:
            detail = f"{run.conclusion}; robot.yaml accepts it only with `accept: [{run.conclusion}]` here"
    url = run.details_url or run.html_url
    return best[0][0], ContextResult(context.name, state, url, detail)


def _newest_status(name: str, statuses: Iterable[CommitStatus]) -> tuple[datetime, ContextResult] | None:
    best: tuple[tuple[datetime, int], CommitStatus] | None = None
    for status in statuses:
        if status.context != name:
            continue
        key = (status.created_at or _EPOCH, status.id)
        if best is None or key > best[0]:
            best = (key, status)
    if best is None:
        return None
    status = best[1]
    state = _STATUS_STATES.get(status.state, ContextState.FAILURE)
    return best[0][0], ContextResult(name, state, status.target_url, status.description)
