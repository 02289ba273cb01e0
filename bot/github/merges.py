"""The merge poller's GitHub reads: a branch head by conditional GET, compare, pull requests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from github.GithubException import GithubException
from github.Requester import Requester

from bot.errors import BotError, GitHubError, InvalidRef, RateLimited, UnknownRepo
from bot.github.client import (
    REASON_LIMIT,
    GitHubClient,
    _header,
    _json_object,
    _number,
    _web_root,
    _whole,
)
from bot.models import CommitInfo, Comparison, HeadPoll, PullInfo
from bot.text import one_line


class MergeReads(GitHubClient):
    """What the poller reads: cheap head polls that never wait, then the news behind a move."""

    def poll_head(self, repo: str, branch: str, etag: str | None) -> HeadPoll:
        """A branch head by conditional request, without fetching the repo first.

        304 → ``sha`` None (costs no rate-limit unit). A deleted branch raises InvalidRef; a repo
        that is gone or no longer readable raises UnknownRepo; a rate limit raises RateLimited
        at once (no waiting here); anything else that fails is a GitHubError.
        """
        path = self._repo_path(repo)
        headers = {"If-None-Match": etag} if etag else {}
        url = f"{path}/branches/{quote(branch, safe='')}"
        requester = self._poller(repo).requester
        with self._guard("read branch head", repo) as answer:
            status, answer_headers, body = requester.requestJson("GET", url, headers=headers)
            answer.status, answer.headers = str(status), answer_headers
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
            reason = one_line(message or "Forbidden", REASON_LIMIT)
            raise UnknownRepo(f"The GitHub token can no longer read {repo} ({status}: {reason}).")
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
                _, data = self._main(repo).requester.requestJsonAndCheck("GET", url)
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

    def compare_url(self, repo: str, base: str, head: str) -> str:
        """The web page comparing two commits, derived from the API URL without a request."""
        return f"{_web_root(self._api_url)}/{repo}/compare/{base}...{head}"

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        """The pull requests GitHub associates with a commit (merged ones and open ones)."""
        url = f"{self._repo_path(repo)}/commits/{quote(sha, safe='')}/pulls"
        unknown = self._unknown_ref(repo, sha)
        with self._guard("list pull requests of a commit", repo, {404: unknown, 422: unknown}):
            _, data = self._main(repo).requester.requestJsonAndCheck("GET", url, parameters={"per_page": 100})
        items = data if isinstance(data, list) else []
        return [p for p in (_pull_info(i) for i in items if isinstance(i, dict)) if p is not None]

    def pull_request(self, repo: str, number: int) -> PullInfo:
        """One pull request with its merger (the list endpoints leave ``merged_by`` out)."""
        url = f"{self._repo_path(repo)}/pulls/{int(number)}"
        with self._guard("read pull request", repo):
            _, data = self._main(repo).requester.requestJsonAndCheck("GET", url)
        found = _pull_info(data) if isinstance(data, dict) else None
        if found is None:
            raise GitHubError(f"GitHub answered read pull request #{number} for {repo} without a number")
        return found

    def _branch_or_repo_gone(self, repo: str, branch: str, path: str) -> None:
        """After a 404 on a branch: one more read tells a deleted branch from a lost repo."""
        with self._guard("read repo", repo) as answer:
            status, answer_headers, _ = self._poller(repo).requester.requestJson("GET", path)
            answer.status, answer.headers = str(status), answer_headers
        if status in (403, 404):
            raise UnknownRepo(f"GitHub has no repo {repo}, or the token cannot read it.")
        raise InvalidRef(f"Branch `{branch}` of {repo} is gone (deleted or renamed on GitHub).")


class _NoComparison(BotError):
    """Internal: compare answered 404/422, i.e. there is no common history to list."""


def _none(exc: GithubException) -> BotError:
    return _NoComparison(str(exc.status))


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
    author = inner.get("author") if isinstance(inner, dict) else None
    name = str(author.get("name") or "") if isinstance(author, dict) else ""
    when = _parse_time(author.get("date")) if isinstance(author, dict) else None
    title = message.split("\n", 1)[0].strip()
    return CommitInfo(data["sha"], title, parents, _login(data.get("author")) or name, when)


def _parse_time(value: object) -> datetime | None:
    """GitHub's ISO 8601 time (`2026-12-01T10:02:03Z`), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
