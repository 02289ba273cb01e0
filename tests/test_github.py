"""GitHubGateway through real PyGithub against the fake GitHub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import DeploymentRefused, GitHubError, InvalidRef, InvalidRepoName, UnknownRepo
from bot.github import GitHubGateway
from bot.models import ContextState, RequiredContext
from tests.fakes.github import FakeGitHub
from tests.support.github_fixtures import GatewayFactory

pytestmark = pytest.mark.slow  # the gateway over loopback HTTP to the fake GitHub

REPO = "acme/api"


@pytest.fixture
def head(fake_github: FakeGitHub) -> str:
    """acme/api with one commit on main; returns its SHA."""
    return fake_github.add_repo(REPO, default_branch="main")


def states(gateway: GitHubGateway, sha: str, contexts: Sequence[RequiredContext | str]) -> list[ContextState]:
    return [c.state for c in gateway.ci_state(REPO, sha, contexts).contexts]


# ---- resolve_ref ---------------------------------------------------------------------


def test_resolve_branch_tag_and_shas(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    feature = fake_github.push(REPO, "feature/login")
    fake_github.add_tag(REPO, "v1.0", head)
    assert github_gateway.resolve_ref(REPO, "main") == head
    assert github_gateway.resolve_ref(REPO, "feature/login") == feature
    assert github_gateway.resolve_ref(REPO, "v1.0") == head
    assert github_gateway.resolve_ref(REPO, head) == head
    assert github_gateway.resolve_ref(REPO, feature[:7]) == feature


def test_resolve_follows_a_force_push(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    newer = fake_github.push(REPO, "main")
    assert github_gateway.resolve_ref(REPO, "main") == newer
    fake_github.push(REPO, "main", sha=head)
    assert github_gateway.resolve_ref(REPO, "main") == head


def test_unknown_ref_is_invalid_ref(github_gateway: GitHubGateway, head: str) -> None:
    with pytest.raises(InvalidRef) as caught:
        github_gateway.resolve_ref(REPO, "no-such-branch")
    assert str(caught.value) == "Unknown ref `no-such-branch` in acme/api."


def test_unknown_repo(github_gateway: GitHubGateway, head: str) -> None:
    with pytest.raises(UnknownRepo) as caught:
        github_gateway.resolve_ref("acme/nope", "main")
    assert "acme/nope" in str(caught.value)


def test_malformed_repo_name_asks_nothing(fake_github: FakeGitHub, github_gateway: GitHubGateway) -> None:
    with pytest.raises(InvalidRepoName):
        github_gateway.resolve_ref("acme", "main")
    assert fake_github.requests == []


def test_repo_is_fetched_once(fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str) -> None:
    for _ in range(3):
        github_gateway.resolve_ref(REPO, "main")
    github_gateway.ci_state(REPO, head, ["ci/test"])
    repo_reads = [r for r in fake_github.requests if r.path == f"/repos/{REPO}"]
    assert [(r.method, r.status) for r in repo_reads] == [("GET", 200)]


# ---- ci_state ------------------------------------------------------------------------


def test_statuses_only(fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str) -> None:
    fake_github.set_status(REPO, head, "ci/test", "success", target_url="https://ci/1")
    fake_github.set_status(REPO, head, "lint", "pending")
    fake_github.set_status(REPO, head, "build", "failure", target_url="https://ci/3")
    fake_github.set_status(REPO, head, "deploy-check", "error")
    gate = github_gateway.ci_state(REPO, head, ["build", "ci/test", "lint", "deploy-check"])
    assert [c.name for c in gate.contexts] == ["build", "ci/test", "lint", "deploy-check"]
    assert [c.state for c in gate.contexts] == [
        ContextState.FAILURE,
        ContextState.SUCCESS,
        ContextState.PENDING,
        ContextState.FAILURE,
    ]
    assert [c.name for c in gate.failing] == ["build", "deploy-check"]
    assert gate.contexts[0].url == "https://ci/3"
    assert gate.contexts[1].url == "https://ci/1"


@pytest.mark.parametrize(
    ("status", "conclusion", "expected"),
    [
        ("completed", "success", ContextState.SUCCESS),
        # Green only for a context that accepts them (test_accepted_conclusions_are_per_context).
        ("completed", "neutral", ContextState.FAILURE),
        ("completed", "skipped", ContextState.FAILURE),
        ("completed", "failure", ContextState.FAILURE),
        ("completed", "cancelled", ContextState.FAILURE),
        ("completed", "timed_out", ContextState.FAILURE),
        ("completed", "action_required", ContextState.FAILURE),
        ("completed", "stale", ContextState.FAILURE),
        ("completed", "startup_failure", ContextState.FAILURE),
        ("in_progress", None, ContextState.PENDING),
        ("queued", None, ContextState.PENDING),
    ],
)
def test_check_runs_only(
    fake_github: FakeGitHub,
    github_gateway: GitHubGateway,
    head: str,
    status: str,
    conclusion: str | None,
    expected: ContextState,
) -> None:
    fake_github.set_check_run(REPO, head, "build", status, conclusion, "https://ci/run/7")
    [result] = github_gateway.ci_state(REPO, head, ["build"]).contexts
    assert result.state is expected
    assert result.url == "https://ci/run/7"


def test_statuses_and_checks_together_and_missing(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_status(REPO, head, "ci/test", "success")
    fake_github.set_check_run(REPO, head, "build", "completed", "success")
    gate = github_gateway.ci_state(REPO, head, ["ci/test", "build", "docs"])
    assert [c.state for c in gate.contexts] == [
        ContextState.SUCCESS,
        ContextState.SUCCESS,
        ContextState.MISSING,
    ]
    assert not gate.green
    assert [c.name for c in gate.waiting] == ["docs"]


def test_newest_status_wins(fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str) -> None:
    fake_github.set_status(REPO, head, "ci/test", "failure")
    fake_github.set_status(REPO, head, "ci/test", "success", target_url="https://ci/rerun")
    fake_github.set_status(REPO, head, "lint", "success")
    fake_github.set_status(REPO, head, "lint", "failure")
    gate = github_gateway.ci_state(REPO, head, ["ci/test", "lint"])
    assert [c.state for c in gate.contexts] == [ContextState.SUCCESS, ContextState.FAILURE]
    assert gate.contexts[0].url == "https://ci/rerun"


def test_newest_status_by_time_beats_a_later_id(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    now = datetime.now(UTC)
    fake_github.set_status(REPO, head, "ci/test", "success", created_at=now)
    fake_github.set_status(REPO, head, "ci/test", "failure", created_at=now - timedelta(hours=1))
    assert states(github_gateway, head, ["ci/test"]) == [ContextState.SUCCESS]


def test_newest_check_run_wins_across_apps(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    # build: the newer run was created first; lint: the newer run was created last.
    fake_github.set_check_run(REPO, head, "build", "completed", "success", app="new-ci", started_at=later)
    fake_github.set_check_run(REPO, head, "build", "completed", "failure", app="old-ci", started_at=now)
    fake_github.set_check_run(REPO, head, "lint", "completed", "success", app="old-ci", started_at=now)
    fake_github.set_check_run(REPO, head, "lint", "in_progress", None, app="new-ci", started_at=later)
    assert states(github_gateway, head, ["build", "lint"]) == [
        ContextState.SUCCESS,
        ContextState.PENDING,
    ]


def test_rerun_of_a_check_in_the_same_app_wins(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_check_run(REPO, head, "build", "completed", "failure")
    fake_github.set_check_run(REPO, head, "build", "completed", "success", "https://ci/rerun")
    [result] = github_gateway.ci_state(REPO, head, ["build"]).contexts
    assert (result.state, result.url) == (ContextState.SUCCESS, "https://ci/rerun")


def test_newer_check_run_overrides_an_older_status_of_the_same_name(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    now = datetime.now(UTC)
    fake_github.set_status(REPO, head, "build", "failure", created_at=now - timedelta(minutes=3))
    fake_github.set_check_run(REPO, head, "build", "completed", "success", started_at=now)
    assert states(github_gateway, head, ["build"]) == [ContextState.SUCCESS]


def test_a_status_never_overrides_a_failing_or_running_check_run(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    now = datetime.now(UTC)
    # Anyone who may push may post a status: a hand-posted `success` of the same name, newer
    # than the check run, must not open the gate.
    fake_github.set_check_run(REPO, head, "build", "completed", "failure", started_at=now)
    fake_github.set_status(REPO, head, "build", "success", created_at=now + timedelta(minutes=1))
    fake_github.set_check_run(REPO, head, "test", "in_progress", None, started_at=now)
    fake_github.set_status(REPO, head, "test", "success", created_at=now + timedelta(minutes=1))
    assert states(github_gateway, head, ["build", "test"]) == [ContextState.FAILURE, ContextState.PENDING]


def test_accepted_conclusions_are_per_context(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_check_run(REPO, head, "docs", "completed", "skipped")
    fake_github.set_check_run(REPO, head, "lint", "completed", "neutral")
    gate = github_gateway.ci_state(
        REPO, head, [RequiredContext("docs", accept=frozenset({"skipped"})), RequiredContext("lint")]
    )
    assert [c.state for c in gate.contexts] == [ContextState.SUCCESS, ContextState.FAILURE]
    assert gate.contexts[1].description == "neutral; robot.yaml accepts it only with `accept: [neutral]` here"


def test_a_context_pinned_to_an_app_reads_only_that_apps_check_runs(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    now = datetime.now(UTC)
    pinned = [RequiredContext("build", app="github-actions")]
    fake_github.set_status(REPO, head, "build", "success")
    fake_github.set_check_run(REPO, head, "build", "completed", "success", app="impostor", started_at=now)
    assert states(github_gateway, head, pinned) == [ContextState.MISSING]
    fake_github.set_check_run(
        REPO,
        head,
        "build",
        "completed",
        "failure",
        app="github-actions",
        started_at=now - timedelta(minutes=1),
    )
    assert states(github_gateway, head, pinned) == [ContextState.FAILURE]
    fake_github.set_check_run(
        REPO, head, "build", "completed", "success", app="github-actions", started_at=now
    )
    assert states(github_gateway, head, pinned) == [ContextState.SUCCESS]


def test_statuses_are_read_across_pages(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_status(REPO, head, "lint", "success")  # the oldest: listed on the last page
    for _ in range(120):
        fake_github.set_status(REPO, head, "ci/test", "pending")
    fake_github.set_status(REPO, head, "ci/test", "success")
    assert states(github_gateway, head, ["lint", "ci/test"]) == [
        ContextState.SUCCESS,
        ContextState.SUCCESS,
    ]
    assert fake_github.count("GET", f"{head}/statuses") == 2


def test_ci_state_of_unknown_sha(github_gateway: GitHubGateway, head: str) -> None:
    with pytest.raises(InvalidRef):
        github_gateway.ci_state(REPO, "f" * 40, ["ci/test"])


# ---- create_deployment ---------------------------------------------------------------


def test_create_deployment_sends_every_field(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_status(REPO, head, "ci/test", "success")
    payload = {"deploy_id": 42, "user": "U1", "thread": "C1/1700000000.1"}
    deployment_id = github_gateway.create_deployment(
        REPO, head, "staging", ["ci/test"], payload, "Deploy #42 of main by U1"
    )
    [deployment] = fake_github.deployments(REPO)
    assert deployment.id == deployment_id
    assert deployment.request == {
        "ref": head,
        "task": "deploy",
        "auto_merge": False,
        "required_contexts": ["ci/test"],
        "payload": payload,
        "environment": "staging",
        "description": "Deploy #42 of main by U1",
    }


def test_forced_deployment_sends_an_empty_context_list(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_status(REPO, head, "ci/test", "failure")
    github_gateway.create_deployment(REPO, head, "production", [], {}, "forced")
    [deployment] = fake_github.deployments(REPO)
    assert deployment.required_contexts == []


def test_409_failing_contexts_is_refused_with_reason(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.set_status(REPO, head, "ci/test", "failure")
    with pytest.raises(DeploymentRefused) as caught:
        github_gateway.create_deployment(REPO, head, "production", ["ci/test"], {}, "d")
    assert "Conflict: Commit status checks failed for" in str(caught.value)
    assert "ci/test: failure" in str(caught.value)
    assert fake_github.deployments(REPO) == []


def test_409_conflict_message_is_passed_on(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.create_deployment_answer(409, "Conflict merging main into topic-branch.")
    with pytest.raises(DeploymentRefused) as caught:
        github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    assert "409" in str(caught.value)
    assert "Conflict merging main into topic-branch." in str(caught.value)


def test_422_is_refused_with_validation_message(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.create_deployment_answer(
        422,
        "Validation Failed",
        errors=[{"resource": "Deployment", "field": "environment", "message": "bad env name"}],
    )
    with pytest.raises(DeploymentRefused) as caught:
        github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    assert "Validation Failed" in str(caught.value)
    assert "bad env name" in str(caught.value)


def test_202_is_retried_then_succeeds(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.create_deployment_answer(202, count=2)
    deployment_id = github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    assert [d.id for d in fake_github.deployments(REPO)] == [deployment_id]
    posts = [r.status for r in fake_github.requests if r.method == "POST"]
    assert posts == [202, 202, 201]


def test_202_forever_is_a_github_error(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    fake_github.create_deployment_answer(202, "Auto-merged main into topic on deployment.", 99)
    with pytest.raises(GitHubError) as caught:
        github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    assert not isinstance(caught.value, DeploymentRefused)
    assert "202" in str(caught.value)
    assert "Auto-merged main into topic on deployment." in str(caught.value)
    assert 2 <= fake_github.count("POST", "/deployments") <= 10


# ---- set_deployment_status -----------------------------------------------------------


def test_status_sends_log_url_raw_and_cuts_description(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str
) -> None:
    deployment_id = github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    github_gateway.set_deployment_status(
        REPO, deployment_id, "in_progress", "step 1/2 " + "x" * 300, "https://slack/archives/C1/p1"
    )
    github_gateway.set_deployment_status(REPO, deployment_id, "success", "done")
    [deployment] = fake_github.deployments(REPO)
    first, second = (s["body"] for s in deployment.statuses)
    assert first["state"] == "in_progress"
    assert first["log_url"] == "https://slack/archives/C1/p1"
    assert len(first["description"]) == 140
    assert first["description"].startswith("step 1/2 xxx")
    assert first["description"].endswith("…")
    assert second == {"state": "success", "description": "done"}


@pytest.mark.parametrize("state", ["queued", "in_progress", "success", "failure", "error"])
def test_every_robot_state_is_accepted(
    fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str, state: str
) -> None:
    deployment_id = github_gateway.create_deployment(REPO, head, "production", [], {}, "d")
    github_gateway.set_deployment_status(REPO, deployment_id, state, "what happened")
    assert fake_github.deployments(REPO)[0].statuses[0]["body"]["state"] == state


def test_status_of_unknown_deployment_is_a_github_error(github_gateway: GitHubGateway, head: str) -> None:
    with pytest.raises(GitHubError) as caught:
        github_gateway.set_deployment_status(REPO, 999999, "success", "done")
    assert "404" in str(caught.value)


# ---- retries, rate limits, timeouts --------------------------------------------------


def test_502_twice_then_success(fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str) -> None:
    github_gateway.resolve_ref(REPO, "main")
    fake_github.fail_next(2, status=502, path_contains="/commits/")
    assert github_gateway.resolve_ref(REPO, "main") == head
    commits = [r.status for r in fake_github.requests if "/commits/" in r.path]
    assert commits == [200, 502, 502, 200]


def test_persistent_500_is_bounded(fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str) -> None:
    gateway = make_gateway(max_retries=2)
    gateway.resolve_ref(REPO, "main")
    fake_github.fail_next(50, status=500, path_contains="/deployments")
    with pytest.raises(GitHubError) as caught:
        gateway.create_deployment(REPO, head, "production", [], {}, "d")
    assert str(caught.value) == "GitHub 500 on create deployment for acme/api after 3 tries"
    assert fake_github.count("POST", "/deployments") == 3


def test_429_with_retry_after_then_success(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str
) -> None:
    gateway = make_gateway(max_backoff=3)
    gateway.resolve_ref(REPO, "main")
    fake_github.rate_limit_next(1, "secondary", retry_after=1)
    assert gateway.resolve_ref(REPO, "main") == head
    assert [r.status for r in fake_github.requests[-2:]] == [429, 200]


@pytest.mark.parametrize("status", [403, 429])
def test_primary_rate_limit_waits_for_reset(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str, status: int
) -> None:
    gateway = make_gateway(max_backoff=3)
    gateway.resolve_ref(REPO, "main")
    fake_github.rate_limit_next(1, "primary", status=status, reset_in=1)
    assert gateway.resolve_ref(REPO, "main") == head
    assert [r.status for r in fake_github.requests[-2:]] == [status, 200]


def test_rate_limit_beyond_the_cap_fails_at_once(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str
) -> None:
    gateway = make_gateway(max_backoff=1)
    gateway.resolve_ref(REPO, "main")
    fake_github.rate_limit_next(5, "primary", reset_in=3600)
    with pytest.raises(GitHubError) as caught:
        gateway.resolve_ref(REPO, "main")
    assert "rate limit" in str(caught.value)
    assert fake_github.count(path_contains="/commits/") == 2


def test_exhausted_rate_limit_retries_are_reported(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str
) -> None:
    gateway = make_gateway(max_retries=1)
    gateway.resolve_ref(REPO, "main")
    fake_github.rate_limit_next(5, "secondary", retry_after=0)
    with pytest.raises(GitHubError) as caught:
        gateway.resolve_ref(REPO, "main")
    assert str(caught.value) == "GitHub rate limit (429) on resolve ref for acme/api after 2 tries"


def test_slow_answer_is_retried(fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str) -> None:
    gateway = make_gateway(timeout=1)
    gateway.resolve_ref(REPO, "main")
    fake_github.delay(1.5, path_contains="/commits/", count=1)
    assert gateway.resolve_ref(REPO, "main") == head


def test_no_answer_is_a_github_error(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str
) -> None:
    gateway = make_gateway(timeout=1, max_retries=1)
    gateway.resolve_ref(REPO, "main")
    fake_github.delay(1.5, path_contains="/commits/")
    with pytest.raises(GitHubError) as caught:
        gateway.resolve_ref(REPO, "main")
    assert str(caught.value) == ("GitHub did not answer within 1 s on resolve ref for acme/api after 2 tries")


def test_unreachable_github_is_a_github_error() -> None:
    gateway = GitHubGateway(
        "t",
        "http://127.0.0.1:9",
        seconds_between_requests=0,
        timeout=1,
        max_retries=1,
        max_backoff=0.05,
    )
    with pytest.raises(GitHubError) as caught:
        gateway.resolve_ref(REPO, "main")
    assert "Cannot reach GitHub at 127.0.0.1:9" in str(caught.value)


def test_bad_token_is_named_but_never_shown(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, head: str
) -> None:
    gateway = make_gateway(token="ghp_SECRET_never_show_me")
    with pytest.raises(GitHubError) as caught:
        gateway.resolve_ref(REPO, "main")
    assert "401" in str(caught.value)
    assert "ghp_SECRET" not in str(caught.value)


# ---- commit_url, checks (branch heads: tests/test_github_merges.py) ------------------


@pytest.mark.parametrize(
    ("api_url", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ],
)
def test_commit_url(api_url: str, web: str) -> None:
    gateway = GitHubGateway("t", api_url)
    assert gateway.commit_url(REPO, "abc123") == f"{web}/acme/api/commit/abc123"


def test_check_access(fake_github: FakeGitHub, github_gateway: GitHubGateway, head: str) -> None:
    fake_github.add_repo("acme/docs", permissions={"push": False})
    assert "can create deployments" in github_gateway.check_access(REPO)
    with pytest.raises(GitHubError) as caught:
        github_gateway.check_access("acme/docs")
    assert "no write access" in str(caught.value)
    with pytest.raises(UnknownRepo):
        github_gateway.check_access("acme/missing")


def test_check_token(fake_github: FakeGitHub, make_gateway: GatewayFactory) -> None:
    assert "acting as deploy-robot" in make_gateway().check_token()
    with pytest.raises(GitHubError) as caught:
        make_gateway(token="wrong").check_token()
    assert "401" in str(caught.value)
