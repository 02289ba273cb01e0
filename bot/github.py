"""The only place that talks to GitHub: PyGithub with bounded retries and human error messages."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from github import Auth, Github, GithubRetry
from github.CheckRun import CheckRun
from github.CommitStatus import CommitStatus
from github.GithubException import (
    GithubException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
)
from github.PaginatedList import PaginatedList
from github.Repository import Repository
from github.Requester import Requester
from urllib3 import Retry
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import HTTPResponse

from bot.errors import (
    BotError,
    DeploymentRefused,
    GitHubError,
    InvalidRef,
    InvalidRepoName,
    UnknownRepo,
)
from bot.models import ContextResult, ContextState, GateResult

DESCRIPTION_MAX = 140
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
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


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A response header, whatever the case of its name."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _rate_limit_wait(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds GitHub asks us to wait: Retry-After, or the reset of an exhausted primary limit."""
    retry_after = _header(headers, "Retry-After")
    if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
        return float(retry_after)
    reset = _header(headers, "X-RateLimit-Reset")
    if _header(headers, "X-RateLimit-Remaining") == "0" and reset is not None and reset.isdigit():
        return max(0.0, int(reset) - time.time()) + 1
    return None


class _Retry(GithubRetry):
    """GithubRetry that also retries 429 rate limits and gives up early on waits beyond the cap.

    GithubRetry honours X-RateLimit-Reset only on 403; GitHub answers a primary rate limit with
    403 or 429, so a 429 without Retry-After waits for the reset here too.
    """

    _rate_wait: float | None = None

    def get_backoff_time(self) -> float:
        base = super().get_backoff_time()
        return base if self._rate_wait is None else max(base, self._rate_wait)

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,  # type: ignore[override]
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        if response is not None and response.status in (403, 429):
            wait = _rate_limit_wait(response.headers)
            cap = self.max_rate_limit_wait
            if wait is not None and cap is not None and wait > cap:
                raise RateLimitExceededExceedsMaxWait(
                    response.status, None, dict(response.headers), wait=wait
                )
            if response.status == 429 and _header(response.headers, "Retry-After") is None:
                retry = Retry.increment(self, method, url, response, error, _pool, _stacktrace)
                if isinstance(retry, _Retry):
                    # No reset either: GitHub asks for at least a minute on secondary limits.
                    retry._rate_wait = self.secondary_rate_wait if wait is None else wait
                return retry
        return super().increment(method, url, response, error, _pool, _stacktrace)


class RateLimited(GitHubError):
    """GitHub asked the poller to wait: ``retry_after`` seconds from now, or until ``reset`` (epoch)."""

    def __init__(self, message: str, retry_after: float | None, reset: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reset = reset


@dataclass(frozen=True)
class HeadPoll:
    """One conditional read of a branch head, with the pacing headers GitHub sent along."""

    sha: str | None  # None: 304, the branch is where the ETag says
    etag: str | None
    poll_interval: float | None = None  # X-Poll-Interval
    limit: int | None = None  # X-RateLimit-Limit
    remaining: int | None = None  # X-RateLimit-Remaining
    reset: float | None = None  # X-RateLimit-Reset, epoch seconds


@dataclass(frozen=True)
class CommitInfo:
    """A commit as the compare API lists it."""

    sha: str
    title: str  # first line of the message
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """What ``head`` has that ``base`` has not.

    ``status`` is GitHub's (identical, ahead, behind, diverged) or ``unrelated`` when GitHub finds
    no common history (a force push onto a new root, or an old head GitHub no longer has).
    ``commits`` are oldest first and at most 250 (GitHub's cap per answer).
    """

    status: str
    ahead_by: int
    behind_by: int
    total_commits: int
    commits: tuple[CommitInfo, ...]


@dataclass(frozen=True)
class PullInfo:
    """A pull request associated with a commit; ``merged_by`` is filled only by ``pull_request``."""

    number: int
    title: str
    author: str
    base: str
    merged: bool
    merge_commit_sha: str | None
    url: str | None
    merged_by: str | None = None


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _whole(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _login(user: object) -> str:
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def _pull_info(data: Mapping[str, Any]) -> PullInfo | None:
    number = data.get("number")
    if not isinstance(number, int):
        return None
    base = data.get("base")
    merged_by = _login(data.get("merged_by")) or None
    merge_sha, url = data.get("merge_commit_sha"), data.get("html_url")
    return PullInfo(
        number=number,
        title=str(data.get("title") or ""),
        author=_login(data.get("user")),
        base=str(base.get("ref") or "") if isinstance(base, dict) else "",
        merged=data.get("merged_at") is not None,
        merge_commit_sha=merge_sha if isinstance(merge_sha, str) else None,
        url=url if isinstance(url, str) else None,
        merged_by=merged_by,
    )


def _commit_info(data: object) -> CommitInfo | None:
    if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
        return None
    inner = data.get("commit")
    message = str(inner.get("message") or "") if isinstance(inner, dict) else ""
    listed = data.get("parents") or []
    parents = tuple(str(p["sha"]) for p in listed if isinstance(p, dict) and isinstance(p.get("sha"), str))
    return CommitInfo(data["sha"], message.split("\n", 1)[0].strip(), parents)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def cut_description(text: str) -> str:
    """A deployment status description GitHub accepts: one line, at most 140 characters."""
    return _one_line(text, DESCRIPTION_MAX)


def _github_reason(exc: GithubException) -> str:
    """GitHub's own message, with the details of its ``errors`` list (contexts, fields)."""
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc.message or f"HTTP {exc.status}")
    details: list[str] = []
    for error in data.get("errors") or []:
        if not isinstance(error, dict):
            details.append(str(error))
        elif isinstance(error.get("contexts"), list):
            details += [f"{c.get('context')}: {c.get('state')}" for c in error["contexts"]]
        elif error.get("message"):
            details.append(str(error["message"]))
        elif error.get("field"):
            details.append(f"{error.get('field')} {error.get('code', 'invalid')}")
    if details:
        message = f"{message} ({'; '.join(details)})"
    return _one_line(message)


def _json_object(body: str) -> dict[str, Any]:
    """A JSON object body, or {} for anything else (empty, HTML error page, a list)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _web_root(api_url: str) -> str:
    """The web host behind an API URL: api.github.com → github.com, GHE /api/v3 → the host."""
    parts = urlsplit(api_url)
    host, path = parts.netloc, parts.path.rstrip("/")
    if path.endswith("/api/v3"):
        path = path.removesuffix("/api/v3")
    elif host.startswith("api.") and not path:
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}{path}"


class GitHubGateway:
    """GitHubPort on real PyGithub: retries 5xx, timeouts and rate limits; raises only BotError."""

    def __init__(
        self,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        seconds_between_requests: float = 0.25,
        seconds_between_writes: float = 1.0,
        timeout: float = 15,
        max_retries: int = 5,
        max_backoff: float = 60,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._timeout = max(1, math.ceil(timeout))
        self._tries = max_retries + 1
        self._max_backoff = max_backoff
        retry = _Retry(
            total=max_retries,
            backoff_factor=0.5,
            backoff_max=max_backoff,
            retry_after_max=max(1, math.ceil(max_backoff)),
            status_forcelist=[*range(500, 600), 429],  # GithubRetry adds 403 (checked by message)
            raise_on_status=False,  # the last answer reaches PyGithub, which names its status
            secondary_rate_wait=min(60.0, max_backoff),
            max_rate_limit_wait=max_backoff,
        )
        self._gh = Github(
            base_url=self._api_url,
            auth=Auth.Token(token),
            timeout=max(1, math.ceil(timeout)),  # PyGithub asserts a whole number of seconds
            retry=retry,
            per_page=100,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
            user_agent="deploy-robot",
        )
        # Head polls go through their own client: one quick retry on a 5xx or a dropped
        # connection and never a wait for a rate limit, so one poll never stalls the cycle;
        # the poller honours Retry-After / X-RateLimit-Reset itself (RateLimited).
        self._poll_gh = Github(
            base_url=self._api_url,
            auth=Auth.Token(token),
            timeout=max(1, math.ceil(timeout)),
            retry=Retry(
                total=1,
                backoff_factor=0,
                status_forcelist=[*range(500, 600)],
                allowed_methods=["GET"],
                raise_on_status=False,
                respect_retry_after_header=False,
            ),
            per_page=100,
            # Head polls are serial conditional GETs, mostly free 304s: throttling them only
            # stretches a cycle (100 repos at 0.25 s = 25 s); the lookups after a move are paced.
            seconds_between_requests=0,
            seconds_between_writes=seconds_between_writes,
            user_agent="deploy-robot",
        )
        self._repos: dict[str, Repository] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close PyGithub's connections."""
        self._gh.close()
        self._poll_gh.close()

    # ---- GitHubPort ------------------------------------------------------------------

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
            f"({_AUTO_MERGE_TRIES} tries): {_one_line(reason)}"
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

    def commit_url(self, repo: str, sha: str) -> str:
        """The commit's web page, derived from the API URL without a request."""
        return f"{_web_root(self._api_url)}/{repo}/commit/{sha}"

    # ---- beyond the port: poller and `robot check` -------------------------------------

    def poll_head(self, repo: str, branch: str, etag: str | None) -> HeadPoll:
        """A branch head by conditional request, without fetching the repo first.

        304 → ``sha`` None (costs no rate-limit unit). A deleted branch raises InvalidRef; a repo
        that is gone or no longer readable raises UnknownRepo; a rate limit raises RateLimited
        at once (no waiting here); anything else that fails is a GitHubError.
        """
        path = self._repo_path(repo)
        headers = {"If-None-Match": etag} if etag else {}
        url = f"{path}/branches/{quote(branch, safe='')}"
        with self._guard("read branch head", repo):
            status, answer_headers, body = self._poll_gh.requester.requestJson("GET", url, headers=headers)
        new_etag = _header(answer_headers, "ETag") or etag
        poll = HeadPoll(
            sha=None,
            etag=new_etag,
            poll_interval=_number(_header(answer_headers, "X-Poll-Interval")),
            limit=_whole(_header(answer_headers, "X-RateLimit-Limit")),
            remaining=_whole(_header(answer_headers, "X-RateLimit-Remaining")),
            reset=_number(_header(answer_headers, "X-RateLimit-Reset")),
        )
        if status == 304:
            return poll
        data = _json_object(body)
        if status in (403, 429):
            retry_after = _number(_header(answer_headers, "Retry-After"))
            message = str(data.get("message") or "")
            # A secondary limit may come as a 403 naming no wait; only its message tells.
            secondary = "rate limit" in message.lower()
            if status == 429 or retry_after is not None or poll.remaining == 0 or secondary:
                raise RateLimited(
                    f"GitHub rate limit ({status}) on read branch head for {repo}",
                    retry_after,
                    poll.reset if poll.remaining == 0 else None,
                )
            raise UnknownRepo(
                f"The GitHub token can no longer read {repo} ({status}: {_one_line(message or 'Forbidden')})."
            )
        if status == 404:
            self._branch_or_repo_gone(repo, branch, path)
        if status >= 400:
            exc = Requester.createException(status, answer_headers, data)
            raise GitHubError(self._describe(exc, "read branch head", repo)) from exc
        commit = data.get("commit")
        sha = commit.get("sha") if isinstance(commit, dict) else None
        if not isinstance(sha, str):
            raise GitHubError(f"GitHub answered read branch head for {repo} without a commit SHA")
        return HeadPoll(sha, new_etag, poll.poll_interval, poll.limit, poll.remaining, poll.reset)

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        """The commits on ``head`` since ``base``; no common history → status ``unrelated``."""
        url = f"{self._repo_path(repo)}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        try:
            with self._guard("compare commits", repo, {404: _none, 422: _none}):
                _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        except _NoComparison:
            # "No common ancestor", or GitHub no longer has the old head (gone after a force push).
            return Comparison("unrelated", 0, 0, 0, ())
        if not isinstance(data, dict):
            return Comparison("unrelated", 0, 0, 0, ())
        commits = tuple(c for c in map(_commit_info, data.get("commits") or []) if c is not None)
        return Comparison(
            status=str(data.get("status") or "unrelated"),
            ahead_by=int(data.get("ahead_by") or 0),
            behind_by=int(data.get("behind_by") or 0),
            total_commits=int(data.get("total_commits") or len(commits)),
            commits=commits,
        )

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        """The pull requests GitHub associates with a commit (merged ones and open ones)."""
        url = f"{self._repo_path(repo)}/commits/{quote(sha, safe='')}/pulls"
        unknown = self._unknown_ref(repo, sha)
        with self._guard("list pull requests of a commit", repo, {404: unknown, 422: unknown}):
            _, data = self._gh.requester.requestJsonAndCheck("GET", url, parameters={"per_page": 100})
        items = data if isinstance(data, list) else []
        return [p for p in (_pull_info(i) for i in items if isinstance(i, dict)) if p is not None]

    def pull_request(self, repo: str, number: int) -> PullInfo:
        """One pull request with its merger (the list endpoints leave ``merged_by`` out)."""
        url = f"{self._repo_path(repo)}/pulls/{int(number)}"
        with self._guard("read pull request", repo):
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        found = _pull_info(data) if isinstance(data, dict) else None
        if found is None:
            raise GitHubError(f"GitHub answered read pull request #{number} for {repo} without a number")
        return found

    def check_access(self, repo: str) -> str:
        """One line on what the token may do in ``repo``; raises when it cannot deploy there."""
        handle = self._repo(repo)
        with self._guard("read permissions", repo):
            perms = handle.permissions
        if perms is None:
            return f"{repo}: readable (GitHub did not say whether the token may deploy)"
        if perms.push or perms.maintain or perms.admin:
            return f"{repo}: readable; the token can create deployments (write access)"
        raise GitHubError(
            f"{repo}: readable, but the token has no write access, so it cannot create deployments"
        )

    def check_token(self) -> str:
        """One line on whom the token acts as and how much of the hourly limit is left."""
        with self._guard("check token", "the API"):
            try:
                login = self._gh.get_user().login
            except GithubException as exc:
                if exc.status != 403:
                    raise
                login = "a GitHub App installation"
            remaining, limit = self._gh.rate_limiting
        return f"token accepted: acting as {login}; {remaining}/{limit} requests left this hour"

    # ---- internals -------------------------------------------------------------------

    def _repo(self, repo: str) -> Repository:
        """The cached Repository (one GET per repo name for the life of the gateway)."""
        key = repo.lower()
        with self._lock:
            cached = self._repos.get(key)
        if cached is not None:
            return cached
        if not _REPO_NAME.fullmatch(repo):
            raise InvalidRepoName(f"`{repo}` is not a GitHub repo name (owner/name).")

        def unknown(exc: GithubException) -> BotError:
            return UnknownRepo(f"GitHub has no repo {repo}, or the token cannot read it.")

        with self._guard("read repo", repo, {404: unknown}):
            handle = self._gh.get_repo(repo)
        with self._lock:
            self._repos[key] = handle
        return handle

    @staticmethod
    def _repo_path(repo: str) -> str:
        """``/repos/owner/name``, relative to the API URL (no request for the repo itself)."""
        if not _REPO_NAME.fullmatch(repo):
            raise InvalidRepoName(f"`{repo}` is not a GitHub repo name (owner/name).")
        return f"/repos/{repo}"

    def _branch_or_repo_gone(self, repo: str, branch: str, path: str) -> None:
        """After a 404 on a branch: one more read tells a deleted branch from a lost repo."""
        with self._guard("read repo", repo):
            status, _, _ = self._poll_gh.requester.requestJson("GET", path)
        if status in (403, 404):
            raise UnknownRepo(f"GitHub has no repo {repo}, or the token cannot read it.")
        raise InvalidRef(f"Branch `{branch}` of {repo} is gone (deleted or renamed on GitHub).")

    @staticmethod
    def _unknown_ref(repo: str, ref: str) -> Callable[[GithubException], BotError]:
        def unknown(exc: GithubException) -> BotError:
            return InvalidRef(f"Unknown ref `{ref}` in {repo}.")

        return unknown

    def _statuses(self, handle: Repository, sha: str) -> Iterable[CommitStatus]:
        url = f"{handle.url}/commits/{quote(sha, safe='')}/statuses"
        return islice(PaginatedList(CommitStatus, handle.requester, url, None), _MAX_LISTED)

    def _check_runs(self, handle: Repository, sha: str) -> Iterable[CheckRun]:
        url = f"{handle.url}/commits/{quote(sha, safe='')}/check-runs"
        runs = PaginatedList(CheckRun, handle.requester, url, None, list_item="check_runs")
        return islice(runs, _MAX_LISTED)

    @contextmanager
    def _guard(
        self,
        action: str,
        repo: str,
        on_status: Mapping[int, Callable[[GithubException], BotError]] | None = None,
    ) -> Iterator[None]:
        """Turn every PyGithub / transport failure inside into a one-line BotError."""
        try:
            yield
        except GithubException as exc:
            handler = (on_status or {}).get(exc.status)
            if handler is not None:
                raise handler(exc) from exc
            raise GitHubError(self._describe(exc, action, repo)) from exc
        except (requests.RequestException, Urllib3Error) as exc:
            # `from None`: requests errors carry the prepared request and its Authorization header.
            raise GitHubError(self._describe_transport(exc, action, repo)) from None

    def _describe(self, exc: GithubException, action: str, repo: str) -> str:
        where = f"on {action} for {repo}"
        if isinstance(exc, RateLimitExceededExceedsMaxWait):
            wait = exc.wait or 0
            return (
                f"GitHub rate limit {where}: it clears in {wait:.0f} s, "
                f"longer than the {self._max_backoff:g} s the robot waits"
            )
        limited = exc.status == 429 or (exc.status == 403 and _rate_limit_wait(exc.headers) is not None)
        if isinstance(exc, RateLimitExceededException) or limited:
            return f"GitHub rate limit ({exc.status}) {where} after {self._tries} tries"
        if exc.status >= 500:
            return f"GitHub {exc.status} {where} after {self._tries} tries"
        if exc.status == 401:
            return f"GitHub refused the token (401 {_github_reason(exc)}) {where}"
        return f"GitHub {exc.status} {where}: {_github_reason(exc)}"

    def _describe_transport(self, exc: Exception, action: str, repo: str) -> str:
        where = f"on {action} for {repo} after {self._tries} tries"
        cause: BaseException | None = exc
        for _ in range(5):  # bounded walk down the MaxRetryError / wrapper chain
            if cause is None or isinstance(cause, (ReadTimeoutError, requests.Timeout)):
                break
            inner = getattr(cause, "reason", None)
            if inner is None and cause.args and isinstance(cause.args[0], BaseException):
                inner = cause.args[0]
            cause = inner
        if isinstance(cause, (ReadTimeoutError, requests.Timeout)):
            return f"GitHub did not answer within {self._timeout:g} s {where}"
        host = urlsplit(self._api_url).netloc
        return f"Cannot reach GitHub at {host} {where} ({type(exc).__name__})"


class _NoComparison(BotError):
    """Internal: compare answered 404/422, i.e. there is no common history to list."""


def _none(exc: GithubException) -> BotError:
    return _NoComparison(str(exc.status))


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
