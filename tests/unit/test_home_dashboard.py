"""The App Home dashboard on in-memory fakes: what each card holds, and rights that match the service's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import AccessDenied
from bot.home import Dashboard, EnvCard, PendingChanges
from bot.models import BranchHead, CommitInfo, Comparison, DeployState, Source
from tests.support.harness import slack_user
from tests.unit.conftest import API, WorldFactory, commands_env

ALICE, BOB, MALLORY = "U0ALICE01", "U0BOB0001", "U0MALLORY"


def two_envs(folder: Path) -> dict[str, object]:
    envs = {"staging": commands_env(folder), "production": commands_env(folder)}
    return {
        API: {"environments": envs, "deployers": [ALICE], "force": [BOB]},
        "acme/web": {"environments": {"production": commands_env(folder)}},
    }


def test_cards_hold_current_running_waiting_queued_lock_and_last_failure(world_for: WorldFactory) -> None:
    world = world_for(two_envs(Path(".")))
    dashboard = Dashboard(
        world.settings, world.store, world.service, world.github.commit_url, lambda i: "step 1/1"
    )
    world.store.set_head(BranchHead(API, "f" * 40))
    done = world.request(env="production", user=ALICE)
    world.run(done.id)
    failed = world.request(env="production", user=ALICE, ref=world.github.push(API))
    world.store.finish_deploy(failed.id, DeployState.FAILED, "exited 1")
    running = world.request(env="production", user=ALICE, ref=world.github.push(API))
    world.store.claim_next(only_id=running.id)
    world.request(env="production", user=ALICE, ref=world.github.push(API))
    world.service.lock(API, "staging", slack_user(ALICE), "freeze")
    world.request(API, env="production", user=ALICE, ref=world.github.push(API))

    repos = dashboard.repos_by_activity()
    assert repos == (API, "acme/web")
    page = dashboard.for_user(dashboard.snapshot(None, lambda counts: 2), ALICE)
    (api, web) = page.shown
    staging, production = api.envs
    assert (staging.env, staging.lock and staging.lock.reason, staging.current) == ("staging", "freeze", None)
    assert production.current is not None and production.current.id == done.id
    assert production.current_url == world.github.commit_url(API, done.sha)
    assert production.running is not None and production.running.id == running.id
    assert production.current_step == "step 1/1" and production.queued == 2
    assert production.last_failure is not None and production.last_failure.error == "exited 1"
    assert production.head_sha == "f" * 40 and production.branch == "main"
    assert production.may_deploy and production.may_lock and running.id in production.cancellable
    assert [c.env for c in web.envs] == ["production"] and page.hidden == 0

    assert dashboard.snapshot("acme/web", lambda counts: 2).shown[0].repo == "acme/web"
    one = dashboard.snapshot("acme/gone", lambda counts: 1)
    assert one.repo_filter is None and [r.repo for r in one.shown] == [API] and one.hidden == 1
    nobody = dashboard.for_user(one, MALLORY).shown[0].envs[1]
    assert not (nobody.may_deploy or nobody.may_lock or nobody.cancellable)


@pytest.mark.parametrize(
    ("user", "deploy", "lock", "cancel_others"),
    [
        (ALICE, True, True, True),
        (BOB, False, True, True),  # the force list may lock and cancel, not deploy
        (MALLORY, False, False, False),
    ],
)
def test_rights_shown_are_the_rights_the_service_enforces(
    world_for: WorldFactory, user: str, deploy: bool, lock: bool, cancel_others: bool
) -> None:
    world = world_for(two_envs(Path(".")))
    service, actor = world.service, slack_user(user)
    assert service.may_deploy(actor, API) is deploy
    assert service.may_lock(actor, API) is lock
    theirs = world.request(env="production", user=ALICE)
    own = world.request(env="staging", user=user) if deploy else None
    assert service.may_cancel(actor, theirs) is cancel_others
    if own is not None:
        assert service.may_cancel(actor, own)
    # Anyone may act on a repo without a deployers list.
    assert service.may_deploy(actor, "acme/web") and service.may_lock(actor, "acme/web")
    try:
        service.cancel(theirs.id, actor)
        enforced = True
    except AccessDenied:
        enforced = False
    assert enforced is cancel_others


REQUESTER, ANN = "U0REQ0001", "U0ANN0001"


def protected(folder: Path) -> dict[str, object]:
    """acme/api: production wants 2 approvals from ANN or BOB; ALICE and REQUESTER deploy."""
    approvals = {"approvers": [ANN, BOB], "required": 2}
    envs = {"production": commands_env(folder, approvals=approvals), "staging": commands_env(folder)}
    return {API: {"environments": envs, "deployers": [ALICE, REQUESTER, ANN, BOB]}}


def test_awaiting_deploys_with_approve_for_approvers_only_never_the_requester(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(protected(tmp_path))
    dashboard = Dashboard(world.settings, world.store, world.service, world.github.commit_url)
    first = world.request(env="production", user=REQUESTER)
    second = world.request(env="production", user=ANN, ref=world.github.push(API))
    world.service.approve(first.id, slack_user(ANN))
    snapshot = dashboard.snapshot(None, lambda counts: 1)

    def card(user: str) -> EnvCard:
        production = dashboard.for_user(snapshot, user).shown[0].envs[0]
        assert production.env == "production"
        return production

    awaiting = card(ANN).awaiting
    assert [(a.deploy.id, a.approved_by, a.required) for a in awaiting] == [
        (first.id, (f"slack:{ANN}",), 2),
        (second.id, (), 2),
    ]
    # Ann approved the first already (Reject still hers), and requested the second.
    assert (card(ANN).approvable, card(ANN).rejectable) == (frozenset(), frozenset({first.id}))
    assert card(BOB).approvable == card(BOB).rejectable == frozenset({first.id, second.id})
    assert card(REQUESTER).rejectable == frozenset()  # not a listed approver (and requested #1)
    assert first.id in card(REQUESTER).cancellable  # but may cancel what they asked for
    assert not (card(ALICE).approvable or card(MALLORY).approvable or card(MALLORY).rejectable)
    # What the view offers is what the service allows.
    for user in (ANN, BOB, REQUESTER, ALICE, MALLORY):
        for deploy in (first, second):
            assert world.service.may_approve(slack_user(user), world.service.get(deploy.id)) is (
                deploy.id in card(user).rejectable
            )
    with pytest.raises(AccessDenied):
        world.service.approve(first.id, slack_user(REQUESTER))
    world.service.approve(second.id, slack_user(BOB))
    world.service.approve(first.id, slack_user(BOB))  # the second approval queues it
    after = dashboard.for_user(dashboard.snapshot(None, lambda counts: 1), BOB).shown[0].envs[0]
    assert [a.deploy.id for a in after.awaiting] == [second.id] and after.queued == 1


def test_rollback_choice_and_the_cached_change_count(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(two_envs(tmp_path))
    dashboard = Dashboard(world.settings, world.store, world.service, world.github.commit_url)
    old = world.run(world.request(env="staging", user=ALICE).id)
    new = world.run(world.request(env="staging", user=ALICE, ref=world.github.push(API)).id)
    head = world.github.push(API)
    world.store.set_head(BranchHead(API, head))

    def staging(user: str = ALICE) -> EnvCard:
        return dashboard.for_user(dashboard.snapshot(None, lambda counts: 2), user).shown[0].envs[0]

    card = staging()
    assert card.current is not None and card.current.id == new.id
    assert card.rollback_to is not None and card.rollback_to.id == old.id and card.may_roll_back
    assert not staging(MALLORY).may_roll_back and not staging(BOB).may_roll_back  # deployers only
    assert card.pending is None  # nobody compared the head with what runs: the SHA only
    commits = tuple(CommitInfo(f"{n}" * 40, f"commit {n}", (), "ann", None) for n in range(3))
    world.store.put_comparison(API, new.sha, head, Comparison("ahead", 3, 0, 3, commits))
    assert staging().pending == PendingChanges(new.sha, 3, 0)
    world.store.set_head(BranchHead(API, new.sha))
    assert staging().pending == PendingChanges(new.sha, 0, 0)
    assert dashboard.snapshot(None, lambda counts: 2).shown[0].envs[1].rollback_to is None  # production
    # The choice is read again once a newer deploy succeeded there: after rolling back to the old
    # SHA, nothing is left to roll back to (the new one was rolled back from).
    rollback, _ = world.service.rollback(API, "staging", user=slack_user(ALICE), source=Source.COMMAND)
    world.run(rollback.id)
    card = staging()
    assert card.current is not None and card.current.id == rollback.id and card.rollback_to is None
