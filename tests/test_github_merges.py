"""The gateway's merge-polling reads (poll_head, compare, pull requests) against the fake GitHub."""

from __future__ import annotations

import time

import pytest

from bot.errors import GitHubError, InvalidRef, RateLimited, UnknownRepo
from bot.github import GitHubGateway
from tests.fakes.github import FakeGitHub

pytestmark = pytest.mark.slow  # the gateway over loopback HTTP to the fake GitHub

REPO = "acme/api"


@pytest.fixture
def root(fake_github: FakeGitHub) -> str:
    """acme/api with one commit on main; returns its SHA."""
    return fake_github.add_repo(REPO)


def test_poll_head_is_one_request_and_a_304_is_free(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    first = github_gateway.poll_head(REPO, "main", None)
    assert first.sha == root and first.etag
    assert first.limit == 5000 and first.remaining == 4999
    assert first.reset is not None and first.reset > time.time()
    assert first.poll_interval is None
    # No GET of the repo itself: a restarted robot polls at the same price as a running one.
    assert [(r.method, r.path) for r in fake_github.requests] == [("GET", f"/repos/{REPO}/branches/main")]
    units = fake_github.units_used
    again = github_gateway.poll_head(REPO, "main", first.etag)
    assert (again.sha, again.etag) == (None, first.etag)
    assert fake_github.units_used == units and fake_github.requests[-1].status == 304
    newer = fake_github.push(REPO, "main")
    moved = github_gateway.poll_head(REPO, "main", first.etag)
    assert moved.sha == newer and moved.etag != first.etag


def test_poll_head_reads_x_poll_interval(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    fake_github.add_header("X-Poll-Interval", "90", path_contains="/branches/")
    first = github_gateway.poll_head(REPO, "main", None)
    assert first.poll_interval == 90
    assert github_gateway.poll_head(REPO, "main", first.etag).poll_interval == 90


def test_deleted_branch_gone_repo_and_lost_access(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    fake_github.push(REPO, "topic")
    fake_github.delete_branch(REPO, "topic")
    with pytest.raises(InvalidRef, match="Branch `topic` of acme/api is gone"):
        github_gateway.poll_head(REPO, "topic", None)
    fake_github.fail_next(1, status=403, path_contains="/branches/")
    with pytest.raises(UnknownRepo, match="can no longer read acme/api"):
        github_gateway.poll_head(REPO, "main", None)
    fake_github.delete_repo(REPO)
    with pytest.raises(UnknownRepo, match="GitHub has no repo acme/api"):
        github_gateway.poll_head(REPO, "main", None)


def test_rate_limits_are_raised_at_once_with_the_wait(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    fake_github.rate_limit_next(1, "secondary", retry_after=120)
    with pytest.raises(RateLimited) as secondary:
        github_gateway.poll_head(REPO, "main", None)
    assert (secondary.value.retry_after, secondary.value.reset) == (120, None)
    fake_github.rate_limit_next(1, "primary", reset_in=600)
    with pytest.raises(RateLimited) as primary:
        github_gateway.poll_head(REPO, "main", None)
    assert primary.value.retry_after is None
    assert primary.value.reset is not None and primary.value.reset > time.time() + 500
    fake_github.rate_limit_next(1, "secondary", status=403, retry_after=None)
    with pytest.raises(RateLimited) as silent:
        github_gateway.poll_head(REPO, "main", None)
    assert (silent.value.retry_after, silent.value.reset) == (None, None)
    # None was waited for nor retried.
    assert [r.status for r in fake_github.requests] == [429, 403, 403]


def test_5xx_is_retried_once_then_a_github_error(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    fake_github.fail_next(1, status=502)
    assert github_gateway.poll_head(REPO, "main", None).sha == root
    fake_github.fail_next(5, status=503)
    with pytest.raises(GitHubError, match="503"):
        github_gateway.poll_head(REPO, "main", None)
    assert [r.status for r in fake_github.requests] == [502, 200, 503, 503]


def test_compare_ahead_behind_diverged_unrelated(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    one = fake_github.push(REPO, "main", message="One\n\nbody")
    two = fake_github.push(REPO, "main", message="Two")
    ahead = github_gateway.compare(REPO, root, two)
    assert (ahead.status, ahead.ahead_by, ahead.behind_by, ahead.total_commits) == ("ahead", 2, 0, 2)
    assert [(c.sha, c.title, c.parents) for c in ahead.commits] == [
        (one, "One", (root,)),
        (two, "Two", (one,)),
    ]
    behind = github_gateway.compare(REPO, two, root)
    assert (behind.status, behind.behind_by, behind.commits) == ("behind", 2, ())
    other = fake_github.force_push(REPO, "main", parent=one)
    diverged = github_gateway.compare(REPO, two, other)
    assert (diverged.status, diverged.ahead_by, diverged.behind_by) == ("diverged", 1, 1)
    assert [c.sha for c in diverged.commits] == [other]
    orphan = fake_github.force_push(REPO, "main", parent=None)
    assert github_gateway.compare(REPO, two, orphan).status == "unrelated"
    assert github_gateway.compare(REPO, "0" * 40, two).status == "unrelated"


def test_pulls_of_a_commit_and_the_merger(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, root: str
) -> None:
    merge = fake_github.push(REPO, "main", message="Merge pull request #7")
    fake_github.add_pull_for_commit(REPO, merge, 7, "Fix login", user="alice", merged_by="bob")
    fake_github.add_pull_for_commit(REPO, merge, 9, "Still open", user="carol", merged_by=None)
    pulls = github_gateway.pulls_for_commit(REPO, merge)
    assert [(p.number, p.title, p.author, p.base, p.merged, p.merged_by) for p in pulls] == [
        (7, "Fix login", "alice", "main", True, None),
        (9, "Still open", "carol", "main", False, None),
    ]
    assert pulls[0].merge_commit_sha == merge and pulls[0].url and pulls[0].url.endswith("/pull/7")
    assert github_gateway.pulls_for_commit(REPO, root) == []
    full = github_gateway.pull_request(REPO, 7)
    assert (full.number, full.merged_by, full.author) == (7, "bob", "alice")
    with pytest.raises(GitHubError, match="404"):
        github_gateway.pull_request(REPO, 99)
