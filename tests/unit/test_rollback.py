"""Rollbacks on the unit tier: target selection (both stores), the service, the grammar and the blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import (
    AccessDenied,
    BadCommand,
    EnvironmentLocked,
    NothingToRollBack,
    RequestError,
    UnknownDeploy,
)
from bot.models import ROLLBACK_MARK, ContextState, Deploy, DeployRequest, DeployState, RollbackChoice, Source
from bot.slack.blocks.replies import HELP_TEXT, status_blocks
from bot.slack.blocks.thread import RollbackOffer, rollback_offer, root_message
from bot.slack.commands import RollbackCommand, parse_deploy
from bot.slack.ids import ROLLBACK_ACTION, decode_rollback_value, encode_rollback_value
from bot.store import SqlStore
from tests.fakes.memory import MemoryStore, exits
from tests.support.harness import slack_user
from tests.unit.conftest import API, World, WorldFactory, commands_env

A, B, C, D, X = ("a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40)
PROD = "production"


# ---- target selection: the same contract on MemoryStore and SqlStore ---------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore.from_url(f"sqlite:///{tmp_path / 'rollback.db'}")
    yield sql
    sql.close()


def ended(
    store: Any,
    sha: str,
    state: DeployState = DeployState.SUCCEEDED,
    env: str = PROD,
    rollback_of: int | None = None,
) -> Deploy:
    """A deploy of ``sha`` queued, claimed and finished ``state``, as the queue would run it."""
    request = DeployRequest(API, env, sha, sha, "slack:U1", Source.COMMAND, rollback_of=rollback_of)
    deploy, created = store.create_deploy(request)
    assert created
    assert store.claim_next(only_id=deploy.id) is not None
    final: Deploy = store.finish_deploy(deploy.id, state, None)
    return final


def choice_of(store: Any) -> tuple[int | None, int | None, frozenset[str]]:
    choice: RollbackChoice = store.rollback_choice(API, PROD)
    assert (choice.repo, choice.env) == (API, PROD)
    return (
        choice.current.id if choice.current else None,
        choice.target.id if choice.target else None,
        choice.undone,
    )


def test_no_history_and_one_sha_have_nothing_to_roll_back_to(store: Any) -> None:
    assert choice_of(store) == (None, None, frozenset())
    ended(store, A, DeployState.FAILED)
    assert choice_of(store) == (None, None, frozenset())
    first = ended(store, A)
    again = ended(store, A)  # the same SHA twice is still one SHA
    assert choice_of(store) == (again.id, None, frozenset())
    assert first.rollback_of is None


def test_a_second_rollback_goes_further_back_never_forward(store: Any) -> None:
    a, b, c = ended(store, A), ended(store, B), ended(store, C)
    ended(store, D, DeployState.FAILED)  # never succeeded: never a target
    ended(store, X, env="staging")  # another environment's history is not this one's
    assert choice_of(store) == (c.id, b.id, frozenset())
    first = ended(store, B, rollback_of=c.id)
    assert first.rollback_of == c.id
    # C was rolled back from: the next rollback skips it and goes to A.
    assert choice_of(store) == (first.id, a.id, frozenset({C}))
    second = ended(store, A, rollback_of=first.id)
    assert choice_of(store) == (second.id, None, frozenset({B, C}))


def test_only_a_succeeded_rollback_marks_its_sha_undone(store: Any) -> None:
    ended(store, A)
    b, c = ended(store, B), ended(store, C)
    ended(store, B, DeployState.FAILED, rollback_of=c.id)
    ended(store, B, DeployState.CANCELLED, rollback_of=c.id)
    assert choice_of(store) == (c.id, b.id, frozenset())


def test_a_sha_rolled_back_from_stays_skipped_when_deployed_again(store: Any) -> None:
    a, b = ended(store, A), ended(store, B)
    back = ended(store, A, rollback_of=b.id)
    again = ended(store, B)  # B deployed again on purpose; it is current
    assert choice_of(store) == (again.id, back.id, frozenset({B}))
    later = ended(store, C)
    # From C: B was rolled back from before, so the target is A (the rollback's row, newest).
    assert choice_of(store) == (later.id, back.id, frozenset({B}))
    assert back.sha == a.sha


# ---- the service --------------------------------------------------------------------------


def gated(tmp_path: Path, **repo: Any) -> dict[str, Any]:
    """acme/api with a CI gate, in the World's checkout folder."""
    folder = tmp_path / "checkout"
    envs = {PROD: commands_env(folder), "staging": commands_env(folder)}
    return {API: {"environments": envs, "required_contexts": ["ci/test"], **repo}}


def deployed(world: World) -> list[Deploy]:
    """A, B, C: three pushes, each green and deployed to production."""
    done = []
    for _ in range(3):
        sha = world.github.push(API)
        world.github.green(API, sha, "ci/test")
        deploy = world.run(world.request(env=PROD).id)
        assert deploy.state is DeployState.SUCCEEDED, deploy.error
        done.append(deploy)
    return done


def test_rollback_redeploys_the_previous_sha_without_the_gate(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated(tmp_path))
    a, b, c = deployed(world)
    # CI of the old SHA went red since: a rollback is not gated again.
    world.github.script_ci(API, b.sha, {"ci/test": ContextState.FAILURE})
    calls = world.github.ci_calls
    rollback, created = world.service.rollback("api", PROD, user=slack_user("U1"), source=Source.COMMAND)
    assert created and (rollback.sha, rollback.ref, rollback.rollback_of) == (b.sha, b.sha, c.id)
    assert world.run(rollback.id).state is DeployState.SUCCEEDED
    assert world.github.ci_calls == calls
    (deployment,) = [d for d in world.github.deployments if d.payload.get("robot_deploy_id") == rollback.id]
    assert deployment.sha == b.sha and deployment.required_contexts == ()
    assert deployment.payload["rollback_of"] == c.id
    plain = [d for d in world.github.deployments if d.payload.get("robot_deploy_id") == c.id]
    assert plain[0].required_contexts == ("ci/test",) and "rollback_of" not in plain[0].payload
    second, _ = world.service.rollback("api", PROD, user=slack_user("U1"), source=Source.COMMAND)
    assert (second.sha, second.rollback_of) == (a.sha, rollback.id)  # further back, not to C
    assert world.run(second.id).state is DeployState.SUCCEEDED
    with pytest.raises(NothingToRollBack) as refused:
        world.service.rollback("api", PROD, user=slack_user("U1"), source=Source.COMMAND)
    assert str(refused.value) == (
        f"Nothing to roll back to in {API} {PROD}: {a.short_sha} is current and every other SHA that "
        f"succeeded there was rolled back from already ({b.short_sha}, {c.short_sha})."
    )


def test_nothing_to_roll_back_to_says_why(world_for: WorldFactory) -> None:
    world = world_for()
    with pytest.raises(NothingToRollBack, match=f"^Nothing to roll back to in {API} {PROD}: no deploy has"):
        world.service.rollback("api", user=slack_user("U1"), source=Source.COMMAND)
    only = world.run(world.request().id)
    with pytest.raises(NothingToRollBack) as refused:
        world.service.rollback("api", user=slack_user("U1"), source=Source.COMMAND)
    assert str(refused.value) == (
        f"Nothing to roll back to in {API} {PROD}: {only.short_sha} is the only SHA that succeeded there."
    )
    assert world.store.list_deploys() == [only]


def test_rollback_is_a_deployers_right_and_a_lock_refuses_it(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path, deployers=["U1"]))
    deployed(world)
    with pytest.raises(AccessDenied, match=f"You may not roll back {API}. Allowed: <@U1>"):
        world.service.rollback("api", PROD, user=slack_user("U2"), source=Source.COMMAND)
    world.service.lock("api", PROD, slack_user("U1"), "incident")
    with pytest.raises(EnvironmentLocked, match="incident"):
        world.service.rollback("api", PROD, user=slack_user("U1"), source=Source.COMMAND)
    # A terminal is the operator's: no deployers check, but the lock holds there too.
    with pytest.raises(EnvironmentLocked):
        world.service.rollback("api", PROD, user=slack_user("x"), source=Source.CLI)
    assert len(world.store.list_deploys()) == 3


def test_rollback_dedupes_with_the_same_sha_already_queued(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path))
    _, b, _ = deployed(world)
    queued = world.request(ref=b.sha, env=PROD)
    again, created = world.service.rollback("api", PROD, user=slack_user("U1"), source=Source.COMMAND)
    assert (again.id, created) == (queued.id, False)


def test_a_button_deploys_what_it_named_and_refuses_once_the_env_moved_on(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated(tmp_path))
    a, b, c = deployed(world)

    def click(env: str, sha: str, undo: int) -> Deploy:
        deploy, created = world.service.rollback_to(
            API, env, sha, undo, user=slack_user("U1"), source=Source.BUTTON
        )
        assert created
        return deploy

    with pytest.raises(NothingToRollBack, match="moved on since this Roll back button was shown"):
        click(PROD, a.sha, c.id)  # C's target is B, not A
    with pytest.raises(NothingToRollBack, match=f"#{c.id} \\({c.short_sha}\\) is current"):
        click(PROD, a.sha, b.id)  # B is no longer current
    with pytest.raises(UnknownDeploy):
        click("staging", b.sha, c.id)
    rollback = click(PROD, b.sha, c.id)
    assert (rollback.sha, rollback.rollback_of, rollback.source) == (b.sha, c.id, Source.BUTTON)
    assert world.run(rollback.id).state is DeployState.SUCCEEDED
    with pytest.raises(NothingToRollBack):  # a late second click on the same button
        click(PROD, b.sha, c.id)


def test_a_failed_deploys_button_redeploys_the_current_good_sha(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated(tmp_path))
    c = deployed(world)[-1]
    sha = world.github.push(API)
    world.github.green(API, sha, "ci/test")
    world.runner.script(exits(1, "half the hosts updated"))
    failed = world.run(world.request(env=PROD).id)
    assert failed.state is DeployState.FAILED
    offer = rollback_offer(failed, world.store.rollback_choice(API, PROD))
    assert offer == RollbackOffer(API, PROD, c.sha, failed.id)
    rollback, _ = world.service.rollback_to(
        API, PROD, c.sha, failed.id, user=slack_user("U1"), source=Source.BUTTON
    )
    assert (rollback.sha, rollback.rollback_of) == (c.sha, failed.id)


# ---- grammar, button values and blocks as data ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("rollback acme/api", RollbackCommand("acme/api")),
        ("rollback api to production", RollbackCommand("api", "production")),
        ("ROLLBACK acme/api TO staging", RollbackCommand("acme/api", "staging")),
    ],
)
def test_rollback_grammar(text: str, command: RollbackCommand) -> None:
    assert parse_deploy(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rollback", "`/deploy rollback` needs a repo. Usage: `/deploy rollback <repo> [to <env>]`"),
        ("rollback acme/api!", "cannot be forced"),
        ("rollback acme/api production", "did you mean `to production`?"),
        ("rollback acme/api to", "needs an environment after `to`"),
        ("rollback acme/api@main", "acme/api@main"),
    ],
)
def test_rollback_grammar_refusals(text: str, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_deploy(text)
    assert message in str(info.value)


def test_rollback_is_in_help_and_a_keyword() -> None:
    assert "`/deploy rollback <repo> [to <env>]`" in HELP_TEXT
    with pytest.raises(BadCommand, match="command word"):
        parse_deploy("lock rollback")


def test_rollback_value_round_trips_and_refuses_tampering() -> None:
    value = encode_rollback_value(API, PROD, B, 42)
    assert decode_rollback_value(value) == (API, PROD, B, 42)
    for bad in (
        "",
        "42",
        json.dumps({"repo": API, "env": PROD, "sha": B}),
        json.dumps({"repo": API, "env": PROD, "sha": B, "undo": True}),
        json.dumps({"repo": API, "env": PROD, "sha": B, "undo": 0}),
        json.dumps({"repo": API, "env": PROD, "sha": B, "undo": "42"}),
        json.dumps({"repo": API, "env": PROD, "sha": "main", "undo": 42}),
        json.dumps({"repo": "acme/api;rm", "env": PROD, "sha": B, "undo": 42}),
        json.dumps({"repo": API, "env": PROD, "sha": B, "undo": 42, "force": True}),
        "x" * 5000,
    ):
        with pytest.raises(BadCommand, match="Roll back button is broken"):
            decode_rollback_value(bad)
    with pytest.raises(ValueError):
        encode_rollback_value(API, PROD, "main", 42)


def deploy_row(deploy_id: int, sha: str, state: DeployState, rollback_of: int | None = None) -> Deploy:
    return Deploy(deploy_id, API, PROD, sha, sha, "slack:U1", Source.COMMAND, state, rollback_of=rollback_of)


def test_offers_as_data() -> None:
    a, b = deploy_row(1, A, DeployState.SUCCEEDED), deploy_row(2, B, DeployState.SUCCEEDED)
    failed = deploy_row(3, C, DeployState.FAILED)
    assert rollback_offer(b, RollbackChoice(API, PROD, b, a)) == RollbackOffer(API, PROD, A, 2)
    assert rollback_offer(a, RollbackChoice(API, PROD, b, a)) is None  # no longer current
    assert rollback_offer(b, RollbackChoice(API, PROD, b, None)) is None  # nothing to go back to
    assert rollback_offer(failed, RollbackChoice(API, PROD, b, a)) == RollbackOffer(API, PROD, B, 3)
    assert rollback_offer(failed, RollbackChoice(API, PROD, None, None)) is None
    same = deploy_row(4, B, DeployState.FAILED)
    assert rollback_offer(same, RollbackChoice(API, PROD, b, a)) is None  # the good SHA is what failed
    cancelled = deploy_row(5, C, DeployState.CANCELLED)
    assert rollback_offer(cancelled, RollbackChoice(API, PROD, b, a)) is None


def test_root_with_a_roll_back_button_and_its_confirm() -> None:
    b = deploy_row(2, B, DeployState.SUCCEEDED)
    _, plain = root_message(b, "https://github.test/c", 3.0)
    assert ROLLBACK_ACTION not in json.dumps(plain)
    _, blocks = root_message(b, "https://github.test/c", 3.0, rollback=RollbackOffer(API, PROD, A, 2))
    (button,) = blocks[-1]["elements"]
    assert button["action_id"] == ROLLBACK_ACTION and button["text"]["text"] == f"Roll back to {A[:7]}"
    assert decode_rollback_value(button["value"]) == (API, PROD, A, 2)
    confirm = button["confirm"]
    assert confirm["title"]["text"] == f"Roll back to {A[:7]}?"
    assert f"Deploys {A[:7]} to production of acme/api again, undoing deploy #2" in confirm["text"]["text"]
    assert {confirm["confirm"]["text"], confirm["deny"]["text"]} == {"Roll back", "Keep it"}
    # While a deploy runs, only Cancel: an offer is for final roots.
    running = deploy_row(2, B, DeployState.RUNNING)
    _, live = root_message(running, "https://github.test/c", 3.0, rollback=RollbackOffer(API, PROD, A, 2))
    assert ROLLBACK_ACTION not in json.dumps(live)


def test_history_shows_a_rollback() -> None:
    rollback = deploy_row(4, B, DeployState.SUCCEEDED, rollback_of=3)
    _, root = root_message(rollback, "https://github.test/c", 3.0)
    assert f"{ROLLBACK_MARK} of #3" in json.dumps(root, ensure_ascii=False)
    _, blocks = status_blocks([], [], [rollback, deploy_row(3, C, DeployState.SUCCEEDED)], [])
    lines = json.dumps(blocks, ensure_ascii=False)
    assert f"#4 *acme/api → production* `{B[:7]}` {ROLLBACK_MARK}" in lines
    assert f"#3 *acme/api → production* `{C[:7]}` {ROLLBACK_MARK}" not in lines
