"""The merge poller end to end: real gateway and fake GitHub, real SQLite store, real deploy service."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.models import (
    AnnouncementRef,
    AutoDeploy,
    AutoDeployStatus,
    BranchHead,
    Deploy,
    DeployRequest,
    DeployState,
    HeadClaim,
    MergedPull,
    Source,
)
from bot.poller import Poller, PollOutcome, PollReport
from bot.store import SqlStore
from bot.store.engine import make_engine
from bot.wiring import Core
from tests.fakes.github import FakeGitHub
from tests.fakes.memory import RecordingAnnouncer, RecordingObserver
from tests.support.harness import make_git_repo, slack_user, start_core, wait_final, write_config
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # the real gateway on loopback, real deploys, PostgreSQL

API, WEB, DOCS = "acme/api", "acme/web", "acme/docs"


class Clock:
    """Wall-clock epoch seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Robot:
    """A core, its poller and what the tests look at; ``restart`` makes new ones on the same DB."""

    def __init__(self, tmp_path: Path, github: FakeGitHub, repos: dict[str, Any], serve: bool) -> None:
        self.github = github
        self.config = write_config(tmp_path, github.url, repos)
        self.observer = RecordingObserver()
        self.announcer = RecordingAnnouncer()
        self.clock = Clock()
        self.serve = serve
        self.cores: list[Core] = []
        self._closed: list[Core] = []
        self.poller = self._start()

    def _start(self) -> Poller:
        core = start_core(self.config, self.observer)
        if self.serve:
            core.service.start()
        self.cores.append(core)
        return Poller(core.settings, core.github, core.store, core.service, self.announcer, clock=self.clock)

    @property
    def core(self) -> Core:
        return self.cores[-1]

    def restart(self) -> None:
        """Stop this robot and start a new one: new store object, gateway, service and poller."""
        self.close()
        self.poller = self._start()

    def poll(self) -> PollReport:
        return self.poller.poll_once()

    def close(self) -> None:
        """Stop the current core (once; closing again does nothing)."""
        core = self.cores[-1]
        if core in self._closed:
            return
        self._closed.append(core)
        core.service.stop(timeout=10)
        core.github.close()
        core.close()


@pytest.fixture
def robot_for(tmp_path: Path, github: FakeGitHub) -> Iterator[Any]:
    made: list[Robot] = []

    def make(repos: dict[str, Any], serve: bool = False) -> Robot:
        for name in repos:
            github.add_repo(name)
        robot = Robot(tmp_path, github, repos, serve)
        made.append(robot)
        return robot

    yield make
    for robot in made:
        robot.close()


def repo_config(folder: Path, **extra: Any) -> dict[str, Any]:
    """A repo with staging and production environments whose step is a trivial real process."""
    step = {"folder": str(folder), "commands": [[sys.executable, "-c", "pass"]]}
    return {"environments": {"staging": step, "production": step}, **extra}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_git_repo(tmp_path / "checkout")


def merge(github: FakeGitHub, repo: str, number: int, title: str, author: str = "alice") -> str:
    """A merge commit on main with its pull request, merged by bob."""
    sha = github.push(repo, "main", message=f"Merge pull request #{number}\n\n{title}")
    github.add_pull_for_commit(repo, sha, number, title, user=author, merged_by="bob")
    return sha


def branch_polls(github: FakeGitHub, repo: str) -> list[int]:
    """The statuses of every head poll of ``repo`` so far."""
    return [r.status for r in github.requests if r.path == f"/repos/{repo}/branches/main"]


# ---- first sight, one merge, restarts ---------------------------------------------------


def test_first_poll_records_and_announces_nothing(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout, on_merge="deploy")})
    report = robot.poll()
    assert report.with_outcome(PollOutcome.FIRST_SEEN) == [API, WEB]
    assert robot.announcer.news == [] and robot.announcer.problems == []
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha == robot.github.head(API, "main") and head.etag
    # A repo set to deploy on merge never deploys what it first sees.
    assert robot.core.store.list_deploys() == []
    assert robot.poll().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]


def test_one_merge_is_one_announcement_with_the_pull_request(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout, required_contexts=["ci/test", "build"])})
    before = robot.github.head(API, "main")
    robot.poll()
    sha = merge(robot.github, API, 123, "Fix login")
    robot.github.set_status(API, sha, "ci/test", "success")
    robot.github.set_check_run(API, sha, "build", "in_progress")
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.ANNOUNCED
    (news,) = robot.announcer.news
    assert (news.repo, news.branch, news.sha, news.previous_sha) == (API, "main", sha, before)
    pull = MergedPull(123, "Fix login", "alice", "bob", f"{robot.github.url}/{API}/pull/123")
    assert news.pulls == (pull,) and news.head_pull == pull and news.merger == "bob"
    assert [(c.sha, c.title) for c in news.changes] == [(sha, "Merge pull request #123")]
    assert (news.total_commits, news.truncated, news.forced) == (1, False, False)
    assert [(c.name, c.state.value) for c in news.ci.contexts] == [
        ("ci/test", "success"),
        ("build", "pending"),
    ]
    assert news.ci_summary == "pending"
    assert news.environments == ("staging", "production") and news.auto_deploy_env is None
    assert news.channel == "#deploys" and news.commit_url == f"{robot.github.url}/{API}/commit/{sha}"
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha == sha
    assert robot.poll().repos[API].outcome is PollOutcome.UNCHANGED
    assert len(robot.announcer.news) == 1
    assert robot.core.store.list_deploys() == []  # on_merge: announce only


def test_restart_between_polls_announces_nothing_twice_and_misses_nothing(
    robot_for: Any, checkout: Path
) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.poll()
    first = merge(robot.github, API, 1, "Before the restart")
    assert robot.poll().with_outcome(PollOutcome.ANNOUNCED) == [API]
    robot.restart()
    assert robot.poll().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]
    second = merge(robot.github, API, 2, "While the robot was down")
    robot.close()
    third = merge(robot.github, WEB, 3, "Also while down")
    robot.restart()
    assert robot.poll().with_outcome(PollOutcome.ANNOUNCED) == [API, WEB]
    robot.restart()
    assert robot.poll().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]
    assert [(n.repo, n.sha, [p.number for p in n.pulls]) for n in robot.announcer.news] == [
        (API, first, [1]),
        (API, second, [2]),
        (WEB, third, [3]),
    ]
    assert robot.announcer.news[1].previous_sha == first


def test_ten_merges_while_down_are_one_announcement(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout)})
    robot.poll()
    robot.close()
    shas = [merge(robot.github, API, n, f"Change {n}", author=f"dev{n}") for n in range(1, 11)]
    robot.restart()
    assert robot.poll().with_outcome(PollOutcome.ANNOUNCED) == [API]
    (news,) = robot.announcer.news
    assert news.sha == shas[-1] and news.total_commits == 10 and not news.truncated
    assert [p.number for p in news.pulls] == list(range(10, 0, -1))
    assert [p.author for p in news.pulls][:2] == ["dev10", "dev9"]
    assert [c.sha for c in news.changes] == shas[::-1]
    assert news.head_pull is not None and news.head_pull.number == 10


def test_an_announcement_that_fails_is_retried_not_lost(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.poll()
    sha = merge(robot.github, API, 5, "Slack was down")
    merge(robot.github, WEB, 6, "Announced anyway")
    robot.announcer.fail_next = 1
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.FAILED
    assert report.repos[WEB].outcome is PollOutcome.ANNOUNCED
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha != sha
    compares = robot.github.count(path_contains="/compare/")
    assert robot.poll().with_outcome(PollOutcome.ANNOUNCED) == [API]
    # The news gathered for the failed attempt is reused, not asked of GitHub again.
    assert robot.github.count(path_contains="/compare/") == compares
    assert [n.sha for n in robot.announcer.about(API)] == [sha]


# ---- what a moved branch can look like --------------------------------------------------


def test_direct_pushes_say_so(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout)})
    robot.poll()
    pushed = robot.github.push(API, "main", message="Hotfix typo\n\nno PR")
    robot.poll()
    merged = merge(robot.github, API, 8, "Reviewed change")
    after = robot.github.push(API, "main", message="Bump version")
    robot.poll()
    first, second = robot.announcer.news
    assert first.head_pull is None and first.merger is None and first.pulls == ()
    assert [(c.sha, c.title, c.direct) for c in first.changes] == [(pushed, "Hotfix typo", True)]
    assert [(c.sha, c.direct) for c in second.changes] == [(after, True), (merged, False)]
    assert [p.number for p in second.pulls] == [8] and second.head_pull is None
    assert [c.sha for c in second.direct_pushes] == [after]


def test_force_pushes_are_announced_as_such(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout)})
    root = robot.github.head(API, "main")
    robot.poll()
    one = merge(robot.github, API, 1, "One")
    two = merge(robot.github, API, 2, "Two")
    robot.poll()
    rewritten = robot.github.force_push(API, "main", parent=one, message="Rewritten two")
    robot.poll()
    robot.github.push(API, "main", sha=root)  # reset to an older commit
    robot.poll()
    orphan = robot.github.force_push(API, "main", parent=None, message="New history")
    robot.github.add_pull_for_commit(API, orphan, 9, "Fresh start", merged_by="carol")
    robot.poll()
    plain, diverged, back, unrelated = robot.announcer.news
    assert not plain.forced and plain.sha == two
    assert diverged.forced and diverged.previous_sha == two
    assert [(c.sha, c.title, c.direct) for c in diverged.changes] == [(rewritten, "Rewritten two", True)]
    assert back.forced and back.sha == root and back.changes == ()
    assert unrelated.forced and unrelated.sha == orphan and unrelated.merger == "carol"
    assert [c.sha for c in unrelated.changes] == [orphan]
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha == orphan


def test_ignore_records_silently(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout, on_merge="ignore")})
    robot.poll()
    sha = merge(robot.github, API, 4, "Nobody cares")
    assert robot.poll().repos[API].outcome is PollOutcome.RECORDED
    assert robot.announcer.news == [] and robot.github.count(path_contains="/compare/") == 0
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha == sha


# ---- auto-deploy ------------------------------------------------------------------------


def test_auto_deploy_happens_once_while_ci_flaps(robot_for: Any, checkout: Path) -> None:
    config = repo_config(checkout, on_merge="deploy", auto_deploy="staging", required_contexts=["ci/test"])
    robot = robot_for({API: config}, serve=True)
    robot.poll()
    sha = merge(robot.github, API, 42, "Ship it")
    robot.github.set_status(API, sha, "ci/test", "pending")
    report = robot.poll()
    # Announced at once; the auto-deploy waits for green CI without a deploy (or a worker) on it.
    assert report.repos[API].outcome is PollOutcome.ANNOUNCED and report.repos[API].deploy_id is None
    assert "waits for CI (ci/test pending)" in report.repos[API].detail
    assert robot.core.store.list_deploys() == []
    (news,) = robot.announcer.news
    assert news.auto_deploy_env == "staging" and news.ci_summary == "pending"
    robot.github.set_status(API, sha, "ci/test", "success")
    report = robot.poll()
    deploy_id = report.repos[API].deploy_id
    assert report.repos[API].outcome is PollOutcome.UNCHANGED and deploy_id is not None
    final = wait_final(robot.core, deploy_id)
    assert final.state is DeployState.SUCCEEDED, final.error
    expected = (sha, "staging", Source.MERGE, "github:bob")
    assert (final.sha, final.env, final.source, final.requested_by) == expected
    assert (final.channel, final.message_ts) == ("C0DEPLOYS", "1700000000.000001")
    for state in ("failure", "success", "pending", "success"):
        robot.github.set_status(API, sha, "ci/test", state)
        robot.clock.advance(30)
        assert robot.poll().repos[API].outcome is PollOutcome.UNCHANGED
    robot.restart()
    robot.poll()
    # A robot that died after announcing but before recording the head announces again…
    robot.core.store.set_head(BranchHead(API, news.previous_sha, None))
    again = robot.poll().repos[API]
    assert again.outcome is PollOutcome.ANNOUNCED and again.deploy_id is None
    assert "already requested" in again.detail
    # …and still deploys that SHA to staging exactly once.
    assert [d.id for d in robot.core.store.list_deploys(API)] == [deploy_id]
    assert len(robot.github.deployments(API)) == 1
    assert len(robot.announcer.news) == 2 and robot.announcer.problems == []


def test_locked_environment_holds_the_auto_deploy_and_says_so(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout, on_merge="deploy", auto_deploy="production")})
    robot.poll()
    robot.core.service.lock(API, "production", slack_user("U7"), "release freeze")
    sha = merge(robot.github, API, 11, "Locked out")
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.ANNOUNCED and report.repos[API].deploy_id is None
    ((repo, text, thread),) = robot.announcer.problems
    assert repo == API and thread == AnnouncementRef("C0DEPLOYS", "1700000000.000001")
    assert f"Auto-deploy of {sha[:7]} to production is held" in text
    assert "locked by slack:U7" in text and "release freeze" in text
    assert robot.core.store.list_deploys() == [] and robot.github.deployments(API) == []
    head = robot.core.store.get_head(API)
    assert head is not None and head.sha == sha
    assert robot.poll().repos[API].deploy_id is None
    assert len(robot.announcer.problems) == 1, "the hold is said once"
    # Unlocked: the held merge is still the newest, so the next poll queues it.
    robot.core.service.unlock(API, "production", slack_user("U7"))
    deploy_id = robot.poll().repos[API].deploy_id
    assert deploy_id is not None
    (deploy,) = robot.core.store.list_deploys()
    assert (deploy.id, deploy.sha, deploy.env, deploy.source) == (deploy_id, sha, "production", Source.MERGE)
    assert (deploy.channel, deploy.message_ts) == ("C0DEPLOYS", "1700000000.000001")
    assert robot.poll().repos[API].deploy_id is None and len(robot.core.store.list_deploys()) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'marks.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


def test_mark_auto_deployed_is_true_once_across_stores_and_threads(store_url: str) -> None:
    stores = [SqlStore.from_url(store_url), SqlStore.from_url(store_url)]
    try:
        assert stores[0].mark_auto_deployed(API, "staging", "a" * 40) is True
        assert stores[1].mark_auto_deployed(API, "staging", "a" * 40) is False
        assert stores[1].mark_auto_deployed(API, "production", "a" * 40) is True
        assert stores[0].mark_auto_deployed(WEB, "staging", "a" * 40) is True
        # Racing claims of one SHA (threads of two "processes"): exactly one wins.
        won: list[bool] = []
        lock = threading.Lock()

        def claim(store: SqlStore) -> None:
            result = store.mark_auto_deployed(API, "staging", "b" * 40)
            with lock:
                won.append(result)

        threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(won) == [False] * 7 + [True]
    finally:
        for store in stores:
            store.close()


def test_a_head_move_is_claimed_once_across_stores_and_threads(store_url: str) -> None:
    stores = [SqlStore.from_url(store_url), SqlStore.from_url(store_url)]
    try:
        old, new = BranchHead(API, "a" * 40, '"a"'), BranchHead(API, "b" * 40, '"b"')
        assert stores[0].claim_head(None, old).claimed
        assert not stores[1].claim_head(None, old).claimed, "a first sighting is claimed once"
        deadline = datetime.now(UTC) + timedelta(minutes=30)
        wanted = AutoDeploy(API, "staging", new.sha, AutoDeployStatus.PENDING, "bob", deadline)
        won: list[HeadClaim] = []
        lock = threading.Lock()

        def claim(store: SqlStore) -> None:
            result = store.claim_head(old.sha, new, wanted)
            with lock:
                won.append(result)

        threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(c.claimed for c in won) == [False] * 7 + [True]
        (winner,) = [c for c in won if c.claimed]
        assert winner.auto_deploy is not None and winner.auto_deploy.status is AutoDeployStatus.PENDING
        assert stores[1].get_head(API) == new
        # A failed announcement gives the claim (head, ETag, pending auto-deploy) back.
        assert stores[1].release_head(new, old, winner.auto_deploy)
        assert stores[0].get_head(API) == old and stores[0].pending_auto_deploys() == []
        assert not stores[0].release_head(new, old, None), "nothing to give back twice"
    finally:
        for store in stores:
            store.close()


def test_the_auto_deploy_and_its_deploy_are_one_transaction(store_url: str) -> None:
    stores = [SqlStore.from_url(store_url), SqlStore.from_url(store_url)]
    try:
        deadline = datetime.now(UTC) + timedelta(minutes=30)
        old, new = BranchHead(API, "a" * 40), BranchHead(API, "b" * 40)
        wanted = AutoDeploy(API, "staging", new.sha, AutoDeployStatus.PENDING, "bob", deadline)
        stores[0].claim_head(None, old)
        pending = stores[0].claim_head(old.sha, new, wanted).auto_deploy
        assert pending is not None
        assert stores[1].update_auto_deploy(pending, thread=("C1", "1.000001"))
        assert stores[0].update_auto_deploy(pending, note="held") and not stores[1].update_auto_deploy(
            pending, note="held"
        ), "each note is said once"
        request = DeployRequest(API, "staging", new.sha, new.sha, "bob", Source.MERGE, channel="C1")
        results: list[tuple[Deploy, bool] | None] = []
        lock = threading.Lock()

        def queue(store: SqlStore) -> None:
            result = store.queue_auto_deploy(request)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=queue, args=(stores[i % 2],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        (queued,) = [r for r in results if r is not None]
        assert len(results) == 6 and queued[1]
        (deploy,) = stores[0].list_deploys()
        assert (deploy.id, deploy.sha, deploy.source) == (queued[0].id, new.sha, Source.MERGE)
        done = stores[1].get_auto_deploy(API, "staging", new.sha)
        assert done is not None and (done.status, done.deploy_id, done.note) == (
            AutoDeployStatus.QUEUED,
            deploy.id,
            None,
        )
        assert (done.channel, done.message_ts, done.requested_by) == ("C1", "1.000001", "bob")
        # A newer merge expires a pending one in the claim's own transaction.
        newer, newest = BranchHead(API, "c" * 40), BranchHead(API, "d" * 40)
        stores[0].claim_head(new.sha, newer, replace(wanted, sha=newer.sha))
        stores[1].claim_head(newer.sha, newest, replace(wanted, sha=newest.sha))
        gone = stores[0].get_auto_deploy(API, "staging", newer.sha)
        assert (
            gone is not None
            and gone.status is AutoDeployStatus.EXPIRED
            and gone.note == "superseded by ddddddd"
        )
        assert [a.sha for a in stores[0].pending_auto_deploys()] == [newest.sha]
    finally:
        for store in stores:
            store.close()


def test_one_store_leads_the_poller_until_it_resigns_or_its_connection_dies(store_url: str) -> None:
    stores = [SqlStore.from_url(store_url), SqlStore.from_url(store_url)]
    try:
        assert stores[0].lead_poller(1, lease=30) and stores[0].lead_poller(1, lease=30)
        assert not stores[1].lead_poller(2, lease=30)
        stores[0].resign_poller(1)
        assert stores[1].lead_poller(2, lease=30) and not stores[0].lead_poller(1, lease=30)
        if store_url.startswith("sqlite"):
            # The holder stopped renewing: its lease runs out.
            assert stores[1].lead_poller(2, lease=0.2)
            time.sleep(0.3)
            assert stores[0].lead_poller(1, lease=30) and not stores[1].lead_poller(2, lease=30)
        else:
            # The holder's session ends (a killed process, a lost connection): the lock goes with it.
            admin = make_engine(store_url)
            with admin.begin() as conn:
                ended = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND granted"
                    )
                ).scalars()
                assert list(ended) == [True]
            admin.dispose()
            wait_for(lambda: stores[0].lead_poller(1, lease=30), 10, "the lock freed by the ended session")
            assert not stores[1].lead_poller(2, lease=30), "a dead session no longer leads"
    finally:
        for store in stores:
            store.close()


# ---- trouble on one repo does not stop the others ---------------------------------------


def test_5xx_on_one_repo_does_not_stop_the_others(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout), DOCS: repo_config(checkout)})
    robot.poll()
    for n, repo in enumerate((API, WEB, DOCS), start=1):
        merge(robot.github, repo, n, f"Change in {repo}")
    robot.github.fail_next(10, status=502, path_contains=f"/repos/{WEB}/")
    report = robot.poll()
    assert report.with_outcome(PollOutcome.ANNOUNCED) == [API, DOCS]
    assert report.repos[WEB].outcome is PollOutcome.FAILED and "502" in report.repos[WEB].detail
    robot.github.clear_faults()
    assert robot.poll().with_outcome(PollOutcome.ANNOUNCED) == [WEB]
    assert sorted(n.repo for n in robot.announcer.news) == sorted([API, WEB, DOCS])


def test_deleted_branch_is_warned_once(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.poll()
    head = robot.github.head(API, "main")
    robot.github.delete_branch(API, "main")
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.GONE
    assert report.repos[WEB].outcome is PollOutcome.UNCHANGED
    assert robot.poll().repos[API].outcome is PollOutcome.WAITING  # re-tried rarely, not every poll
    polls = len(branch_polls(robot.github, API))
    robot.clock.advance(301)
    assert robot.poll().repos[API].outcome is PollOutcome.GONE
    assert len(branch_polls(robot.github, API)) == polls + 1
    ((repo, text, thread),) = robot.announcer.problems
    assert repo == API and thread is None
    assert "Branch `main` of acme/api is gone" in text and "not announced until this is fixed" in text
    robot.github.push(API, "main", sha=head)
    robot.clock.advance(301)
    assert robot.poll().repos[API].outcome is PollOutcome.UNCHANGED
    assert len(robot.announcer.problems) == 1 and robot.announcer.news == []


def test_lost_repo_and_lost_access_are_warned_and_the_rest_goes_on(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout), DOCS: repo_config(checkout)})
    robot.poll()
    robot.github.delete_repo(WEB)
    robot.github.fail_next(100, status=403, path_contains=f"/repos/{DOCS}/")
    sha = merge(robot.github, API, 1, "Still announced")
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.ANNOUNCED and robot.announcer.news[0].sha == sha
    assert report.with_outcome(PollOutcome.GONE) == [WEB, DOCS]
    texts = {repo: text for repo, text, _ in robot.announcer.problems}
    assert "GitHub has no repo acme/web, or the token cannot read it." in texts[WEB]
    assert "The GitHub token can no longer read acme/docs (403" in texts[DOCS]
    robot.clock.advance(301)
    robot.poll()
    assert len(robot.announcer.problems) == 2


# ---- cost and pacing --------------------------------------------------------------------


def test_idle_polls_are_304s_and_cost_no_units(robot_for: Any, checkout: Path) -> None:
    repos = {API: repo_config(checkout), WEB: repo_config(checkout), DOCS: repo_config(checkout)}
    robot = robot_for(repos)
    robot.poll()
    robot.restart()  # a restarted robot polls at the same price: no repo lookups first
    seen, units = len(robot.github.requests), robot.github.units_used
    for _ in range(5):
        robot.clock.advance(30)
        assert robot.poll().with_outcome(PollOutcome.UNCHANGED) == [API, WEB, DOCS]
    idle = robot.github.requests[seen:]
    assert len(idle) == 15
    assert {(r.method, r.status) for r in idle} == {("GET", 304)}
    assert all(r.path.endswith("/branches/main") for r in idle)
    assert robot.github.units_used == units


def test_x_poll_interval_is_respected_per_repo(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.github.add_header("X-Poll-Interval", "60", path_contains=f"/repos/{API}/")
    robot.poll()
    robot.clock.advance(30)
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.WAITING
    assert report.repos[WEB].outcome is PollOutcome.UNCHANGED
    assert (len(branch_polls(robot.github, API)), len(branch_polls(robot.github, WEB))) == (1, 2)
    robot.clock.advance(30)
    assert robot.poll().repos[API].outcome is PollOutcome.UNCHANGED
    assert len(branch_polls(robot.github, API)) == 2


def test_retry_after_pauses_every_poll_until_it_passes(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.poll()
    robot.github.rate_limit_next(1, "secondary", retry_after=120)
    report = robot.poll()
    assert report.with_outcome(PollOutcome.RATE_LIMITED) == [API, WEB]
    assert report.paused_until == pytest.approx(robot.clock.now + 120)
    asked = len(robot.github.requests)
    robot.clock.advance(90)
    assert robot.poll().with_outcome(PollOutcome.RATE_LIMITED) == [API, WEB]
    assert len(robot.github.requests) == asked  # nothing sent while GitHub asked to wait
    robot.clock.advance(31)
    assert robot.poll().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]


def test_low_remaining_pauses_polling_until_the_reset(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({API: repo_config(checkout), WEB: repo_config(checkout)})
    robot.github.use_units(4600)  # others spent the token: 399 of 5000 left after our first poll
    report = robot.poll()
    assert report.repos[API].outcome is PollOutcome.FIRST_SEEN
    assert report.repos[WEB].outcome is PollOutcome.RATE_LIMITED and "399 of 5000" in report.repos[WEB].detail
    assert report.paused_until is not None and report.paused_until > robot.clock.now + 3000
    asked = len(robot.github.requests)
    robot.clock.advance(600)
    assert robot.poll().with_outcome(PollOutcome.RATE_LIMITED) == [API, WEB]
    assert len(robot.github.requests) == asked
    robot.github.reset_window()
    robot.clock.advance(3100)
    report = robot.poll()
    outcomes = (report.repos[API].outcome, report.repos[WEB].outcome)
    assert outcomes == (PollOutcome.UNCHANGED, PollOutcome.FIRST_SEEN)


def test_auto_deploy_is_not_held_by_the_deployers_list(robot_for: Any, checkout: Path) -> None:
    # Merges deploy as the merger's GitHub login, which is never a Slack deployer id.
    config = repo_config(checkout, on_merge="deploy", auto_deploy="staging", deployers=["U0ONLYME"])
    robot = robot_for({API: config}, serve=True)
    robot.poll()
    sha = merge(robot.github, API, 7, "Fix")
    deploy_id = robot.poll().repos[API].deploy_id
    assert deploy_id is not None and robot.announcer.problems == []
    final = wait_final(robot.core, deploy_id)
    assert (final.state, final.sha) == (DeployState.SUCCEEDED, sha)
