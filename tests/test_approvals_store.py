"""Approvals on the real store shared by two "processes" (two SqlStore instances on one database):
the approval that completes the count queues the deploy once, whoever writes first."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from bot.models import ApprovalResult, DeployRequest, DeployState, Source
from bot.store import SqlStore
from tests.support.postgres import PostgresServer

ROUNDS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def two_stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[SqlStore]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'robot.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        url = server.new_database()
    stores = [SqlStore.from_url(url), SqlStore.from_url(url)]
    yield stores
    for store in stores:
        store.close()


def _at_once(*calls: Callable[[], ApprovalResult]) -> list[ApprovalResult]:
    """Run the calls on their own threads, released together; their results in call order."""
    start = threading.Barrier(len(calls))
    results: list[ApprovalResult | None] = [None] * len(calls)

    def run(index: int, call: Callable[[], ApprovalResult]) -> None:
        start.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r is not None for r in results), "an approval never returned"
    return [r for r in results if r is not None]


@pytest.mark.parametrize("required", [1, 2])
def test_two_processes_approving_at_once_queue_it_once(two_stores: list[SqlStore], required: int) -> None:
    one, other = two_stores
    for round_ in range(ROUNDS):
        request = DeployRequest(
            "acme/api",
            "production",
            "main",
            f"{round_:040x}",
            "slack:U1",
            Source.COMMAND,
            approval_timeout=60,
        )
        deploy_id = one.create_deploy(request)[0].id
        results = _at_once(
            partial(one.approve, deploy_id, "slack:U2", required),
            partial(other.approve, deploy_id, "slack:U3", required),
        )
        assert sum(r.queued for r in results) == 1, results
        current = other.get_deploy(deploy_id)
        assert current is not None and current.state is DeployState.QUEUED
        recorded = one.list_approvals([deploy_id])[deploy_id]
        # With one required, the slower approver may find it queued already: not recorded then.
        assert len(recorded) == sum(r.recorded for r in results) >= required
        assert one.claim_next(only_id=deploy_id) is not None
        one.finish_deploy(deploy_id, DeployState.SUCCEEDED, None)


def test_two_processes_expire_it_once(two_stores: list[SqlStore]) -> None:
    one, other = two_stores
    request = DeployRequest(
        "acme/api", "production", "main", "e" * 40, "slack:U1", Source.COMMAND, approval_timeout=0
    )
    deploy, _ = one.create_deploy(request)
    found: list[object] = []
    start = threading.Barrier(2)

    def expire(store: SqlStore) -> None:
        start.wait()
        found.append(store.expire_approval("not approved in time"))

    threads = [threading.Thread(target=expire, args=(s,)) for s in (one, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [d for d in found if d is not None] == [other.get_deploy(deploy.id)]
    assert other.get_deploy(deploy.id).state is DeployState.EXPIRED  # type: ignore[union-attr]
