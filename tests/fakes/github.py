"""A fake GitHub REST API on 127.0.0.1 that real PyGithub talks to in tests."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.loopback import LoopbackServer

JSON = dict[str, Any]
DOCS = "https://docs.github.com/rest"
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
STATUS_STATES = ("error", "failure", "pending", "success")
# What the README tells users to grant the robot's GitHub App.
APP_PERMISSIONS = {
    "contents": "read",
    "statuses": "read",
    "checks": "read",
    "deployments": "write",
    "pull_requests": "read",
    "metadata": "read",
}
# The App-authenticated (JWT) endpoints; every other one wants a token.
_APP_PATH = re.compile(r"/app(/.*)?|/repos/[^/]+/[^/]+/installation|/(orgs|users)/[^/]+/installation")


def generate_app_key() -> str:
    """A fresh RSA private key in the PEM form GitHub hands out for an App (made per test run)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class LoggedRequest(NamedTuple):
    """One request the fake answered: method, path without query, status sent."""

    method: str
    path: str
    status: int


class _Answer(NamedTuple):
    status: int
    body: Any
    headers: Mapping[str, str]


class _HttpError(Exception):
    """Raised inside a route to answer with an error status and GitHub-shaped body."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = code
        self.body: JSON = {"message": message, "documentation_url": DOCS, **extra}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeCommit:
    """A commit: only what the API answers need."""

    sha: str
    message: str
    parents: list[str]
    date: datetime
    author: str | None = "dev"  # the author's GitHub login; None: an author GitHub links to no account
    author_name: str = "Dev"


@dataclass
class FakeStatus:
    """One commit status as posted by a CI."""

    id: int
    sha: str
    context: str
    state: str
    target_url: str | None
    description: str | None
    created_at: datetime


@dataclass
class FakeCheckRun:
    """One check run of a GitHub App."""

    id: int
    sha: str
    name: str
    status: str
    conclusion: str | None
    details_url: str | None
    app: str
    title: str | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass
class FakeDeployment:
    """A deployment with the raw JSON body the client sent and its statuses' raw bodies."""

    id: int
    repo: str
    sha: str
    request: JSON
    created_at: datetime
    statuses: list[JSON] = field(default_factory=list)

    @property
    def ref(self) -> Any:
        return self.request.get("ref")

    @property
    def environment(self) -> Any:
        return self.request.get("environment", "production")

    @property
    def payload(self) -> Any:
        return self.request.get("payload")

    @property
    def required_contexts(self) -> Any:
        return self.request.get("required_contexts")

    @property
    def auto_merge(self) -> Any:
        return self.request.get("auto_merge")

    @property
    def task(self) -> Any:
        return self.request.get("task")

    @property
    def description(self) -> Any:
        return self.request.get("description")


@dataclass
class FakePull:
    """A pull request associated with a commit."""

    number: int
    title: str
    user: str
    merged_by: str | None
    base: str
    head_sha: str
    merge_commit_sha: str | None
    merged_at: datetime | None


@dataclass(frozen=True)
class FakeApp:
    """A GitHub App: GitHub keeps its public key; the robot signs JWTs with ``private_key``."""

    id: int
    slug: str
    name: str
    private_key: str = field(repr=False)
    public_key: str = field(repr=False)


@dataclass(frozen=True)
class FakeInstallation:
    """An App installed on an account: on all its repos (``repos`` None) or the listed ones."""

    id: int
    app_id: int
    account: str
    repos: frozenset[str] | None
    permissions: Mapping[str, str]

    def covers(self, full_name: str) -> bool:
        owner = full_name.split("/", 1)[0]
        if owner.lower() != self.account.lower():
            return False
        return self.repos is None or full_name.lower() in self.repos


@dataclass(frozen=True)
class IssuedToken:
    """An installation access token the fake handed out, valid until ``expires`` (time.time())."""

    token: str
    installation_id: int
    expires: float


@dataclass
class _Repo:
    full_name: str
    id: int
    default_branch: str
    private: bool
    permissions: dict[str, bool]
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, FakeCommit] = field(default_factory=dict)
    statuses: list[FakeStatus] = field(default_factory=list)
    check_runs: list[FakeCheckRun] = field(default_factory=list)
    deployments: list[FakeDeployment] = field(default_factory=list)
    pulls: dict[str, list[FakePull]] = field(default_factory=dict)


@dataclass
class _Rule:
    """A fault that applies to the next ``remaining`` matching requests (None: until cleared)."""

    kind: str
    remaining: int | None
    path_contains: str | None
    status: int = 502
    seconds: float = 0.0
    message: str | None = None
    extra: JSON = field(default_factory=dict)
    until: float | None = None  # time.monotonic() after which the rule is spent

    def matches(self, path: str) -> bool:
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return self.path_contains is None or self.path_contains in path

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class FakeGitHub:
    """In-memory GitHub with a REST front on 127.0.0.1, fault injection and a request log."""

    def __init__(self, tokens: Mapping[str, str] | None = None, rate_limit: int = 5000) -> None:
        self.tokens: dict[str, str] = dict(tokens or {"test-token": "deploy-robot"})
        self.rate_limit = rate_limit
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._repos: dict[str, _Repo] = {}
        self._ids = itertools.count(1001)
        self._log: list[LoggedRequest] = []
        self._rules: list[_Rule] = []
        self._deploy_answers: list[_Rule] = []
        self._extra_headers: list[tuple[str | None, str, str]] = []
        self._units_used = 0
        self._window_reset = datetime.now(UTC) + timedelta(hours=1)
        self.server_errors: list[str] = []
        self._loopback: LoopbackServer | None = None
        self._apps: dict[int, FakeApp] = {}
        self._installations: dict[int, FakeInstallation] = {}
        self._issued: dict[str, IssuedToken] = {}
        self._caller: FakeApp | FakeInstallation | None = None  # who sent the request being routed
        self.token_lifetime = 3600.0  # seconds an installation token lasts (GitHub: one hour)
        self.expired_refusals = 0  # requests refused because their installation token had expired

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def token(self) -> str:
        """A token the fake accepts."""
        return next(iter(self.tokens))

    @property
    def url(self) -> str:
        """The base URL, usable as PyGithub ``base_url``."""
        if self._loopback is None:
            raise RuntimeError("FakeGitHub is not started")
        return self._loopback.url

    def start(self) -> FakeGitHub:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        self._loopback = LoopbackServer(type("Handler", (_Handler,), {"fake": self}))
        return self

    def stop(self) -> None:
        """Stop serving; delayed requests are cut short."""
        self._stopping.set()
        if self._loopback is not None:
            self._loopback.close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- state set-up ----------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        default_branch: str = "main",
        *,
        private: bool = True,
        permissions: Mapping[str, bool] | None = None,
    ) -> str:
        """Create a repo with one commit on its default branch; returns that commit's SHA."""
        perms = {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}
        perms.update(permissions or {})
        with self._lock:
            repo = _Repo(full_name, next(self._ids), default_branch, private, perms)
            self._repos[full_name.lower()] = repo
            return self._commit(repo, default_branch, "Initial commit")

    def push(
        self,
        repo: str,
        branch: str,
        sha: str | None = None,
        message: str = "Change",
        *,
        author: str | None = "dev",
        author_name: str = "Dev",
        date: datetime | None = None,
    ) -> str:
        """A new commit on ``branch`` (created if new); with ``sha``, force the branch to it.

        ``author`` is the author's login (None: no GitHub account, only ``author_name``).
        """
        with self._lock:
            r = self._repo(repo)
            if sha is None:
                new = self._commit(r, branch, message)
                r.commits[new].author, r.commits[new].author_name = author, author_name
                if date is not None:
                    r.commits[new].date = date
                return new
            if sha not in r.commits:
                r.commits[sha] = FakeCommit(sha, message, [], datetime.now(UTC))
            r.branches[branch] = sha
            return sha

    def force_push(self, repo: str, branch: str, parent: str | None, message: str = "Rewritten") -> str:
        """A new commit on ``parent`` (None: a new root) that ``branch`` is forced to; returns its SHA."""
        with self._lock:
            r = self._repo(repo)
            n = next(self._ids)
            sha = hashlib.sha1(f"{r.full_name}:{branch}:{n}:{message}:forced".encode()).hexdigest()
            r.commits[sha] = FakeCommit(sha, message, [parent] if parent else [], datetime.now(UTC))
            r.branches[branch] = sha
            return sha

    def delete_repo(self, repo: str) -> None:
        """Remove a repo: every request about it answers 404 from now on."""
        with self._lock:
            del self._repos[repo.lower()]

    def delete_branch(self, repo: str, branch: str) -> None:
        """Remove a branch."""
        with self._lock:
            del self._repo(repo).branches[branch]

    def add_tag(self, repo: str, tag: str, sha: str | None = None) -> str:
        """A tag on ``sha`` (default: the default branch head); returns the SHA."""
        with self._lock:
            r = self._repo(repo)
            target = sha or r.branches[r.default_branch]
            r.tags[tag] = target
            return target

    def head(self, repo: str, branch: str) -> str:
        """The SHA a branch points at."""
        with self._lock:
            return self._repo(repo).branches[branch]

    def set_status(
        self,
        repo: str,
        sha: str,
        context: str,
        state: str,
        target_url: str | None = None,
        description: str | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """Post a commit status (the newest of a context wins); returns its id."""
        if state not in STATUS_STATES:
            raise ValueError(f"state must be one of {STATUS_STATES}")
        with self._lock:
            status = FakeStatus(
                next(self._ids),
                sha,
                context,
                state,
                target_url,
                description,
                created_at or datetime.now(UTC),
            )
            self._repo(repo).statuses.append(status)
            return status.id

    def set_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = None,
        details_url: str | None = None,
        *,
        app: str = "github-actions",
        title: str | None = None,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
    ) -> int:
        """Create a check run; ``completed`` ones need a conclusion. Returns its id."""
        if status == "completed" and conclusion is None:
            raise ValueError("a completed check run needs a conclusion")
        now = datetime.now(UTC)
        with self._lock:
            run = FakeCheckRun(
                next(self._ids),
                sha,
                name,
                status,
                conclusion,
                details_url,
                app,
                title,
                started_at or now,
                completed_at or (now if status == "completed" else None),
            )
            self._repo(repo).check_runs.append(run)
            return run.id

    def add_pull_for_commit(
        self,
        repo: str,
        sha: str,
        number: int,
        title: str,
        user: str = "alice",
        merged_by: str | None = "bob",
        base: str | None = None,
        head_sha: str | None = None,
    ) -> FakePull:
        """Associate a merged pull request with ``sha`` (its merge commit)."""
        with self._lock:
            r = self._repo(repo)
            pull = FakePull(
                number,
                title,
                user,
                merged_by,
                base or r.default_branch,
                head_sha or sha,
                sha if merged_by else None,
                datetime.now(UTC) if merged_by else None,
            )
            r.pulls.setdefault(sha, []).append(pull)
            return pull

    def add_app(
        self, slug: str = "deploy-robot", name: str = "Deploy Robot", private_key: str | None = None
    ) -> FakeApp:
        """Register a GitHub App; its key pair is generated unless ``private_key`` is given."""
        pem = private_key or generate_app_key()
        with self._lock:
            app = FakeApp(next(self._ids), slug, name, pem, _public_pem(pem))
            self._apps[app.id] = app
            return app

    def install_app(
        self,
        app: FakeApp,
        account: str,
        repos: Iterable[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> FakeInstallation:
        """Install ``app`` on ``account``: all its repos, or only ``repos`` (owner/name)."""
        with self._lock:
            installation = FakeInstallation(
                next(self._ids),
                app.id,
                account,
                None if repos is None else frozenset(r.lower() for r in repos),
                dict(APP_PERMISSIONS if permissions is None else permissions),
            )
            self._installations[installation.id] = installation
            return installation

    # ---- inspection ------------------------------------------------------------------

    @property
    def issued_tokens(self) -> list[IssuedToken]:
        """Every installation token handed out, oldest first."""
        with self._lock:
            return list(self._issued.values())

    def deployments(self, repo: str) -> list[FakeDeployment]:
        """Every deployment created in ``repo``, oldest first."""
        with self._lock:
            return list(self._repo(repo).deployments)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered so far, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many logged requests match."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
        )

    @property
    def units_used(self) -> int:
        """Rate-limit units spent in the current window (304s and /rate_limit are free)."""
        with self._lock:
            return self._units_used

    # ---- fault injection -------------------------------------------------------------

    def fail_next(self, n: int, status: int = 502, path_contains: str | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status``."""
        with self._lock:
            self._rules.append(_Rule("fail", n, path_contains, status=status))

    def fail_for(self, seconds: float, status: int = 502, path_contains: str | None = None) -> None:
        """Answer every matching request with ``status`` for the next ``seconds`` (an outage)."""
        with self._lock:
            self._rules.append(
                _Rule("fail", None, path_contains, status=status, until=time.monotonic() + seconds)
            )

    def hang_next(self, n: int, seconds: float, path_contains: str | None = None) -> None:
        """Hold the next ``n`` matching requests ``seconds``, then answer 504 without acting on them.

        A gateway that timed out upstream: unlike ``delay``, the request is lost, so a client that
        gave up must send it again for it to take effect.
        """
        with self._lock:
            self._rules.append(_Rule("hang", n, path_contains, seconds=seconds))

    def rate_limit_next(
        self,
        n: int,
        kind: str = "primary",
        *,
        status: int | None = None,
        retry_after: float | None = 1,
        reset_in: int = 1,
        path_contains: str | None = None,
    ) -> None:
        """Rate-limit the next ``n`` requests.

        primary: 403 (default) with ``X-RateLimit-Remaining: 0`` and a reset ``reset_in`` s away;
        secondary: 429 (default) with ``Retry-After: retry_after`` unless that is None.
        """
        if kind not in ("primary", "secondary"):
            raise ValueError("kind is primary or secondary")
        code = status or (403 if kind == "primary" else 429)
        extra: JSON = {"retry_after": retry_after, "reset_in": reset_in}
        with self._lock:
            self._rules.append(_Rule(kind, n, path_contains, status=code, extra=extra))

    def delay(self, seconds: float, path_contains: str | None = None, count: int | None = None) -> None:
        """Hold matching requests ``seconds`` before answering (``count`` of them, or all)."""
        with self._lock:
            self._rules.append(_Rule("delay", count, path_contains, seconds=seconds))

    def create_deployment_answer(
        self,
        status: int,
        message: str | None = None,
        count: int = 1,
        errors: list[JSON] | None = None,
    ) -> None:
        """The next ``count`` create-deployment calls answer ``status`` (202, 409, 422…)."""
        default = {
            202: "Auto-merged main into topic-branch on deployment.",
            409: "Conflict merging main into topic-branch.",
            422: "Validation Failed",
        }.get(status, "Server Error")
        extra: JSON = {"errors": errors} if errors is not None else {}
        with self._lock:
            self._deploy_answers.append(
                _Rule("deploy", count, None, status=status, message=message or default, extra=extra)
            )

    def add_header(self, name: str, value: str, path_contains: str | None = None) -> None:
        """Send ``name: value`` on every matching answer from now on (e.g. X-Poll-Interval)."""
        with self._lock:
            self._extra_headers.append((path_contains, name, value))

    def use_units(self, n: int) -> None:
        """Spend ``n`` rate-limit units, as other clients of the same token would."""
        with self._lock:
            self._units_used += n

    def reset_window(self, reset_in: float = 3600) -> None:
        """Start a new rate-limit window: nothing used, resetting ``reset_in`` s from now."""
        with self._lock:
            self._units_used = 0
            self._window_reset = datetime.now(UTC) + timedelta(seconds=reset_in)

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._lock:
            self._rules.clear()
            self._deploy_answers.clear()

    # ---- internals: state ------------------------------------------------------------

    def _repo(self, name: str) -> _Repo:
        return self._repos[name.lower()]

    def _commit(self, repo: _Repo, branch: str, message: str) -> str:
        parent = repo.branches.get(branch) or repo.branches.get(repo.default_branch)
        n = next(self._ids)
        sha = hashlib.sha1(f"{repo.full_name}:{branch}:{n}:{message}".encode()).hexdigest()
        repo.commits[sha] = FakeCommit(sha, message, [parent] if parent else [], datetime.now(UTC))
        repo.branches[branch] = sha
        return sha

    def _resolve(self, repo: _Repo, ref: str) -> str | None:
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in repo.tags:
            return repo.tags[ref]
        for prefix in ("refs/heads/", "refs/tags/"):
            if ref.startswith(prefix):
                name = ref.removeprefix(prefix)
                return (repo.branches if "heads" in prefix else repo.tags).get(name)
        if re.fullmatch(r"[0-9a-f]{4,40}", ref):
            found = [sha for sha in repo.commits if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        return None

    def _must_resolve(self, repo: _Repo, ref: str) -> str:
        sha = self._resolve(repo, ref)
        if sha is None:
            raise _HttpError(422, f"No commit found for SHA: {ref}")
        return sha

    # ---- internals: HTTP -------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> _Answer:
        """Answer one request: delays, faults, auth, routing, ETag and rate-limit headers."""
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        hung = self._apply_hang(path)
        self._apply_delays(path)
        with self._lock:
            self._caller = None
            answer = (
                hung
                or self._fault(path)
                or self._authorize(path, headers)
                or self._route(method, path, query, body)
            )
            answer = self._conditional(method, headers, answer)
            if path != "/rate_limit" and answer.status != 304:
                self._units_used += 1
            out = dict(answer.headers)
            out.setdefault("X-RateLimit-Limit", str(self.rate_limit))
            out.setdefault("X-RateLimit-Remaining", str(max(0, self.rate_limit - self._units_used)))
            out.setdefault("X-RateLimit-Reset", str(int(self._window_reset.timestamp())))
            out.setdefault("X-RateLimit-Used", str(self._units_used))
            out.setdefault("X-RateLimit-Resource", "core")
            for contains, name, value in self._extra_headers:
                if contains is None or contains in path:
                    out[name] = value
            self._log.append(LoggedRequest(method, path, answer.status))
            return _Answer(answer.status, answer.body, out)

    def _apply_delays(self, path: str) -> None:
        with self._lock:
            rules = [r for r in self._rules if r.kind == "delay" and r.remaining != 0 and r.matches(path)]
            for rule in rules:
                rule.consume()
        for rule in rules:
            self._stopping.wait(rule.seconds)

    def _apply_hang(self, path: str) -> _Answer | None:
        with self._lock:
            rule = next(
                (r for r in self._rules if r.kind == "hang" and r.remaining != 0 and r.matches(path)), None
            )
            if rule is not None:
                rule.consume()
        if rule is None:
            return None
        self._stopping.wait(rule.seconds)
        return _Answer(504, {"message": "Gateway Timeout", "documentation_url": DOCS}, {})

    def _fault(self, path: str) -> _Answer | None:
        for rule in self._rules:
            if rule.kind in ("delay", "hang") or rule.remaining == 0 or not rule.matches(path):
                continue
            rule.consume()
            if rule.kind == "fail":
                return _Answer(rule.status, {"message": "Server Error", "documentation_url": DOCS}, {})
            return self._rate_limited(rule)
        if self._units_used >= self.rate_limit:
            return self._rate_limited(_Rule("primary", 1, None, status=403, extra={"reset_in": None}))
        return None

    def _rate_limited(self, rule: _Rule) -> _Answer:
        headers: dict[str, str] = {}
        if rule.kind == "primary":
            reset_in = rule.extra.get("reset_in")
            reset = (
                self._window_reset
                if reset_in is None
                else datetime.now(UTC) + timedelta(seconds=int(reset_in))
            )
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(reset.timestamp()))
            message = "API rate limit exceeded for user ID 1."
        else:
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
            retry_after = rule.extra.get("retry_after")
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
        return _Answer(rule.status, {"message": message, "documentation_url": DOCS}, headers)

    def _authorize(self, path: str, headers: Mapping[str, str]) -> _Answer | None:
        """Who may call: an App (by a JWT it signed) on the App endpoints; a token on the others."""
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if not auth:
            return _Answer(401, {"message": "Requires authentication", "documentation_url": DOCS}, {})
        if _APP_PATH.fullmatch(path):
            if scheme.lower() != "bearer":
                return self._unauthorized("A JSON web token could not be decoded")
            app_or_problem = self._verify_jwt(token)
            if isinstance(app_or_problem, str):
                return self._unauthorized(app_or_problem)
            self._caller = app_or_problem
            return None
        if scheme.lower() not in ("token", "bearer"):
            return self._unauthorized("Bad credentials")
        if token in self.tokens:
            return None
        issued = self._issued.get(token)
        if issued is None:
            return self._unauthorized("Bad credentials")
        if time.time() >= issued.expires:
            self.expired_refusals += 1
            return self._unauthorized("Bad credentials")
        self._caller = self._installations[issued.installation_id]
        return None

    def _unauthorized(self, message: str) -> _Answer:
        return _Answer(401, {"message": message, "documentation_url": DOCS}, {})

    def _verify_jwt(self, token: str) -> FakeApp | str:
        """The App that signed ``token`` (RS256, its key, unexpired, iss = its id), or why not."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app = self._apps.get(int(claims["iss"]))
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return "A JSON web token could not be decoded"
        if app is None:
            return "Integration not found"
        try:
            verified = jwt.decode(
                token,
                app.public_key,
                algorithms=["RS256"],
                issuer=str(app.id),
                options={"require": ["exp", "iat", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return "'Expiration time' claim ('exp') must be a numeric value representing the future time"
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        if int(verified["exp"]) - int(verified["iat"]) > 660:  # GitHub: at most 10 minutes (+ skew)
            return "'Expiration time' claim ('exp') is too far in the future"
        return app

    def _conditional(self, method: str, headers: Mapping[str, str], answer: _Answer) -> _Answer:
        if method != "GET" or answer.status != 200:
            return answer
        digest = hashlib.sha1(json.dumps(answer.body, sort_keys=True).encode()).hexdigest()
        etag = f'W/"{digest}"'
        sent = headers.get("If-None-Match") or headers.get("if-none-match")
        if sent is not None and etag in [t.strip() for t in sent.split(",")]:
            return _Answer(304, None, {"ETag": etag})
        return _Answer(200, answer.body, {**answer.headers, "ETag": etag})

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> _Answer:
        for verb, pattern, route in self._routes():
            match = re.fullmatch(pattern, path)
            if match is None or verb != method:
                continue
            args = [unquote(g) for g in match.groups()]
            try:
                data = json.loads(body) if body else {}
                return route(path, query, data, *args)
            except _HttpError as exc:
                return _Answer(exc.status, exc.body, {})
            except json.JSONDecodeError:
                return _Answer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS}, {})
        return _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {})

    def _routes(self) -> list[tuple[str, str, Callable[..., _Answer]]]:
        r = r"/repos/([^/]+)/([^/]+)"
        return [
            ("GET", r"/rate_limit", self._get_rate_limit),
            ("GET", r"/user", self._get_user),
            ("GET", rf"{r}", self._get_repo),
            ("GET", rf"{r}/branches/(.+)", self._get_branch),
            ("GET", rf"{r}/commits/([^/]+)", self._get_commit),
            ("GET", rf"{r}/commits/([^/]+)/statuses", self._get_statuses),
            ("GET", rf"{r}/statuses/([^/]+)", self._get_statuses),
            ("GET", rf"{r}/commits/([^/]+)/status", self._get_combined_status),
            ("GET", rf"{r}/commits/([^/]+)/check-runs", self._get_check_runs),
            ("GET", rf"{r}/commits/([^/]+)/pulls", self._get_commit_pulls),
            ("GET", rf"{r}/compare/(.+?)\.\.\.(.+)", self._get_compare),
            ("GET", rf"{r}/pulls/(\d+)", self._get_pull),
            ("GET", rf"{r}/deployments", self._get_deployments),
            ("POST", rf"{r}/deployments", self._post_deployment),
            ("GET", rf"{r}/deployments/(\d+)", self._get_deployment),
            ("GET", rf"{r}/deployments/(\d+)/statuses", self._get_deployment_statuses),
            ("POST", rf"{r}/deployments/(\d+)/statuses", self._post_deployment_status),
            ("GET", r"/app", self._get_app),
            ("GET", r"/app/installations", self._get_app_installations),
            ("GET", r"/app/installations/(\d+)", self._get_app_installation),
            ("POST", r"/app/installations/(\d+)/access_tokens", self._post_access_token),
            ("GET", rf"{r}/installation", self._get_repo_installation),
            ("GET", r"/orgs/([^/]+)/installation", self._get_account_installation),
            ("GET", r"/users/([^/]+)/installation", self._get_account_installation),
        ]

    # ---- internals: JSON shapes ------------------------------------------------------

    def _found(self, owner: str, name: str) -> _Repo:
        repo = self._repos.get(f"{owner}/{name}".lower())
        caller = self._caller
        hidden = (
            isinstance(caller, FakeInstallation) and repo is not None and not caller.covers(repo.full_name)
        )
        if repo is None or hidden:  # GitHub hides what a token may not read behind 404
            raise _HttpError(404, "Not Found", status="404")
        return repo

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/repos/{repo.full_name}"

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = max(1, min(int(query.get("per_page", 30)), 100))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(n: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'per_page': per_page, 'page': n})}"

        rels = []
        if page < last:
            rels += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{link(1)}>; rel="first"', f'<{link(page - 1)}>; rel="prev"']
        return chunk, ({"Link": ", ".join(rels)} if rels else {})

    def _user(self, login: str) -> JSON:
        return {
            "login": login,
            "id": zlib.crc32(login.encode()) % 100000,
            "type": "User",
            "url": f"{self.url}/users/{login}",
        }

    def _repo_json(self, repo: _Repo) -> JSON:
        owner = repo.full_name.split("/")[0]
        return {
            "id": repo.id,
            "name": repo.full_name.split("/")[1],
            "full_name": repo.full_name,
            "owner": self._user(owner),
            "private": repo.private,
            "default_branch": repo.default_branch,
            "url": self._repo_url(repo),
            "html_url": f"{self.url}/{repo.full_name}",
            "permissions": dict(repo.permissions),
        }

    def _commit_json(self, repo: _Repo, sha: str) -> JSON:
        commit = repo.commits[sha]
        person = {"name": commit.author_name, "email": "dev@example.com", "date": _iso(commit.date)}
        account = self._user(commit.author) if commit.author else None
        return {
            "sha": sha,
            "url": f"{self._repo_url(repo)}/commits/{sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{sha}",
            "author": account,
            "committer": account,
            "commit": {"message": commit.message, "author": person, "committer": person},
            "parents": [{"sha": p, "url": f"{self._repo_url(repo)}/commits/{p}"} for p in commit.parents],
            "files": [],
        }

    def _status_json(self, repo: _Repo, s: FakeStatus) -> JSON:
        return {
            "id": s.id,
            "url": f"{self._repo_url(repo)}/statuses/{s.sha}",
            "state": s.state,
            "context": s.context,
            "target_url": s.target_url,
            "description": s.description,
            "created_at": _iso(s.created_at),
            "updated_at": _iso(s.created_at),
            "creator": self._user("ci-bot"),
        }

    def _check_json(self, repo: _Repo, c: FakeCheckRun) -> JSON:
        return {
            "id": c.id,
            "head_sha": c.sha,
            "name": c.name,
            "status": c.status,
            "conclusion": c.conclusion,
            "details_url": c.details_url,
            "html_url": f"{self.url}/{repo.full_name}/runs/{c.id}",
            "url": f"{self._repo_url(repo)}/check-runs/{c.id}",
            "started_at": _iso(c.started_at) if c.started_at else None,
            "completed_at": _iso(c.completed_at) if c.completed_at else None,
            "output": {"title": c.title, "summary": None, "text": None, "annotations_count": 0},
            "app": {"slug": c.app, "name": c.app, "id": zlib.crc32(c.app.encode()) % 1000},
        }

    def _deployment_json(self, repo: _Repo, d: FakeDeployment) -> JSON:
        url = f"{self._repo_url(repo)}/deployments/{d.id}"
        env = d.environment
        return {
            "url": url,
            "id": d.id,
            "sha": d.sha,
            "ref": d.ref,
            "task": d.request.get("task", "deploy"),
            "payload": d.request.get("payload", {}),
            "environment": env,
            "original_environment": env,
            "description": d.request.get("description"),
            "creator": self._user("deploy-robot"),
            "created_at": _iso(d.created_at),
            "updated_at": _iso(d.created_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": self._repo_url(repo),
            "transient_environment": d.request.get("transient_environment", False),
            "production_environment": d.request.get("production_environment", env == "production"),
        }

    def _deployment_status_json(self, repo: _Repo, d: FakeDeployment, s: JSON) -> JSON:
        url = f"{self._repo_url(repo)}/deployments/{d.id}"
        log_url = s["body"].get("log_url") or s["body"].get("target_url") or ""
        return {
            "url": f"{url}/statuses/{s['id']}",
            "id": s["id"],
            "state": s["body"]["state"],
            "description": s["body"].get("description", ""),
            "environment": d.environment,
            "target_url": log_url,
            "log_url": log_url,
            "environment_url": s["body"].get("environment_url", ""),
            "created_at": s["created_at"],
            "updated_at": s["created_at"],
            "deployment_url": url,
            "repository_url": self._repo_url(repo),
            "creator": self._user("deploy-robot"),
        }

    def _ok(self, body: Any, headers: Mapping[str, str] | None = None, status: int = 200) -> _Answer:
        return _Answer(status, body, dict(headers or {}))

    # ---- routes ----------------------------------------------------------------------

    def _get_rate_limit(self, path: str, query: dict[str, str], data: JSON) -> _Answer:
        core = {
            "limit": self.rate_limit,
            "used": self._units_used,
            "remaining": max(0, self.rate_limit - self._units_used),
            "reset": int(self._window_reset.timestamp()),
        }
        return self._ok({"resources": {"core": core}, "rate": core})

    def _get_user(self, path: str, query: dict[str, str], data: JSON) -> _Answer:
        if isinstance(self._caller, FakeInstallation):
            raise _HttpError(403, "Resource not accessible by integration")
        return self._ok(self._user(self.tokens[self.token]))

    def _calling_app(self) -> FakeApp:
        assert isinstance(self._caller, FakeApp)  # _authorize let only a JWT through to these
        return self._caller

    def _installation_json(self, installation: FakeInstallation) -> JSON:
        app = self._apps[installation.app_id]
        url = f"{self.url}/app/installations/{installation.id}"
        return {
            "id": installation.id,
            "account": {**self._user(installation.account), "type": "Organization"},
            "app_id": app.id,
            "app_slug": app.slug,
            "target_type": "Organization",
            "repository_selection": "all" if installation.repos is None else "selected",
            "access_tokens_url": f"{url}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{installation.id}",
            "permissions": dict(installation.permissions),
            "events": [],
        }

    def _installation_of(self, installation_id: str) -> FakeInstallation:
        installation = self._installations.get(int(installation_id))
        if installation is None or installation.app_id != self._calling_app().id:
            raise _HttpError(404, "Not Found", status="404")
        return installation

    def _get_app(self, path: str, query: dict[str, str], data: JSON) -> _Answer:
        app = self._calling_app()
        return self._ok(
            {
                "id": app.id,
                "slug": app.slug,
                "name": app.name,
                "owner": self._user("acme"),
                "html_url": f"{self.url}/apps/{app.slug}",
                "permissions": dict(APP_PERMISSIONS),
                "events": [],
            }
        )

    def _get_app_installations(self, path: str, query: dict[str, str], data: JSON) -> _Answer:
        app = self._calling_app()
        items = [self._installation_json(i) for i in self._installations.values() if i.app_id == app.id]
        chunk, headers = self._page(path, query, items)
        return self._ok(chunk, headers)

    def _get_app_installation(self, path: str, query: dict[str, str], data: JSON, i: str) -> _Answer:
        return self._ok(self._installation_json(self._installation_of(i)))

    def _post_access_token(self, path: str, query: dict[str, str], data: JSON, i: str) -> _Answer:
        installation = self._installation_of(i)
        expires = time.time() + self.token_lifetime
        issued = IssuedToken(f"ghs_{secrets.token_hex(18)}", installation.id, expires)
        self._issued[issued.token] = issued
        # Whole seconds, as GitHub writes it: never later than the moment the token stops working.
        expires_at = datetime.fromtimestamp(int(expires), UTC)
        body = {
            "token": issued.token,
            "expires_at": _iso(expires_at),
            "permissions": dict(installation.permissions),
            "repository_selection": "all" if installation.repos is None else "selected",
        }
        return self._ok(body, status=201)

    def _get_repo_installation(self, path: str, query: dict[str, str], data: JSON, o: str, n: str) -> _Answer:
        app = self._calling_app()
        full_name = f"{o}/{n}"
        for installation in self._installations.values():
            if (
                installation.app_id == app.id
                and full_name.lower() in self._repos
                and installation.covers(full_name)
            ):
                return self._ok(self._installation_json(installation))
        raise _HttpError(404, "Not Found", status="404")

    def _get_account_installation(
        self, path: str, query: dict[str, str], data: JSON, account: str
    ) -> _Answer:
        app = self._calling_app()
        for installation in self._installations.values():
            if installation.app_id == app.id and installation.account.lower() == account.lower():
                return self._ok(self._installation_json(installation))
        raise _HttpError(404, "Not Found", status="404")

    def _get_repo(self, path: str, query: dict[str, str], data: JSON, o: str, n: str) -> _Answer:
        return self._ok(self._repo_json(self._found(o, n)))

    def _get_branch(self, path: str, query: dict[str, str], data: JSON, o: str, n: str, b: str) -> _Answer:
        repo = self._found(o, n)
        if b not in repo.branches:
            raise _HttpError(404, "Branch not found")
        sha = repo.branches[b]
        return self._ok(
            {
                "name": b,
                "protected": False,
                "commit": self._commit_json(repo, sha),
                "_links": {
                    "self": f"{self._repo_url(repo)}/branches/{b}",
                    "html": f"{self.url}/{repo.full_name}/tree/{b}",
                },
            }
        )

    def _get_commit(self, path: str, query: dict[str, str], data: JSON, o: str, n: str, ref: str) -> _Answer:
        repo = self._found(o, n)
        return self._ok(self._commit_json(repo, self._must_resolve(repo, ref)))

    def _statuses_for(self, repo: _Repo, sha: str) -> list[FakeStatus]:
        # GitHub lists statuses newest first.
        return sorted((s for s in repo.statuses if s.sha == sha), key=lambda s: s.id, reverse=True)

    def _get_statuses(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, ref: str
    ) -> _Answer:
        repo = self._found(o, n)
        sha = self._must_resolve(repo, ref)
        items = [self._status_json(repo, s) for s in self._statuses_for(repo, sha)]
        chunk, headers = self._page(path, query, items)
        return self._ok(chunk, headers)

    def _get_combined_status(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, ref: str
    ) -> _Answer:
        repo = self._found(o, n)
        sha = self._must_resolve(repo, ref)
        latest: dict[str, FakeStatus] = {}
        for s in self._statuses_for(repo, sha):
            latest.setdefault(s.context, s)
        states = {s.state for s in latest.values()}
        state = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        items = [self._status_json(repo, s) for s in latest.values()]
        chunk, headers = self._page(path, query, items)
        return self._ok(
            {
                "state": state,
                "sha": sha,
                "total_count": len(items),
                "statuses": chunk,
                "repository": self._repo_json(repo),
                "commit_url": f"{self._repo_url(repo)}/commits/{sha}",
                "url": f"{self._repo_url(repo)}/commits/{sha}/status",
            },
            headers,
        )

    def _get_check_runs(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, ref: str
    ) -> _Answer:
        repo = self._found(o, n)
        sha = self._must_resolve(repo, ref)
        runs = [c for c in repo.check_runs if c.sha == sha]
        if query.get("filter", "latest") == "latest":
            # "latest" keeps the newest run of each name per app (suite), as GitHub does.
            newest: dict[tuple[str, str], FakeCheckRun] = {}
            for c in runs:
                newest[(c.app, c.name)] = c
            runs = sorted(newest.values(), key=lambda c: c.id)
        if "check_name" in query:
            runs = [c for c in runs if c.name == query["check_name"]]
        items = [self._check_json(repo, c) for c in runs]
        chunk, headers = self._page(path, query, items)
        return self._ok({"total_count": len(items), "check_runs": chunk}, headers)

    def _pull_json(self, repo: _Repo, p: FakePull, full: bool) -> JSON:
        body: JSON = {
            "url": f"{self._repo_url(repo)}/pulls/{p.number}",
            "id": p.number * 7,
            "number": p.number,
            "state": "closed" if p.merged_at else "open",
            "title": p.title,
            "user": self._user(p.user),
            "html_url": f"{self.url}/{repo.full_name}/pull/{p.number}",
            "merged_at": _iso(p.merged_at) if p.merged_at else None,
            "merge_commit_sha": p.merge_commit_sha,
            "base": {"ref": p.base, "sha": repo.branches.get(p.base)},
            "head": {"ref": f"pr-{p.number}", "sha": p.head_sha},
        }
        if full:
            body["merged"] = p.merged_at is not None
            body["merged_by"] = self._user(p.merged_by) if p.merged_by else None
        return body

    def _get_commit_pulls(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, ref: str
    ) -> _Answer:
        repo = self._found(o, n)
        sha = self._must_resolve(repo, ref)
        items = [self._pull_json(repo, p, full=False) for p in repo.pulls.get(sha, [])]
        chunk, headers = self._page(path, query, items)
        return self._ok(chunk, headers)

    def _ancestors(self, repo: _Repo, sha: str) -> list[str]:
        """``sha`` and everything reachable from it, nearest first (breadth first)."""
        seen: dict[str, None] = {}
        frontier = [sha]
        while frontier:
            current = frontier.pop(0)
            if current in seen or current not in repo.commits:
                continue
            seen[current] = None
            frontier.extend(repo.commits[current].parents)
        return list(seen)

    def _get_compare(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, base_ref: str, head_ref: str
    ) -> _Answer:
        repo = self._found(o, n)
        base, head = self._resolve(repo, base_ref), self._resolve(repo, head_ref)
        if base is None or head is None:
            raise _HttpError(404, "Not Found", status="404")
        of_head, of_base = self._ancestors(repo, head), self._ancestors(repo, base)
        base_set, head_set = set(of_base), set(of_head)
        common = [c for c in of_head if c in base_set]
        if not common:
            raise _HttpError(404, f"No common ancestor between {base_ref} and {head_ref}.", status="404")
        ahead = [c for c in of_head if c not in base_set]
        behind = [c for c in of_base if c not in head_set]
        status = (
            "identical" if base == head else "ahead" if not behind else "behind" if not ahead else "diverged"
        )
        # GitHub lists the commits oldest first and at most 250 of them.
        listed = list(reversed(ahead))[-250:]
        return self._ok(
            {
                "url": f"{self._repo_url(repo)}/compare/{base_ref}...{head_ref}",
                "html_url": f"{self.url}/{repo.full_name}/compare/{base_ref}...{head_ref}",
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": len(behind),
                "total_commits": len(ahead),
                "base_commit": self._commit_json(repo, base),
                "merge_base_commit": self._commit_json(repo, common[0]),
                "commits": [self._commit_json(repo, c) for c in listed],
                "files": [],
            }
        )

    def _get_pull(self, path: str, query: dict[str, str], data: JSON, o: str, n: str, number: str) -> _Answer:
        repo = self._found(o, n)
        for pulls in repo.pulls.values():
            for p in pulls:
                if p.number == int(number):
                    return self._ok(self._pull_json(repo, p, full=True))
        raise _HttpError(404, "Not Found", status="404")

    def _deployment(self, repo: _Repo, deployment_id: str) -> FakeDeployment:
        for d in repo.deployments:
            if d.id == int(deployment_id):
                return d
        raise _HttpError(404, "Not Found", status="404")

    def _get_deployments(self, path: str, query: dict[str, str], data: JSON, o: str, n: str) -> _Answer:
        repo = self._found(o, n)
        wanted = {k: query[k] for k in ("sha", "ref", "task", "environment") if k in query}
        found = [
            d
            for d in reversed(repo.deployments)
            if all(self._deployment_json(repo, d)[k] == v for k, v in wanted.items())
        ]
        items = [self._deployment_json(repo, d) for d in found]
        chunk, headers = self._page(path, query, items)
        return self._ok(chunk, headers)

    def _get_deployment(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, i: str
    ) -> _Answer:
        repo = self._found(o, n)
        return self._ok(self._deployment_json(repo, self._deployment(repo, i)))

    def _failing_contexts(self, repo: _Repo, sha: str, required: Iterable[str] | None) -> list[JSON]:
        newest: dict[str, str] = {}
        for s in sorted((s for s in repo.statuses if s.sha == sha), key=lambda s: s.id):
            newest[s.context] = s.state
        for c in sorted((c for c in repo.check_runs if c.sha == sha), key=lambda c: c.id):
            ok = c.status == "completed" and c.conclusion in ("success", "neutral", "skipped")
            newest[c.name] = "success" if ok else ("pending" if c.status != "completed" else "failure")
        names = list(newest) if required is None else list(required)
        states = [{"context": name, "state": newest.get(name, "missing")} for name in names]
        return states if any(s["state"] != "success" for s in states) else []

    def _post_deployment(self, path: str, query: dict[str, str], data: JSON, o: str, n: str) -> _Answer:
        repo = self._found(o, n)
        for rule in self._deploy_answers:
            if rule.remaining != 0:
                rule.consume()
                return _Answer(
                    rule.status,
                    {"message": rule.message, "documentation_url": DOCS, **rule.extra},
                    {},
                )
        ref = data.get("ref")
        if not isinstance(ref, str) or not ref:
            raise _HttpError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        sha = self._resolve(repo, ref)
        if sha is None:
            raise _HttpError(422, f"No ref found for: {ref}")
        required = data.get("required_contexts")
        failing = self._failing_contexts(repo, sha, required)
        if failing:
            raise _HttpError(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                errors=[
                    {
                        "contexts": failing,
                        "resource": "Deployment",
                        "field": "required_contexts",
                        "code": "invalid",
                    }
                ],
            )
        deployment = FakeDeployment(next(self._ids), repo.full_name, sha, data, datetime.now(UTC))
        repo.deployments.append(deployment)
        body = self._deployment_json(repo, deployment)
        return self._ok(body, {"Location": body["url"]}, status=201)

    def _get_deployment_statuses(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, i: str
    ) -> _Answer:
        repo = self._found(o, n)
        d = self._deployment(repo, i)
        items = [self._deployment_status_json(repo, d, s) for s in reversed(d.statuses)]
        chunk, headers = self._page(path, query, items)
        return self._ok(chunk, headers)

    def _post_deployment_status(
        self, path: str, query: dict[str, str], data: JSON, o: str, n: str, i: str
    ) -> _Answer:
        repo = self._found(o, n)
        d = self._deployment(repo, i)
        if data.get("state") not in DEPLOYMENT_STATES:
            raise _HttpError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "DeploymentStatus",
                        "field": "state",
                        "code": "invalid",
                        "message": "state is not included in the list: " + ", ".join(DEPLOYMENT_STATES),
                    }
                ],
            )
        if len(str(data.get("description") or "")) > 140:
            raise _HttpError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "DeploymentStatus",
                        "field": "description",
                        "code": "custom",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        status = {"id": next(self._ids), "created_at": _iso(datetime.now(UTC)), "body": data}
        d.statuses.append(status)
        return self._ok(self._deployment_status_json(repo, d, status), status=201)


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to the owning FakeGitHub."""

    fake: FakeGitHub
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms each.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            answer = self.fake.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception:  # a bug in the fake: answer 500 and keep it for the test to see
            self.fake.server_errors.append(traceback.format_exc())
            answer = _Answer(500, {"message": "fake GitHub crashed"}, {})
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.status != 304:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if answer.status != 304:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing to answer any more.
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_PATCH = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log on the fake is what tests read."""
