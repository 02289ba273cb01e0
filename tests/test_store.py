"""The store's contract on real SQLite files and, where it can be started, a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import ConfigError, UnknownDeploy
from bot.lock_expiry import LockExpiry
from bot.models import (
    BranchHead,
    Deploy,
    DeployRequest,
    DeployState,
    Lock,
    ProcessInfo,
    ProcessKind,
    Source,
)
from bot.ports import StorePort
from bot.store import SqlStore
from tests.support.postgres import PostgresServer

THREAD_DEADLINE = 60.0
RUNNING = [DeployState.RUNNING]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Opens stores on the test's database (each one like a separate process) and closes them."""
    opened: list[SqlStore] = []

    def open_one() -> SqlStore:
        opened.append(SqlStore.from_url(store_url))
        return opened[-1]

    yield open_one
    for one in opened:
        one.close()


@pytest.fixture
def store(open_store: Callable[[], SqlStore]) -> StorePort:
    # Typed as the port so mypy checks that SqlStore implements it exactly.
    return open_store()


def req(sha: str = "a" * 40, env: str = "staging", repo: str = "acme/api", **kw: object) -> DeployRequest:
    fields: dict[str, object] = {
        "repo": repo,
        "env": env,
        "ref": "main",
        "sha": sha,
        "requested_by": "U1",
        "source": Source.COMMAND,
    }
    fields.update(kw)
    return DeployRequest(**fields)  # type: ignore[arg-type]


def queue(store: StorePort, *requests: DeployRequest) -> list[Deploy]:
    deploys = []
    for request in requests:
        deploy, created = store.create_deploy(request)
        assert created
        deploys.append(deploy)
    return deploys


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - value).total_seconds()) < 600


# deploys


def test_create_deploy_records_the_request(store: StorePort) -> None:
    request = req(force=True, channel="C1", message_ts="171.5", source=Source.BUTTON)
    deploy, created = store.create_deploy(request)
    assert created
    assert (deploy.repo, deploy.env, deploy.ref, deploy.sha) == (
        "acme/api",
        "staging",
        "main",
        "a" * 40,
    )
    assert (deploy.requested_by, deploy.source, deploy.force) == ("U1", Source.BUTTON, True)
    assert (deploy.channel, deploy.message_ts) == ("C1", "171.5")
    assert deploy.state is DeployState.QUEUED
    assert deploy.started_at is None and deploy.finished_at is None and not deploy.cancel_requested
    assert_utc(deploy.created_at)
    assert store.get_deploy(deploy.id) == deploy
    assert store.get_deploy(deploy.id + 1000) is None


def test_identical_active_request_returns_the_existing_deploy(store: StorePort) -> None:
    first, created = store.create_deploy(req())
    again, created_again = store.create_deploy(req(requested_by="U2", source=Source.MERGE))
    assert created and not created_again
    assert again.id == first.id and again.requested_by == "U1"
    other_sha, c1 = store.create_deploy(req(sha="b" * 40))
    other_env, c2 = store.create_deploy(req(env="production"))
    other_repo, c3 = store.create_deploy(req(repo="acme/web"))
    assert c1 and c2 and c3
    assert len({first.id, other_sha.id, other_env.id, other_repo.id}) == 4
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == first.id
    running_again, created_running = store.create_deploy(req())
    assert running_again.id == first.id and not created_running


def test_a_finished_deploy_does_not_dedupe_a_new_request(store: StorePort) -> None:
    first = queue(store, req())[0]
    store.cancel_queued(first.id)
    second, created = store.create_deploy(req())
    assert created and second.id > first.id
    assert store.claim_next() == store.get_deploy(second.id)
    store.finish_deploy(second.id, DeployState.SUCCEEDED, None)
    third, created = store.create_deploy(req())
    assert created and third.id > second.id


def test_claim_is_fifo_per_env_and_parallel_across_envs(store: StorePort) -> None:
    s1, s2, p1, s3 = queue(
        store, req("1" * 40), req("2" * 40), req("3" * 40, env="production"), req("4" * 40)
    )
    first = store.claim_next()
    assert first is not None and first.id == s1.id and first.state is DeployState.RUNNING
    assert_utc(first.started_at)
    second = store.claim_next()
    assert second is not None and second.id == p1.id
    assert store.claim_next() is None  # staging is busy, production is busy
    store.finish_deploy(s1.id, DeployState.FAILED, "step 1/1 exited 1")
    third = store.claim_next()
    assert third is not None and third.id == s2.id
    store.finish_deploy(s2.id, DeployState.SUCCEEDED, None)
    fourth = store.claim_next()
    assert fourth is not None and fourth.id == s3.id
    assert store.claim_next() is None


def test_a_cancelled_queued_deploy_does_not_hold_the_queue(store: StorePort) -> None:
    s1, s2 = queue(store, req("1" * 40), req("2" * 40))
    assert store.cancel_queued(s1.id) is not None
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == s2.id


def test_a_locked_env_holds_its_queued_deploys(store: StorePort) -> None:
    store.set_lock("acme/api", "staging", "U9", "db migration")
    staging, production = queue(store, req(), req(env="production"))
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == production.id
    assert store.claim_next() is None
    assert store.claim_next(only_id=staging.id) is None
    store.remove_lock("acme/api", "staging", "slack:U7")
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == staging.id


def test_claim_only_id_serves_that_deploy_only_in_fifo_order(store: StorePort) -> None:
    s1, s2, p1 = queue(store, req("1" * 40), req("2" * 40), req("3" * 40, env="production"))
    assert store.claim_next(only_id=s2.id) is None  # s1 is older in staging
    assert store.claim_next(only_id=9999) is None
    claimed = store.claim_next(only_id=p1.id)
    assert claimed is not None and claimed.id == p1.id
    assert store.get_deploy(s1.id).state is DeployState.QUEUED  # type: ignore[union-attr]
    assert store.claim_next(only_id=p1.id) is None  # already running
    claimed = store.claim_next(only_id=s1.id)
    assert claimed is not None and claimed.id == s1.id
    assert store.claim_next(only_id=s2.id) is None  # s1 runs
    store.finish_deploy(s1.id, DeployState.SUCCEEDED, None)
    claimed = store.claim_next(only_id=s2.id)
    assert claimed is not None and claimed.id == s2.id


def test_update_deploy_sets_only_the_allowed_fields(store: StorePort) -> None:
    deploy = queue(store, req())[0]
    updated = store.update_deploy(
        deploy.id, github_deployment_id=2**40, channel="C7", message_ts="1.2", error="oops"
    )
    assert (updated.github_deployment_id, updated.channel, updated.message_ts) == (
        2**40,
        "C7",
        "1.2",
    )
    assert updated.error == "oops"
    assert store.get_deploy(deploy.id) == updated
    assert store.update_deploy(deploy.id, error=None).error is None
    assert store.update_deploy(deploy.id) == store.get_deploy(deploy.id)
    with pytest.raises(ValueError, match="state"):
        store.update_deploy(deploy.id, state="running")
    with pytest.raises(ValueError, match="github_deployment_id"):
        store.update_deploy(deploy.id, github_deployment_id="12")
    with pytest.raises(UnknownDeploy):
        store.update_deploy(deploy.id + 1000, channel="C1")
    current = store.get_deploy(deploy.id)
    assert current is not None and current.state is DeployState.QUEUED


def test_finish_deploy_is_final_and_idempotent(store: StorePort) -> None:
    running, queued = queue(store, req("1" * 40), req("2" * 40, env="production"))
    store.claim_next(only_id=running.id)
    store.update_deploy(running.id, error="GitHub status failed")
    done = store.finish_deploy(running.id, DeployState.SUCCEEDED, None)
    assert done.state is DeployState.SUCCEEDED and done.error == "GitHub status failed"
    assert_utc(done.finished_at)
    again = store.finish_deploy(running.id, DeployState.FAILED, "late")
    assert again == done
    blocked = store.finish_deploy(queued.id, DeployState.BLOCKED, "ci/test failed")
    assert blocked.state is DeployState.BLOCKED and blocked.error == "ci/test failed"
    assert blocked.started_at is None
    with pytest.raises(ValueError, match="final"):
        store.finish_deploy(queued.id, DeployState.RUNNING, None)
    with pytest.raises(UnknownDeploy):
        store.finish_deploy(queued.id + 1000, DeployState.FAILED, None)


def test_cancel_queued_only_cancels_queued(store: StorePort) -> None:
    running, queued = queue(store, req("1" * 40), req("2" * 40))
    store.claim_next()
    cancelled = store.cancel_queued(queued.id)
    assert cancelled is not None and cancelled.state is DeployState.CANCELLED
    assert_utc(cancelled.finished_at)
    assert store.cancel_queued(queued.id) is None
    assert store.cancel_queued(running.id) is None
    assert store.cancel_queued(running.id + 1000) is None
    assert store.get_deploy(running.id).state is DeployState.RUNNING  # type: ignore[union-attr]


def test_request_cancel_flags_running_only(store: StorePort) -> None:
    running, queued = queue(store, req("1" * 40), req("2" * 40))
    store.claim_next()
    assert store.request_cancel(queued.id) is None
    flagged = store.request_cancel(running.id)
    assert flagged is not None and flagged.cancel_requested
    assert flagged.state is DeployState.RUNNING
    assert store.get_deploy(running.id) == flagged
    assert not store.get_deploy(queued.id).cancel_requested  # type: ignore[union-attr]
    store.finish_deploy(running.id, DeployState.CANCELLED, None)
    assert store.request_cancel(running.id) is None


def here(kind: ProcessKind = ProcessKind.RUN, host: str = "host-a") -> ProcessInfo:
    return ProcessInfo(host=host, pid=4242, boot_id="boot-1", kind=kind)


def test_processes_register_beat_and_stop(store: StorePort) -> None:
    first = store.register_process(here())
    second = store.register_process(here(ProcessKind.DEPLOY, host="host-b"))
    assert second.id != first.id
    assert (first.host, first.pid, first.boot_id, first.kind) == ("host-a", 4242, "boot-1", ProcessKind.RUN)
    assert_utc(first.started_at)
    assert first.heartbeat_at == first.started_at and first.stopped_at is None
    time.sleep(0.01)
    store.heartbeat(first.id)
    beaten = store.get_process(first.id)
    assert beaten is not None and beaten.heartbeat_at > first.heartbeat_at
    store.stop_process(second.id)
    stopped = store.get_process(second.id)
    assert stopped is not None and stopped.stopped_at is not None
    assert_utc(stopped.stopped_at)
    assert store.get_process(second.id + 100) is None


def test_prune_processes_deletes_silent_rows_but_keeps_a_running_deploys_owner(store: StorePort) -> None:
    stopped = store.register_process(here())
    dead = store.register_process(here(host="host-b"))
    owner = store.register_process(here(host="host-c"))
    alive = store.register_process(here(ProcessKind.DEPLOY))
    done, running = queue(store, req("1" * 40), req("2" * 40, env="production"))
    store.claim_next(only_id=done.id, owner=dead.id)
    store.finish_deploy(done.id, DeployState.SUCCEEDED, None)  # an ended deploy protects nobody
    store.claim_next(only_id=running.id, owner=owner.id)
    store.stop_process(stopped.id)
    assert store.prune_processes(60) == 0, "every row beat within the minute"
    time.sleep(0.3)
    store.heartbeat(alive.id)
    assert store.prune_processes(0.2) == 2
    assert store.get_process(stopped.id) is None and store.get_process(dead.id) is None
    assert store.get_process(alive.id) is not None
    (orphan,) = store.orphaned_deploys(0.2)
    assert orphan.owner == store.get_process(owner.id), "a takeover still finds the owner's host"
    store.finish_deploy(running.id, DeployState.SUCCEEDED, None)
    assert store.prune_processes(0.2) == 1 and store.get_process(owner.id) is None


def test_take_over_only_deploys_whose_owner_lease_ran_out(store: StorePort) -> None:
    alive = store.register_process(here())
    dead = store.register_process(here(host="host-b"))
    mine, theirs, waiting = queue(store, req("1" * 40), req("2" * 40, env="production"), req("3" * 40))
    assert store.claim_next(owner=alive.id).id == mine.id  # type: ignore[union-attr]
    claimed = store.claim_next(owner=dead.id)
    assert claimed is not None and (claimed.id, claimed.owner_id) == (theirs.id, dead.id)
    assert store.orphaned_deploys(30) == []
    assert store.take_over(theirs.id, 30, "gone") is None, "a live owner keeps its deploy"

    store.stop_process(dead.id)
    (orphan,) = store.orphaned_deploys(30)
    assert orphan.deploy.id == theirs.id and orphan.owner == store.get_process(dead.id)
    taken = store.take_over(theirs.id, 30, "robot stopped during the deploy")
    assert taken is not None and taken.state is DeployState.INTERRUPTED
    assert taken.error == "robot stopped during the deploy"
    assert_utc(taken.finished_at)
    assert store.take_over(theirs.id, 30, "again") is None, "taken once"

    # A lease of 0 s: the live owner's last beat is already too old; it never takes its own.
    time.sleep(0.01)
    assert store.orphaned_deploys(0, exclude=alive.id) == []
    assert [o.deploy.id for o in store.orphaned_deploys(0)] == [mine.id]
    locked = store.take_over(mine.id, 0, "stopped", lock_reason="step of deploy #1 may still be running")
    assert locked is not None and locked.state is DeployState.INTERRUPTED
    lock = store.get_lock("acme/api", "staging")
    assert lock is not None and lock.locked_by == "robot"
    assert lock.reason == "step of deploy #1 may still be running"
    assert store.claim_next() is None, "the lock made in the same write holds the queue"
    store.remove_lock("acme/api", "staging", "slack:U7")
    assert store.claim_next().id == waiting.id  # type: ignore[union-attr]


def test_a_deploy_without_a_known_owner_is_an_orphan(store: StorePort) -> None:
    (deploy,) = queue(store, req())
    claimed = store.claim_next()
    assert claimed is not None and claimed.owner_id is None
    (orphan,) = store.orphaned_deploys(30)
    assert (orphan.deploy.id, orphan.owner) == (deploy.id, None)
    assert store.take_over(deploy.id, 30, "no owner") is not None


def test_record_step_only_while_running(store: StorePort) -> None:
    owner = store.register_process(here())
    (deploy,) = queue(store, req())
    assert not store.record_step(deploy.id, 123), "queued: no step runs"
    store.claim_next(owner=owner.id)
    assert store.record_step(deploy.id, 4567)
    assert store.get_deploy(deploy.id).step_pgid == 4567  # type: ignore[union-attr]
    assert store.record_step(deploy.id, None)
    assert store.get_deploy(deploy.id).step_pgid is None  # type: ignore[union-attr]
    store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)
    assert not store.record_step(deploy.id, 4567)


def test_racing_takers_take_a_deploy_once(open_store: Callable[[], SqlStore]) -> None:
    first = open_store()
    dead = first.register_process(here(host="host-b"))
    deploys = queue(first, *(req(f"{n}" * 40, env=f"env{n}") for n in range(1, 7)))
    for _ in deploys:
        assert first.claim_next(owner=dead.id) is not None
    first.stop_process(dead.id)
    stores = [open_store() for _ in range(3)]
    wins: list[int] = []
    lock = threading.Lock()

    def take(store: SqlStore) -> None:
        for deploy in deploys:
            if store.take_over(deploy.id, 30, "stopped", lock_reason="check") is not None:
                with lock:
                    wins.append(deploy.id)

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_DEADLINE)
    assert sorted(wins) == [d.id for d in deploys]
    assert len(first.list_locks()) == len(deploys)


def test_list_deploys_newest_first_with_filters(store: StorePort) -> None:
    a, b, c, d = queue(
        store,
        req("1" * 40),
        req("2" * 40, env="production"),
        req("3" * 40, repo="acme/web"),
        req("4" * 40),
    )
    store.claim_next(only_id=a.id)
    assert [x.id for x in store.list_deploys()] == [d.id, c.id, b.id, a.id]
    assert [x.id for x in store.list_deploys(limit=2)] == [d.id, c.id]
    assert store.list_deploys(limit=0) == []
    assert [x.id for x in store.list_deploys(repo="acme/api")] == [d.id, b.id, a.id]
    assert [x.id for x in store.list_deploys("acme/api", "staging")] == [d.id, a.id]
    assert [x.id for x in store.list_deploys(env="production")] == [b.id]
    assert [x.id for x in store.list_deploys(states=RUNNING)] == [a.id]
    assert store.list_deploys(states=[]) == []
    assert store.list_deploys(repo="acme/none") == []


def test_last_succeeded_is_the_newest_success_of_that_env(store: StorePort) -> None:
    assert store.last_succeeded("acme/api", "staging") is None
    ids = []
    for sha, state in (
        ("1", DeployState.SUCCEEDED),
        ("2", DeployState.SUCCEEDED),
        ("3", DeployState.FAILED),
    ):
        deploy = queue(store, req(sha * 40))[0]
        store.claim_next(only_id=deploy.id)
        store.finish_deploy(deploy.id, state, None)
        ids.append(deploy.id)
    other = queue(store, req("4" * 40, env="production"))[0]
    store.claim_next(only_id=other.id)
    store.finish_deploy(other.id, DeployState.SUCCEEDED, None)
    last = store.last_succeeded("acme/api", "staging")
    assert last is not None and last.id == ids[1] and last.sha == "2" * 40
    assert store.last_succeeded("acme/web", "staging") is None


# logs


def test_logs_round_trip_unicode_and_many_lines(store: StorePort) -> None:
    deploy = queue(store, req())[0]
    assert store.read_log(deploy.id) == ""
    lines = [f"line {i} · ✓ déployé 🚀 \t<!channel>" for i in range(10_000)]
    lines[17] = ""
    for start in range(0, len(lines), 700):
        store.append_log(deploy.id, lines[start : start + 700])
    store.append_log(deploy.id, [])
    assert store.read_log(deploy.id) == "\n".join(lines)
    other = queue(store, req(env="production"))[0]
    store.append_log(other.id, ["only mine"])
    assert store.read_log(other.id) == "only mine"
    assert store.read_log(deploy.id).count("\n") == 9_999


def test_append_log_to_an_unknown_deploy_is_refused(store: StorePort) -> None:
    with pytest.raises(UnknownDeploy):
        store.append_log(424242, ["x"])


# locks and heads


def test_locks_set_get_list_replace_remove(store: StorePort) -> None:
    assert store.get_lock("acme/api", "production") is None
    lock = store.set_lock("acme/api", "production", "U1", "release freeze")
    assert (lock.repo, lock.env, lock.locked_by, lock.reason) == (
        "acme/api",
        "production",
        "U1",
        "release freeze",
    )
    assert_utc(lock.locked_at)
    assert store.get_lock("acme/api", "production") == lock
    store.set_lock("acme/web", "staging", "U2", "")
    store.set_lock("acme/api", "staging", "U3", "tests")
    assert [(x.repo, x.env) for x in store.list_locks()] == [
        ("acme/api", "production"),
        ("acme/api", "staging"),
        ("acme/web", "staging"),
    ]
    assert [x.env for x in store.list_locks("acme/api")] == ["production", "staging"]
    replaced = store.set_lock("acme/api", "production", "U4", "incident")
    assert (replaced.locked_by, replaced.reason) == ("U4", "incident")
    assert store.get_lock("acme/api", "production") == replaced
    removed = store.remove_lock("acme/api", "production", "slack:U7")
    assert removed == replaced
    assert store.remove_lock("acme/api", "production", "slack:U7") is None
    assert store.get_lock("acme/api", "production") is None
    assert len(store.list_locks()) == 2


def test_heads_are_recorded_and_replaced(store: StorePort) -> None:
    assert store.get_head("acme/api") is None
    store.set_head(BranchHead("acme/api", "a" * 40, 'W/"etag-1"'))
    assert store.get_head("acme/api") == BranchHead("acme/api", "a" * 40, 'W/"etag-1"')
    store.set_head(BranchHead("acme/api", "b" * 40, None))
    store.set_head(BranchHead("acme/web", "c" * 40, "e2"))
    assert store.get_head("acme/api") == BranchHead("acme/api", "b" * 40, None)
    assert store.get_head("acme/web") == BranchHead("acme/web", "c" * 40, "e2")


def test_a_reopened_store_sees_everything(open_store: Callable[[], SqlStore]) -> None:
    first = open_store()
    done, waiting = queue(first, req("1" * 40), req("2" * 40))
    first.claim_next()
    first.append_log(done.id, ["hello", "wörld"])
    finished = first.finish_deploy(done.id, DeployState.SUCCEEDED, None)
    lock = first.set_lock("acme/api", "production", "U1", "freeze")
    first.set_head(BranchHead("acme/api", "f" * 40, "etag"))
    first.close()
    again = open_store()
    assert again.get_deploy(done.id) == finished
    assert again.get_deploy(waiting.id) == waiting
    assert again.read_log(done.id) == "hello\nwörld"
    assert again.list_locks() == [lock]
    assert again.get_head("acme/api") == BranchHead("acme/api", "f" * 40, "etag")
    assert again.create_deploy(req("2" * 40)) == (waiting, False)


# concurrency


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` on ``count`` threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count, timeout=THREAD_DEADLINE)

    def body(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_DEADLINE)
    assert not any(t.is_alive() for t in threads), "a worker thread did not finish"
    if errors:
        raise errors[0]


@pytest.mark.slow  # threads racing on one database
def test_concurrent_identical_requests_make_one_active_deploy(store: StorePort) -> None:
    keys = [(env, sha) for env in ("staging", "production") for sha in ("1" * 40, "2" * 40, "3" * 40)]
    results: list[tuple[tuple[str, str], Deploy, bool]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for i in range(25):
            env, sha = keys[(index + i) % len(keys)]
            deploy, created = store.create_deploy(req(sha, env=env, requested_by=f"U{index}"))
            with lock:
                results.append(((env, sha), deploy, created))

    run_threads(8, work)
    assert len(results) == 200
    ids_by_key: dict[tuple[str, str], set[int]] = {}
    for key, deploy, _ in results:
        assert (deploy.env, deploy.sha) == key
        ids_by_key.setdefault(key, set()).add(deploy.id)
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    assert sum(created for _, _, created in results) == len(keys)
    active = store.list_deploys(states=[DeployState.QUEUED, DeployState.RUNNING], limit=1000)
    assert Counter((d.env, d.sha) for d in active) == Counter({key: 1 for key in keys})


@pytest.mark.slow  # threads racing on one database
@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores"])
def test_racing_workers_claim_each_deploy_once_one_per_env(
    open_store: Callable[[], SqlStore], stores: int
) -> None:
    handles = [open_store() for _ in range(stores)]
    envs = [f"env{i}" for i in range(5)]
    queued = queue(handles[0], *(req(f"{n:040d}", env=envs[n % 5]) for n in range(20)))
    claims: list[Deploy] = []
    violations: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        mine = handles[index % stores]
        deadline = time.monotonic() + THREAD_DEADLINE
        for _ in range(10_000):
            if time.monotonic() > deadline:
                raise TimeoutError("the queue was not drained in time")
            deploy = mine.claim_next()
            if deploy is None:
                with lock:
                    if len(claims) == len(queued):
                        return
                time.sleep(0.001)
                continue
            running = mine.list_deploys(deploy.repo, deploy.env, RUNNING)
            with lock:
                claims.append(deploy)
                if [d.id for d in running] != [deploy.id]:
                    violations.append(f"{deploy.env}: running {[d.id for d in running]}")
            mine.append_log(deploy.id, [f"worker {index}"])
            mine.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)

    run_threads(4, work)
    assert violations == []
    assert sorted(d.id for d in claims) == sorted(d.id for d in queued)
    for env in envs:
        order = [d.id for d in claims if d.env == env]
        assert order == sorted(order), f"{env} was not served FIFO: {order}"
    final = handles[-1].list_deploys(limit=100)
    assert {d.state for d in final} == {DeployState.SUCCEEDED}
    assert all(handles[0].read_log(d.id).startswith("worker ") for d in final)


@pytest.mark.slow  # threads racing on one database
def test_robots_racing_to_release_expired_locks_tell_each_expiry_once(
    open_store: Callable[[], SqlStore],
) -> None:
    handles = [open_store(), open_store()]  # two robot processes sharing one database
    envs = [f"env{i}" for i in range(6)]
    for env in envs:
        handles[0].set_lock("acme/api", env, f"slack:U{env}", f"freeze {env}", timedelta(milliseconds=400))
    handles[1].set_lock("acme/api", "forever", "slack:U1", "no end")
    told: list[Lock] = []
    released: list[Lock] = []
    guard = threading.Lock()

    class Channel:
        def lock_expired(self, lock: Lock) -> None:
            with guard:
                told.append(lock)

    def on_release(lock: Lock) -> None:
        with guard:
            released.append(lock)

    # Two watchers per process, all due at once: the store's conditional delete picks the teller.
    watchers = [LockExpiry(handles[i % 2], Channel(), on_release) for i in range(4)]
    time.sleep(0.5)

    def work(index: int) -> None:
        for _ in range(5):
            watchers[index].tick()
            watchers[index] = LockExpiry(handles[index % 2], Channel(), on_release)  # due again at once

    run_threads(4, work)
    assert sorted(lock.env for lock in told) == envs, "each expired lock told exactly once"
    assert sorted(lock.env for lock in released) == envs, "and its waiters woken by the one that told it"
    assert [lock.env for lock in handles[1].list_locks()] == ["forever"]
    for env in envs:
        events = handles[1].lock_history("acme/api", env)
        assert [(e.action, e.actor) for e in events] == [
            ("unlocked", "robot:robot"),
            ("locked", f"slack:U{env}"),
        ]


# opening


@pytest.mark.slow  # threads racing on one database
def test_stores_opened_together_on_an_empty_database_share_one_schema(
    open_store: Callable[[], SqlStore],
) -> None:
    opened: list[SqlStore] = []
    run_threads(4, lambda _: opened.append(open_store()))
    deploy = queue(opened[0], req())[0]
    assert [one.get_deploy(deploy.id) for one in opened] == [deploy] * 4


def test_relative_sqlite_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    opened = SqlStore.from_url("sqlite:///state/nested/robot.db")
    try:
        deploy = queue(opened, req())[0]
    finally:
        opened.close()
    assert (tmp_path / "state" / "nested" / "robot.db").is_file()
    reopened = SqlStore.from_url(f"sqlite:///{tmp_path}/state/nested/robot.db")
    try:
        assert reopened.get_deploy(deploy.id) == deploy
    finally:
        reopened.close()


@pytest.mark.parametrize("url", ["not a url", "sqlite://", "sqlite:///:memory:", "mysql://x/y"])
def test_unusable_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match=r"state\.url"):
        SqlStore.from_url(url)


def test_prune_works_through_many_deploys_a_batch_at_a_time(open_store: Callable[[], SqlStore]) -> None:
    store = open_store()
    ids = []
    for n in range(7):
        deploy = store.create_deploy(req(f"{n:040x}"))[0]
        store.append_log(deploy.id, [f"log of #{deploy.id}"])
        store.finish_deploy(deploy.id, DeployState.CANCELLED, None)
        ids.append(deploy.id)
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert store.prune_logs(later, batch_size=3) == 7  # three transactions: 3 + 3 + 1
    assert all(store.read_log(i) == "" for i in ids)
    assert store.prune_logs(later, batch_size=3) == 0
