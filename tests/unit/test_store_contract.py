"""MemoryStore keeps SqlStore's semantics: the same contract runs on both (SQLite in tmp_path)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.dora import HOUR, build_report
from bot.errors import UnknownDeploy
from bot.models import BranchHead, DeployRequest, DeployState, ProcessInfo, ProcessKind, Source
from bot.store import SqlStore
from tests.fakes.memory import MemoryStore
from tests.support.history import API, SEEDED, UNTIL, WEB, insert_history, seed_memory


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore.from_url(f"sqlite:///{tmp_path / 'contract.db'}")
    yield sql
    sql.close()


def req(sha: str = "a" * 40, env: str = "production", repo: str = "acme/api") -> DeployRequest:
    return DeployRequest(repo, env, "main", sha, "U1", Source.COMMAND)


def test_an_active_repo_env_sha_is_deduped(store: Any) -> None:
    first, created = store.create_deploy(req())
    assert created and first.state is DeployState.QUEUED
    assert store.create_deploy(req()) == (first, False)
    assert store.create_deploy(req(env="staging"))[1]
    store.cancel_queued(first.id)
    assert store.create_deploy(req())[1]


def test_claim_is_fifo_one_running_per_env_and_not_when_locked(store: Any) -> None:
    one = store.create_deploy(req("1" * 40))[0]
    two = store.create_deploy(req("2" * 40))[0]
    other = store.create_deploy(req("3" * 40, env="staging"))[0]
    assert store.claim_next(only_id=two.id) is None  # #1 is older in the same env
    assert store.claim_next().id == one.id
    assert store.claim_next().id == other.id
    assert store.claim_next() is None  # production runs #1 already
    store.finish_deploy(one.id, DeployState.SUCCEEDED, None)
    store.set_lock("acme/api", "production", "U7", "freeze")
    assert store.claim_next() is None
    store.remove_lock("acme/api", "production", "slack:U7")
    claimed = store.claim_next()
    assert claimed.id == two.id and claimed.state is DeployState.RUNNING and claimed.started_at


def test_a_deploy_queued_for_a_process_is_left_to_it_while_its_lease_holds(store: Any) -> None:
    terminal = store.register_process(ProcessInfo("host-a", 1, "boot-1", ProcessKind.DEPLOY))
    robot = store.register_process(ProcessInfo("host-a", 2, "boot-1", ProcessKind.RUN))
    theirs = store.create_deploy(req("1" * 40), terminal.id)[0]
    behind = store.create_deploy(req("2" * 40))[0]
    other = store.create_deploy(req("3" * 40, env="staging"))[0]
    assert theirs.owner_id == terminal.id and theirs.state is DeployState.QUEUED
    assert store.claim_next(owner=robot.id, lease=30).id == other.id
    assert store.claim_next(owner=robot.id, lease=30) is None, "#1 is the terminal's; #2 waits behind it"
    claimed = store.claim_next(only_id=theirs.id, owner=terminal.id, lease=30)
    assert (claimed.id, claimed.owner_id) == (theirs.id, terminal.id)
    store.finish_deploy(theirs.id, DeployState.SUCCEEDED, None)
    assert store.claim_next(owner=robot.id, lease=30).id == behind.id
    # A terminal that stopped (or went silent past the lease) leaves its queued deploy to anyone.
    orphan = store.create_deploy(req("4" * 40, env="qa"), terminal.id)[0]
    assert store.claim_next(owner=robot.id, lease=30) is None
    store.stop_process(terminal.id)
    assert store.claim_next(owner=robot.id, lease=30).id == orphan.id


def test_cancels_are_conditional(store: Any) -> None:
    queued = store.create_deploy(req("1" * 40))[0]
    running = store.create_deploy(req("2" * 40, env="staging"))[0]
    store.claim_next(only_id=running.id)
    assert store.request_cancel(queued.id) is None
    assert store.cancel_queued(running.id) is None
    assert store.cancel_queued(queued.id).state is DeployState.CANCELLED
    assert store.request_cancel(running.id).cancel_requested


def test_finish_keeps_a_final_state_and_the_first_error(store: Any) -> None:
    deploy = store.create_deploy(req())[0]
    store.claim_next()
    failed = store.finish_deploy(deploy.id, DeployState.FAILED, "step 1/1 `x` exited 1")
    assert failed.finished_at is not None
    assert store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None) == failed
    with pytest.raises(ValueError, match="final state"):
        store.finish_deploy(deploy.id, DeployState.RUNNING, None)
    with pytest.raises(UnknownDeploy):
        store.finish_deploy(99, DeployState.FAILED, None)


def test_take_over_and_last_succeeded(store: Any) -> None:
    alive = store.register_process(ProcessInfo("host-a", 1, "boot-1", ProcessKind.RUN))
    dead = store.register_process(ProcessInfo("host-b", 2, "boot-2", ProcessKind.DEPLOY))
    assert (dead.host, dead.kind, dead.stopped_at) == ("host-b", ProcessKind.DEPLOY, None)
    done = store.create_deploy(req("1" * 40))[0]
    store.claim_next(owner=alive.id)
    store.finish_deploy(done.id, DeployState.SUCCEEDED, None)
    running = store.create_deploy(req("2" * 40))[0]
    live = store.create_deploy(req("3" * 40, env="staging"))[0]
    assert store.claim_next(owner=dead.id).owner_id == dead.id
    assert store.claim_next(owner=alive.id).id == live.id
    assert store.record_step(running.id, 77) and store.get_deploy(running.id).step_pgid == 77
    assert not store.record_step(done.id, 77)
    assert store.orphaned_deploys(30) == []
    assert store.take_over(running.id, 30, "x") is None
    store.stop_process(dead.id)
    (orphan,) = store.orphaned_deploys(30, exclude=alive.id)
    assert orphan.deploy.id == running.id and orphan.owner.stopped_at is not None
    interrupted = store.take_over(running.id, 30, "robot stopped", lock_reason="check host-b")
    assert interrupted.id == running.id and interrupted.state is DeployState.INTERRUPTED
    assert interrupted.error == "robot stopped"
    assert store.take_over(running.id, 30, "x") is None
    assert store.get_lock("acme/api", "production").reason == "check host-b"
    assert store.last_succeeded("acme/api", "production").id == done.id
    assert [d.id for d in store.list_deploys(states=[DeployState.INTERRUPTED])] == [running.id]
    store.heartbeat(alive.id)
    assert store.get_process(alive.id).heartbeat_at >= alive.heartbeat_at
    assert store.get_process(999) is None


def test_prune_processes_keeps_live_rows_and_an_active_deploys_owner(store: Any) -> None:
    gone = store.register_process(ProcessInfo("host-a", 1, "boot-1", ProcessKind.RUN))
    owner = store.register_process(ProcessInfo("host-b", 2, "boot-2", ProcessKind.DEPLOY))
    alive = store.register_process(ProcessInfo("host-a", 3, "boot-1", ProcessKind.RUN))
    running = store.create_deploy(req())[0]
    store.claim_next(owner=owner.id)
    store.stop_process(gone.id)
    time.sleep(0.3)
    store.heartbeat(alive.id)
    assert store.prune_processes(0.2) == 1
    assert [store.get_process(p.id) is None for p in (gone, owner, alive)] == [True, False, False]
    store.finish_deploy(running.id, DeployState.FAILED, "x")
    assert store.prune_processes(0.2) == 1 and store.get_process(owner.id) is None
    assert store.prune_processes(0.2) == 0


def test_update_logs_locks_heads_and_auto_deploy_marks(store: Any) -> None:
    deploy = store.create_deploy(req())[0]
    assert store.update_deploy(deploy.id, github_deployment_id=7).github_deployment_id == 7
    with pytest.raises(ValueError, match="cannot set"):
        store.update_deploy(deploy.id, state="running")
    store.append_log(deploy.id, ["one", "two\x00"])
    store.append_log(deploy.id, [])
    store.append_log(deploy.id, ["three"])
    assert store.read_log(deploy.id) == "one\ntwo\ufffd\nthree"
    with pytest.raises(UnknownDeploy):
        store.append_log(99, ["x"])
    store.set_lock("acme/web", "production", "U1", "")
    store.set_lock("acme/api", "production", "U2", "why")
    assert [(lock.repo, lock.locked_by) for lock in store.list_locks()] == [
        ("acme/api", "U2"),
        ("acme/web", "U1"),
    ]
    store.set_head(BranchHead("acme/api", "b" * 40, '"etag"'))
    assert store.get_head("acme/api") == BranchHead("acme/api", "b" * 40, '"etag"')
    assert store.mark_auto_deployed("acme/api", "staging", "b" * 40)
    assert not store.mark_auto_deployed("acme/api", "staging", "b" * 40)


def test_prune_deletes_old_logs_of_ended_deploys_and_keeps_their_rows(store: Any) -> None:
    ended = store.create_deploy(req("1" * 40))[0]
    store.claim_next(only_id=ended.id)
    store.append_log(ended.id, ["built", "shipped"])
    store.finish_deploy(ended.id, DeployState.SUCCEEDED, None)
    running = store.create_deploy(req("2" * 40, env="staging"))[0]
    store.claim_next(only_id=running.id)
    store.append_log(running.id, ["still going"])
    finished = store.get_deploy(ended.id).finished_at
    assert store.prune_logs(finished) == 0  # ended at that moment, not before it
    assert store.prune_logs(finished + timedelta(seconds=1)) == 1
    assert store.read_log(ended.id) == ""
    assert store.get_deploy(ended.id).state is DeployState.SUCCEEDED  # the history stays
    assert store.read_log(running.id) == "still going"  # a live deploy keeps its log
    assert store.prune_logs(finished + timedelta(days=1)) == 0  # nothing left to prune


def test_a_takeover_lock_never_replaces_a_persons_lock(store: Any) -> None:
    dead = store.register_process(ProcessInfo("host-b", 2, "boot-2", ProcessKind.RUN))
    running = store.create_deploy(req())[0]
    store.claim_next(owner=dead.id)
    store.set_lock("acme/api", "production", "slack:U7", "incident freeze")
    store.stop_process(dead.id)
    assert store.take_over(running.id, 30, "robot stopped", lock_reason="check host-b") is not None
    lock = store.get_lock("acme/api", "production")
    assert (lock.locked_by, lock.reason) == ("slack:U7", "incident freeze")


def test_locks_and_unlocks_are_kept_in_a_history(store: Any) -> None:
    store.set_lock("acme/api", "production", "slack:U7", "release freeze")
    assert store.remove_lock("acme/api", "production", "slack:U8") is not None
    assert store.remove_lock("acme/api", "production", "slack:U9") is None  # nothing to lift: no event
    events = store.lock_history("acme/api", "production")
    assert [(e.action, e.actor, e.reason) for e in events] == [
        ("unlocked", "slack:U8", "release freeze"),
        ("locked", "slack:U7", "release freeze"),
    ]
    assert store.lock_history("acme/api", "staging") == []


EXPIRES = timedelta(milliseconds=300)


def test_a_lock_with_a_duration_holds_until_it_expires_then_refuses_nothing(store: Any) -> None:
    queued = store.create_deploy(req())[0]
    lock = store.set_lock("acme/api", "production", "slack:U7", "freeze", EXPIRES)
    store.set_lock("acme/api", "staging", "slack:U7", "no end")
    assert lock.expires_at is not None and lock.duration_seconds == pytest.approx(0.3, abs=0.01)
    assert store.get_lock("acme/api", "production") == lock
    assert store.next_lock_expiry() == lock.expires_at
    assert store.release_expired_locks() == [] and store.claim_next() is None
    time.sleep(EXPIRES.total_seconds() + 0.1)
    # Expired: no longer there for reads, claims or a person's unlock, before anyone releases it.
    assert store.get_lock("acme/api", "production") is None
    assert [lock.env for lock in store.list_locks()] == ["staging"]
    assert store.remove_lock("acme/api", "production", "slack:U8") is None
    assert store.claim_next().id == queued.id
    assert store.release_expired_locks() == [lock]
    assert store.release_expired_locks() == []
    assert store.next_lock_expiry() is None  # the lock left has no end
    events = store.lock_history("acme/api", "production")
    assert [(e.action, e.actor, e.reason) for e in events] == [
        ("unlocked", "robot:robot", "freeze"),
        ("locked", "slack:U7", "freeze"),
    ]


def test_locking_again_replaces_an_expired_lock_and_its_end(store: Any) -> None:
    store.set_lock("acme/api", "production", "slack:U7", "short", EXPIRES)
    time.sleep(EXPIRES.total_seconds() + 0.1)
    again = store.set_lock("acme/api", "production", "slack:U8", "long")
    assert again.expires_at is None and store.get_lock("acme/api", "production") == again
    assert store.release_expired_locks() == []  # the new lock is not the one that ran out
    events = store.lock_history("acme/api", "production")
    assert [(e.action, e.actor) for e in events] == [
        ("locked", "slack:U8"),
        ("unlocked", "robot:robot"),
        ("locked", "slack:U7"),
    ]
    renewed = store.set_lock("acme/api", "production", "slack:U9", "later", timedelta(hours=2))
    assert renewed.expires_at is not None and store.next_lock_expiry() == renewed.expires_at


def test_an_expired_lock_makes_way_for_a_takeover_lock(store: Any) -> None:
    dead = store.register_process(ProcessInfo("host-b", 2, "boot-2", ProcessKind.RUN))
    running = store.create_deploy(req())[0]
    store.claim_next(owner=dead.id)
    store.set_lock("acme/api", "production", "slack:U7", "short freeze", EXPIRES)
    store.stop_process(dead.id)
    time.sleep(EXPIRES.total_seconds() + 0.1)
    assert store.take_over(running.id, 30, "robot stopped", lock_reason="check host-b") is not None
    lock = store.get_lock("acme/api", "production")
    assert (lock.locked_by, lock.reason, lock.expires_at) == ("robot", "check host-b", None)


def test_a_waiting_deploy_holds_its_env_and_its_rechecks_are_claimed_once(store: Any) -> None:
    head = store.create_deploy(req("1" * 40))[0]
    behind = store.create_deploy(req("2" * 40))[0]
    claimed = store.claim_next(owner=7)
    assert claimed.id == head.id
    assert store.park(head.id, 8, "waiting for CI: ci/test pending", 0.0) is None  # not its owner
    waiting = store.park(head.id, 7, "waiting for CI: ci/test pending", 0.0)
    assert waiting.state is DeployState.WAITING and waiting.owner_id is None
    assert waiting.waiting_for == "waiting for CI: ci/test pending" and waiting.recheck_at is not None
    assert waiting.finished_at is None and not waiting.state.is_final
    assert store.claim_next() is None  # nothing behind a waiting head starts
    assert store.create_deploy(req("1" * 40)) == (store.get_deploy(head.id), False)  # still deduped
    assert store.next_recheck() == waiting.recheck_at
    first = store.claim_recheck(60.0)
    assert first.id == head.id and store.claim_recheck(60.0) is None  # pushed on: one checker
    assert store.update_waiting(head.id, "waiting for CI: ci/test missing").waiting_for.endswith("missing")
    running = store.resume(head.id, 9)
    assert (running.state, running.owner_id, running.error, running.recheck_at) == (
        DeployState.RUNNING,
        9,
        None,
        None,
    )
    assert (
        store.resume(head.id, 9) is None and store.finish_waiting(head.id, DeployState.BLOCKED, "x") is None
    )
    store.finish_deploy(head.id, DeployState.SUCCEEDED, None)
    assert store.claim_next().id == behind.id


def test_a_waiting_deploy_is_cancelled_or_blocked_in_one_conditional_write(store: Any) -> None:
    deploy = store.create_deploy(req())[0]
    store.claim_next(owner=1)
    store.request_cancel(deploy.id)
    assert store.park(deploy.id, 1, "waiting", 1.0) is None  # a cancel was asked meanwhile
    other = store.create_deploy(req(env="staging"))[0]
    store.claim_next(owner=1)
    store.park(other.id, 1, "waiting", 1.0)
    assert store.cancel_queued(other.id) is None and store.request_cancel(other.id) is None
    done = store.finish_waiting(other.id, DeployState.CANCELLED, "cancelled while waiting for CI")
    assert (done.state, done.error) == (DeployState.CANCELLED, "cancelled while waiting for CI")
    assert done.finished_at is not None and store.next_recheck() is None


def test_the_root_is_claimed_once_then_recorded(store: Any) -> None:
    deploy = store.create_deploy(req())[0]
    token = store.claim_root(deploy.id, 30.0)
    assert token is not None and store.claim_root(deploy.id, 30.0) is None
    pending = store.get_deploy(deploy.id)
    assert (pending.root_claimed_at.isoformat(), pending.root_ts, pending.message_ts) == (token, None, None)
    assert not store.record_root(deploy.id, "?1.0", "C1", "1.5")  # not that claim
    assert store.record_root(deploy.id, token, "C1", "1.5")
    posted = store.get_deploy(deploy.id)
    assert (posted.channel, posted.message_ts, posted.root_ts, posted.root_claimed_at) == (
        "C1",
        "1.5",
        "1.5",
        None,
    )
    assert store.claim_root(deploy.id, 0.0) is None  # posted: nothing to claim, however old


def test_a_stale_root_claim_can_be_taken_over(store: Any) -> None:
    deploy = store.create_deploy(req())[0]
    first = store.claim_root(deploy.id, 30.0)
    second = store.claim_root(deploy.id, 0.0)
    assert second is not None and second != first
    assert not store.record_root(deploy.id, first, "C1", "1.5")
    assert store.record_root(deploy.id, second, "C1", "1.6")


def test_a_merge_deploys_root_is_a_reply_in_its_announcement_thread(store: Any) -> None:
    request = DeployRequest("acme/api", "production", "main", "a" * 40, "U1", Source.MERGE, channel="C1")
    deploy = store.create_deploy(replace(request, message_ts="100.1"))[0]
    assert (deploy.message_ts, deploy.root_ts) == ("100.1", None)
    token = store.claim_root(deploy.id, 30.0)
    assert store.get_deploy(deploy.id).message_ts == "100.1"
    assert store.record_root(deploy.id, token, "C1", "100.2")
    posted = store.get_deploy(deploy.id)
    assert (posted.message_ts, posted.root_ts) == ("100.1", "100.2")


def test_the_change_feed_wakes_on_queue_changes(store: Any) -> None:
    feed = store.watch()
    try:
        feed.wait(0.3)  # settle: whatever happened before
        assert not feed.wait(0.3)
        deploy = store.create_deploy(req())[0]
        assert feed.wait(2.0)
        store.cancel_queued(deploy.id)
        assert feed.wait(2.0)
    finally:
        feed.close()


def test_comparisons_are_kept_per_sha_pair_and_change_lists_per_deploy(store: Any) -> None:
    from datetime import UTC, datetime

    from bot.models import ChangeKind, ChangeList, CommitInfo, Comparison

    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    commits = (
        CommitInfo("b" * 40, "Fix login (#123)", ("a" * 40,), "alice", when),
        CommitInfo("c" * 40, "x" * 2000, ("b" * 40,), "", None),
    )
    comparison = Comparison("ahead", 2, 0, 2, commits)
    assert store.get_comparison("acme/api", "a" * 40, "c" * 40) is None
    store.put_comparison("acme/api", "a" * 40, "c" * 40, comparison)
    store.put_comparison("acme/api", "a" * 40, "c" * 40, Comparison("unrelated", 0, 0, 0, ()))
    assert store.get_comparison("acme/api", "a" * 40, "c" * 40) == comparison, "the first one kept stays"
    assert store.get_comparison("acme/web", "a" * 40, "c" * 40) is None

    deploy = store.create_deploy(req("c" * 40))[0]
    assert store.get_changes(deploy.id) is None
    changes = ChangeList(ChangeKind.AHEAD, "c" * 40, "a" * 40, 41, when, 2, 0, commits)
    store.record_changes(deploy.id, changes)
    kept = store.get_changes(deploy.id)
    assert kept.kind is ChangeKind.AHEAD and (kept.base_sha, kept.base_deploy_id, kept.base_at) == (
        "a" * 40,
        41,
        when,
    )
    assert kept.head_sha == "c" * 40 and (kept.ahead_by, kept.behind_by) == (2, 0)
    assert [(c.sha, c.author, c.committed_at) for c in kept.commits] == [
        ("b" * 40, "alice", when),
        ("c" * 40, "", None),
    ]
    assert kept.commits[0].title == "Fix login (#123)" and len(kept.commits[1].title) == 1000
    store.record_changes(deploy.id, ChangeList(ChangeKind.UNAVAILABLE, "c" * 40, note="GitHub 502"))
    again = store.get_changes(deploy.id)
    assert again.kind is ChangeKind.UNAVAILABLE and again.commits == () and again.note == "GitHub 502"
    with pytest.raises(UnknownDeploy):
        store.record_changes(999, changes)


def awaiting(sha: str = "a" * 40, timeout: float = 3600, env: str = "production") -> DeployRequest:
    return replace(req(sha, env=env), approval_timeout=timeout)


def test_a_deploy_awaiting_approval_dedupes_but_holds_nothing(store: Any) -> None:
    first, created = store.create_deploy(awaiting())
    assert created and first.state is DeployState.AWAITING_APPROVAL and first.recheck_at is not None
    assert store.create_deploy(req()) == (first, False)  # the same commit again is a duplicate
    other = store.create_deploy(req("b" * 40))[0]
    assert store.claim_next().id == other.id  # the queue does not wait on an approval
    assert store.next_recheck() == first.recheck_at


def test_approvals_count_each_approver_once_and_the_last_one_queues(store: Any) -> None:
    deploy = store.create_deploy(awaiting())[0]
    first = store.approve(deploy.id, "slack:U2", 2)
    assert first.recorded and not first.queued and first.deploy.state is DeployState.AWAITING_APPROVAL
    again = store.approve(deploy.id, "slack:U2", 2)
    assert not again.recorded and not again.queued and len(again.approvals) == 1
    second = store.approve(deploy.id, "slack:U3", 2)
    assert second.recorded and second.queued and second.deploy.state is DeployState.QUEUED
    assert [a.approver for a in second.approvals] == ["slack:U2", "slack:U3"]
    late = store.approve(deploy.id, "slack:U4", 2)
    assert not late.recorded and not late.queued and late.deploy.state is DeployState.QUEUED
    given = store.list_approvals([deploy.id, 99])
    assert list(given) == [deploy.id] and [a.actor.name for a in given[deploy.id]] == ["U2", "U3"]
    assert given[deploy.id][0].at.tzinfo is not None
    assert store.claim_next().id == deploy.id
    with pytest.raises(UnknownDeploy):
        store.approve(99, "slack:U2", 1)


def test_rejecting_and_expiring_are_conditional_writes(store: Any) -> None:
    rejected = store.create_deploy(awaiting("1" * 40))[0]
    expiring = store.create_deploy(awaiting("2" * 40, timeout=0.001))[0]
    later = store.create_deploy(awaiting("3" * 40))[0]
    done = store.finish_approval(rejected.id, DeployState.REJECTED, "rejected by slack:U2: not today")
    assert done.state is DeployState.REJECTED and done.error.endswith("not today") and done.finished_at
    assert store.finish_approval(rejected.id, DeployState.CANCELLED, "x") is None
    with pytest.raises(ValueError, match="final state"):
        store.finish_approval(later.id, DeployState.QUEUED, "x")
    time.sleep(0.01)
    assert store.expire_approval("not approved in time", only_id=later.id) is None  # not due
    expired = store.expire_approval("not approved in time")
    assert expired.id == expiring.id and expired.state is DeployState.EXPIRED and expired.finished_at
    assert store.expire_approval("not approved in time") is None  # once
    assert store.approve(expiring.id, "slack:U2", 1).deploy.state is DeployState.EXPIRED
    assert store.next_recheck() == later.recheck_at


def test_dora_history_sums_the_seeded_history_alike(store: Any, tmp_path: Path) -> None:
    if isinstance(store, MemoryStore):
        seed_memory(store, SEEDED)
    else:
        insert_history(f"sqlite:///{tmp_path / 'contract.db'}", SEEDED)
    targets = [(API, "production"), (WEB, "production")]
    assert store.dora_history([], UNTIL, 84).days == ()
    history = store.dora_history(targets, UNTIL, 84)
    # acme/api production over 84 days: the days with deploys that ended (tests/support/history.py).
    api_days = [(d.day, d.succeeded, d.failed, d.rolled_back) for d in history.days if d.repo == API]
    assert api_days == [(0, 0, 1, 0), (3, 1, 0, 0), (5, 1, 0, 0), (10, 2, 0, 1), (14, 1, 0, 0), (15, 0, 2, 0),
                        (20, 1, 0, 0), (40, 1, 0, 0)]  # fmt: skip
    api = build_report(history, targets, UNTIL, 30).repos[0]
    assert api.lead_time.numbers["median_seconds"] == pytest.approx(3 * HOUR, abs=1)
    assert [(i.day, i.seconds is None) for i in history.incidents if i.repo == API] == [
        (0, True),
        (10, False),
        (15, False),
    ]


def test_history_filters_in_the_query_since_states_env_and_limit(store: Any) -> None:
    old = store.create_deploy(req("1" * 40))[0]
    store.finish_deploy(old.id, DeployState.FAILED, "boom")
    staging = store.create_deploy(req("2" * 40, env="staging"))[0]
    newest = store.create_deploy(req("3" * 40))[0]
    assert [d.id for d in store.list_deploys(since=newest.created_at)] == [newest.id]
    assert [d.id for d in store.list_deploys(since=old.created_at)] == [newest.id, staging.id, old.id]
    assert [d.id for d in store.list_deploys(env="staging")] == [staging.id]
    assert [d.id for d in store.list_deploys(states=[DeployState.FAILED])] == [old.id]
    assert [d.id for d in store.list_deploys(states=[DeployState.QUEUED], limit=1)] == [newest.id]
    later = newest.created_at + timedelta(seconds=1)
    assert store.list_deploys(since=later) == []


def test_home_viewers_are_recorded_with_their_filter(store: Any) -> None:
    first = store.open_home("U1")
    assert first.user == "U1" and first.repo_filter is None
    assert store.set_home_filter("U1", "acme/api").repo_filter == "acme/api"
    again = store.open_home("U1")
    assert again.repo_filter == "acme/api" and again.opened_at >= first.opened_at
    store.open_home("U2")
    viewers = store.home_viewers(first.opened_at)
    assert [v.user for v in viewers] == ["U2", "U1"]
    assert store.home_viewers(viewers[0].opened_at + timedelta(seconds=1)) == []
    store.set_home_filter("U2", None)
    assert {v.user: v.repo_filter for v in store.home_viewers(first.opened_at)} == {
        "U1": "acme/api",
        "U2": None,
    }
