"""The PyGithub clients every GitHub call shares: retries, rate-limit waits and one-line errors."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubIntegration, GithubRetry
from github.GithubException import (
    GithubException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
)
from github.Installation import Installation as GithubInstallation
from github.Repository import Repository
from urllib3 import Retry
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import HTTPResponse

from bot.errors import BotError, GitHubError, InvalidRef, InvalidRepoName, UnknownRepo
from bot.models import AppCredentials
from bot.text import one_line

REASON_LIMIT = 300  # GitHub's reasons quoted in one-line errors are cut here
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


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


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _whole(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


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
    return one_line(message, REASON_LIMIT)


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


ResponseHook = Callable[[str, str, int | None], None]
"""Told of each GitHub call: what it was, its status, the rate-limit units left (if known)."""


@dataclass
class Answer:
    """What a guarded call saw, when it reads the answer itself (status and headers)."""

    status: str = "2xx"
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class AppInstallation:
    """One installation of the App: the account it is on and the clients acting as it."""

    id: int
    account: str
    permissions: Mapping[str, str]  # what the App may do there: {"deployments": "write", ...}
    gh: Github
    poll_gh: Github


class GitHubClient:
    """The PyGithub clients, the repo cache and the guard that turns failures into BotError.

    With a token, one main client and one head-poll client serve every repo. As a GitHub App,
    each repo owner's installation gets its own pair, authenticated by PyGithub's
    AppInstallationAuth, which fetches a new installation token before the old one expires.
    The gateway's call groups (deployments, merge reads, access checks) build on this.
    """

    on_response: ResponseHook | None = None  # set by the composition root when metrics are on

    def __init__(
        self,
        token: str | None = None,
        api_url: str = "https://api.github.com",
        *,
        app: AppCredentials | None = None,
        seconds_between_requests: float = 0.25,
        seconds_between_writes: float = 1.0,
        timeout: float = 15,
        max_retries: int = 5,
        max_backoff: float = 60,
    ) -> None:
        if (token is None) == (app is None):
            raise ValueError("GitHubClient takes exactly one of a token and a GitHub App")
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
        self._options: dict[str, Any] = {
            "base_url": self._api_url,
            "timeout": self._timeout,  # PyGithub asserts a whole number of seconds
            "retry": retry,
            "per_page": 100,
            "seconds_between_requests": seconds_between_requests,
            "seconds_between_writes": seconds_between_writes,
            "user_agent": "deploy-robot",
        }
        # Head polls go through their own client: one quick retry on a 5xx or a dropped
        # connection and never a wait for a rate limit, so one poll never stalls the cycle;
        # the poller honours Retry-After / X-RateLimit-Reset itself (RateLimited).
        self._poll_options: dict[str, Any] = {
            **self._options,
            "retry": Retry(
                total=1,
                backoff_factor=0,
                status_forcelist=[*range(500, 600)],
                allowed_methods=["GET"],
                raise_on_status=False,
                respect_retry_after_header=False,
            ),
            # Head polls are serial conditional GETs, mostly free 304s: throttling them only
            # stretches a cycle (100 repos at 0.25 s = 25 s); the lookups after a move are paced.
            "seconds_between_requests": 0,
        }
        self._app = app
        self._token_clients: tuple[Github, Github] | None = None
        self._integration: GithubIntegration | None = None
        self._app_auth: Auth.AppAuth | None = None
        if token is not None:
            self._token_clients = (
                Github(auth=Auth.Token(token), **self._options),
                Github(auth=Auth.Token(token), **self._poll_options),
            )
        else:
            assert app is not None
            self._app_auth = Auth.AppAuth(app.app_id, app.private_key)
            # The JWT-authenticated client: finds installations (and, per installation client,
            # PyGithub builds its own from that client's settings to fetch installation tokens).
            self._integration = GithubIntegration(auth=self._app_auth, **self._options)
        self._installations: dict[int, AppInstallation] = {}  # by installation id
        self._owners: dict[str, int] = {}  # repo owner (lower case) → installation id
        self._install_lock = threading.Lock()  # held across a lookup: one per owner, ever
        self._repos: dict[str, Repository] = {}
        self._lock = threading.Lock()

    @property
    def is_app(self) -> bool:
        """Whether the robot acts as a GitHub App (else as the owner of a token)."""
        return self._app is not None

    def close(self) -> None:
        """Close PyGithub's connections."""
        if self._token_clients is not None:
            for gh in self._token_clients:
                gh.close()
        with self._lock:
            installations = list(self._installations.values())
        for installation in installations:
            installation.gh.close()
            installation.poll_gh.close()
        if self._integration is not None:
            self._integration.close()

    def _main(self, repo: str) -> Github:
        """The client for ``repo``'s calls (as a GitHub App: its owner's installation)."""
        if self._token_clients is not None:
            return self._token_clients[0]
        return self._installation(repo).gh

    def _poller(self, repo: str) -> Github:
        """The head-poll client for ``repo`` (no rate-limit waits, one quick retry)."""
        if self._token_clients is not None:
            return self._token_clients[1]
        return self._installation(repo).poll_gh

    def _installation(self, repo: str) -> AppInstallation:
        """The App's installation serving ``repo``: the pinned one, or its owner's, looked up once."""
        owner, _, name = repo.partition("/")
        key = owner.lower()
        with self._lock:
            known = self._owners.get(key)
            if known is not None:
                return self._installations[known]
        app, integration = self._app, self._integration
        assert app is not None and integration is not None
        with self._install_lock:
            with self._lock:
                known = self._owners.get(key)  # another thread looked it up meanwhile
                pinned = None if app.installation_id is None else self._installations.get(app.installation_id)
            if known is not None:
                return self._installations[known]
            if pinned is not None:
                installation = pinned
            elif app.installation_id is not None:
                pin = app.installation_id

                def unknown_pin(exc: GithubException) -> BotError:
                    return GitHubError(
                        f"The GitHub App {app.app_id} has no installation {pin} (github.installation_id)"
                    )

                with self._guard("read the GitHub App installation", repo, {404: unknown_pin}):
                    installation = self._adopt(integration.get_app_installation(pin))
            else:
                if not _REPO_NAME.fullmatch(repo):
                    raise InvalidRepoName(f"`{repo}` is not a GitHub repo name (owner/name).")

                def absent(exc: GithubException) -> BotError:
                    return UnknownRepo(
                        f"GitHub has no repo {repo}, or the GitHub App {app.app_id} is not installed "
                        f"on it (install the App on {owner} with access to {name})."
                    )

                with self._guard("find the GitHub App installation", repo, {404: absent}):
                    installation = self._adopt(integration.get_repo_installation(owner, name))
            with self._lock:
                self._owners[key] = installation.id
            return installation

    def _adopt(self, found: GithubInstallation) -> AppInstallation:
        """The clients of an installation GitHub named, made on first sight."""
        ident = int(found.id)
        with self._lock:
            known = self._installations.get(ident)
        if known is not None:
            return known
        assert self._app_auth is not None
        account, permissions = found.raw_data.get("account"), found.raw_data.get("permissions")
        installation = AppInstallation(
            ident,
            str(account.get("login") or "?") if isinstance(account, dict) else "?",
            {str(k): str(v) for k, v in permissions.items()} if isinstance(permissions, dict) else {},
            # Each client gets its own AppInstallationAuth: it fetches and renews the installation
            # token through that client (PyGithub renews it shortly before it expires).
            Github(auth=self._app_auth.get_installation_auth(ident), **self._options),
            Github(auth=self._app_auth.get_installation_auth(ident), **self._poll_options),
        )
        with self._lock:
            self._installations[ident] = installation
        return installation

    def commit_url(self, repo: str, sha: str) -> str:
        """The commit's web page, derived from the API URL without a request."""
        return f"{_web_root(self._api_url)}/{repo}/commit/{sha}"

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
            handle = self._main(repo).get_repo(repo)
        with self._lock:
            self._repos[key] = handle
        return handle

    @staticmethod
    def _repo_path(repo: str) -> str:
        """``/repos/owner/name``, relative to the API URL (no request for the repo itself)."""
        if not _REPO_NAME.fullmatch(repo):
            raise InvalidRepoName(f"`{repo}` is not a GitHub repo name (owner/name).")
        return f"/repos/{repo}"

    @staticmethod
    def _unknown_ref(repo: str, ref: str) -> Callable[[GithubException], BotError]:
        def unknown(exc: GithubException) -> BotError:
            return InvalidRef(f"Unknown ref `{ref}` in {repo}.")

        return unknown

    @contextmanager
    def _guard(
        self,
        action: str,
        repo: str,
        on_status: Mapping[int, Callable[[GithubException], BotError]] | None = None,
    ) -> Iterator[Answer]:
        """Turn every PyGithub / transport failure inside into a one-line BotError.

        Each call is reported to ``on_response``; a call that reads the status itself (a
        conditional GET) sets it on the yielded Answer.
        """
        answer = Answer()
        try:
            yield answer
        except GithubException as exc:
            self._report(action, str(exc.status), exc.headers)
            handler = (on_status or {}).get(exc.status)
            if handler is not None:
                raise handler(exc) from exc
            raise GitHubError(self._describe(exc, action, repo)) from exc
        except (requests.RequestException, Urllib3Error) as exc:
            self._report(action, "unreachable", None)
            # `from None`: requests errors carry the prepared request and its Authorization header.
            raise GitHubError(self._describe_transport(exc, action, repo)) from None
        self._report(action, answer.status, answer.headers)

    def _report(self, action: str, status: str, headers: Mapping[str, Any] | None) -> None:
        if self.on_response is None:
            return
        # Calls that read their own answer (head polls, every cycle) carry the header; PyGithub's
        # object calls do not expose it, so they leave the rate-limit gauge as the polls set it.
        remaining = _whole(_header(headers, "X-RateLimit-Remaining")) if headers else None
        self.on_response(action, status, remaining if remaining is not None and remaining >= 0 else None)

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
