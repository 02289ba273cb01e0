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
from bot.models import ContextResult, ContextState, GateResult
from bot.text import cut_description, one_line

_MAX_LISTED = 1000  # statuses / check runs read per commit; GitHub caps statuses at 1000 too
_AUTO_MERGE_TRIES = 4
_STATUS_STATES = {
    "success": ContextState.SUCCESS,
    "pending": ContextState.PENDING,
    "failure": ContextState.FAILURE,
    "error": ContextState.FAILURE,
}
_GREEN_CONCLUSIONS = {"success", "neutral", "skipped"}
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

    def ci_state(self, repo: str, sha: str, contexts: Sequence[str]) -> GateResult:
        """The newest commit status or check run of each required context, in the given order."""
        handle = self._repo(repo)
        unknown = self._unknown_ref(repo, sha)
        with self._guard("read CI state", repo, {404: unknown, 422: unknown}):
            found = _newest(self._statuses(handle, sha), self._check_runs(handle, sha))
        return GateResult(
            tuple(found.get(name) or ContextResult(name, ContextState.MISSING) for name in contexts)
        )

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


def _newest(statuses: Iterable[CommitStatus], runs: Iterable[CheckRun]) -> dict[str, ContextResult]:
    """The newest report of each name across statuses and check runs."""
    best: dict[str, tuple[str, datetime, int, ContextResult]] = {}

    def offer(kind: str, when: datetime, ident: int, result: ContextResult) -> None:
        current = best.get(result.name)
        if current is None:
            newer = True
        elif current[0] == kind:
            newer = (when, ident) > (current[1], current[2])
        else:
            # ids of statuses and check runs are not comparable; at the same instant trust the worse
            newer = when > current[1] or (
                when == current[1] and _SEVERITY[result.state] > _SEVERITY[current[3].state]
            )
        if newer:
            best[result.name] = (kind, when, ident, result)

    for status in statuses:
        state = _STATUS_STATES.get(status.state, ContextState.FAILURE)
        result = ContextResult(status.context, state, status.target_url, status.description)
        offer("status", status.created_at or _EPOCH, status.id, result)
    for run in runs:
        if run.status != "completed":
            state = ContextState.PENDING
        elif run.conclusion in _GREEN_CONCLUSIONS:
            state = ContextState.SUCCESS
        else:
            state = ContextState.FAILURE
        title = run.output.title if run.output is not None else None
        result = ContextResult(
            run.name, state, run.details_url or run.html_url, title or run.conclusion or run.status
        )
        offer("check", run.started_at or run.completed_at or _EPOCH, run.id, result)
    return {name: entry[3] for name, entry in best.items()}
