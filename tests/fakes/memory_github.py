"""MemoryGitHub: the GitHub calls answered from what a test scripted; deployments recorded."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from bot.errors import DeploymentRefused, GitHubError, InvalidRef, UnknownRepo
from bot.models import (
    CommitInfo,
    Comparison,
    ContextResult,
    ContextState,
    GateResult,
    HeadPoll,
    PullInfo,
    RequiredContext,
)


@dataclass
class MemoryDeployment:
    """A Deployment the robot created, with the statuses it posted (state, description, log_url)."""

    id: int
    repo: str
    sha: str
    environment: str
    required_contexts: tuple[str, ...]
    payload: Mapping[str, object]
    description: str
    statuses: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        return [state for state, _, _ in self.statuses]


CiAnswer = Mapping[str, ContextState] | Exception


class MemoryGitHub:
    """GitHubPort and the poller's GitHub calls, answered from what a test scripted.

    Refs: ``add_repo`` / ``push`` / ``set_ref``. CI: ``script_ci(repo, sha, *answers)`` — each
    call takes the next answer (a context→state map, or an exception to raise) and the last one
    repeats; unscripted contexts are missing. Head polls, comparisons and pulls are queued or set
    per repo; a head poll with nothing queued answers the ref's current SHA, or 304 when the ETag
    matches it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shas = (f"{n:040x}" for n in itertools.count(0xC0FFEE))
        self._deployment_ids = itertools.count(1000)
        self.refs: dict[str, dict[str, str]] = {}
        self.commits: dict[str, set[str]] = {}
        self.ci: dict[tuple[str, str], list[CiAnswer]] = {}
        self.ci_calls = 0
        self.deployments: list[MemoryDeployment] = []
        self.refuse_deployments: str | None = None
        self.status_failures = 0  # the next N set_deployment_status calls raise GitHubError
        self.head_polls: dict[str, list[HeadPoll | Exception]] = {}
        self.comparisons: dict[tuple[str, str, str], Comparison] = {}
        self.pulls: dict[tuple[str, str], list[PullInfo]] = {}
        self.mergers: dict[tuple[str, int], str] = {}
        self.head_poll_calls: list[tuple[str, str, str | None]] = []
        self.compare_calls: list[tuple[str, str, str]] = []
        self.compare_failures: list[Exception] = []  # the next compare calls raise these, in order

    # scripting

    def add_repo(self, repo: str, branch: str = "main") -> str:
        """A repo whose ``branch`` points at a new SHA; returns it."""
        sha = self.new_sha()
        self.refs[repo] = {}
        return self.set_ref(repo, branch, sha)

    def new_sha(self) -> str:
        return next(self._shas)

    def push(self, repo: str, branch: str = "main") -> str:
        """Move ``branch`` to a new SHA; returns it."""
        return self.set_ref(repo, branch, self.new_sha())

    def set_ref(self, repo: str, ref: str, sha: str) -> str:
        self.refs.setdefault(repo, {})[ref] = sha
        self.commits.setdefault(repo, set()).add(sha)
        return sha

    def script_ci(self, repo: str, sha: str, *answers: CiAnswer) -> None:
        self.ci[(repo, sha)] = list(answers)

    def green(self, repo: str, sha: str, *contexts: str) -> None:
        self.script_ci(repo, sha, {c: ContextState.SUCCESS for c in contexts})

    def queue_head_poll(self, repo: str, *polls: HeadPoll | Exception) -> None:
        self.head_polls.setdefault(repo, []).extend(polls)

    def deployments_of(self, repo: str, environment: str | None = None) -> list[MemoryDeployment]:
        return [
            d
            for d in self.deployments
            if d.repo == repo and (environment is None or d.environment == environment)
        ]

    # GitHubPort

    def resolve_ref(self, repo: str, ref: str) -> str:
        refs = self._refs(repo)
        if ref in refs:
            return refs[ref]
        matches = [sha for sha in self.commits.get(repo, ()) if sha.startswith(ref) and len(ref) >= 7]
        if len(matches) == 1:
            return matches[0]
        raise InvalidRef(f"GitHub does not know `{ref}` in {repo}.")

    def ci_state(self, repo: str, sha: str, contexts: Sequence[RequiredContext | str]) -> GateResult:
        with self._lock:
            self.ci_calls += 1
            answers = self.ci.get((repo, sha), [])
            answer: CiAnswer = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else {}
        if isinstance(answer, Exception):
            raise answer
        return GateResult(
            tuple(
                ContextResult(name, answer.get(name, ContextState.MISSING))
                for name in (c if isinstance(c, str) else c.name for c in contexts)
            )
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
        self._refs(repo)
        if self.refuse_deployments is not None:
            raise DeploymentRefused(f"GitHub refused the deployment (409): {self.refuse_deployments}")
        deployment = MemoryDeployment(
            next(self._deployment_ids),
            repo,
            sha,
            environment,
            tuple(required_contexts),
            dict(payload),
            description,
        )
        with self._lock:
            self.deployments.append(deployment)
        return deployment.id

    def set_deployment_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        description: str,
        log_url: str | None = None,
    ) -> None:
        with self._lock:
            if self.status_failures > 0:
                self.status_failures -= 1
                raise GitHubError("GitHub answered 502 to a deployment status")
            (deployment,) = [d for d in self.deployments if d.id == deployment_id and d.repo == repo]
            deployment.statuses.append((state, description, log_url))

    def commit_url(self, repo: str, sha: str) -> str:
        return f"https://github.test/{repo}/commit/{sha}"

    # the poller's calls

    def poll_head(self, repo: str, branch: str, etag: str | None) -> HeadPoll:
        with self._lock:
            self.head_poll_calls.append((repo, branch, etag))
            queued = self.head_polls.get(repo)
            scripted = queued.pop(0) if queued else None
        if isinstance(scripted, Exception):
            raise scripted
        if scripted is not None:
            return scripted
        refs = self._refs(repo)
        if branch not in refs:
            raise InvalidRef(f"Branch `{branch}` of {repo} does not exist.")
        sha = refs[branch]
        if etag == f'"{sha}"':
            return HeadPoll(None, etag)
        return HeadPoll(sha, f'"{sha}"')

    def compare_url(self, repo: str, base: str, head: str) -> str:
        return f"https://github.test/{repo}/compare/{base}...{head}"

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        with self._lock:
            self.compare_calls.append((repo, base, head))
            failure = self.compare_failures.pop(0) if self.compare_failures else None
        if failure is not None:
            raise failure
        found = self.comparisons.get((repo, base, head))
        if found is not None:
            return found
        # By default the head is one direct push on top of the base.
        return Comparison("ahead", 1, 0, 1, (CommitInfo(head, f"commit {head[:7]}", (base,)),))

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        return list(self.pulls.get((repo, sha), []))

    def pull_request(self, repo: str, number: int) -> PullInfo:
        for pulls in self.pulls.values():
            for pull in pulls:
                if pull.number == number:
                    return replace(pull, merged_by=self.mergers.get((repo, number)))
        raise UnknownRepo(f"No pull request #{number} in {repo}.")

    def merge_pull(self, repo: str, number: int, author: str, merger: str, branch: str = "main") -> str:
        """Merge a pull request into ``branch``: the branch moves to its merge commit."""
        base = self._refs(repo)[branch]
        sha = self.push(repo, branch)
        pull = PullInfo(
            number, f"PR {number}", author, branch, True, sha, f"https://github.test/{repo}/pull/{number}"
        )
        self.pulls[(repo, sha)] = [pull]
        self.mergers[(repo, number)] = merger
        self.comparisons[(repo, base, sha)] = Comparison(
            "ahead", 1, 0, 1, (CommitInfo(sha, f"Merge pull request #{number}", (base,)),)
        )
        return sha

    def _refs(self, repo: str) -> dict[str, str]:
        if repo not in self.refs:
            raise UnknownRepo(f"GitHub has no repo {repo} (or the token cannot see it).")
        return self.refs[repo]
