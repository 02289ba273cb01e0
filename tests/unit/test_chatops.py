"""ChatOps on in-memory ports: parsed commands and button clicks → service calls → replies."""

from __future__ import annotations

import json

import pytest

from bot.errors import AccessDenied, BadCommand, EnvironmentLocked, UnknownDeploy
from bot.models import DeployState, Source
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import parse_deploy, parse_status
from bot.slack.ids import encode_deploy_value
from tests.unit.conftest import API, World, WorldFactory

ALICE = Caller("U0ALICE01", "C0HERE")


@pytest.fixture
def world(world_for: WorldFactory) -> World:
    return world_for()


@pytest.fixture
def chatops(world: World) -> ChatOps:
    return ChatOps(world.service)


def say(chatops: ChatOps, text: str, caller: Caller = ALICE) -> str:
    return chatops.command(parse_deploy(text), caller).text


def test_deploy_then_the_same_again(chatops: ChatOps, world: World) -> None:
    sha = world.github.refs[API]["main"]
    assert say(chatops, "acme/api") == f"Deploy #1 queued: acme/api@main ({sha[:7]}) → production"
    again = say(chatops, "api to production")
    assert (
        again
        == f"Deploy #1 of acme/api@main ({sha[:7]}) → production is already queued; not starting another."
    )
    assert [d.requested_by for d in world.store.list_deploys()] == ["slack:U0ALICE01"]


def test_cancel_a_queued_deploy(chatops: ChatOps, world: World) -> None:
    say(chatops, "acme/api")
    assert say(chatops, "cancel 1") == "⛔ Deploy #1 cancelled before it started."
    assert world.service.get(1).state is DeployState.CANCELLED
    with pytest.raises(UnknownDeploy, match="already cancelled"):
        say(chatops, "cancel 1")


def test_lock_refuses_deploys_until_unlock(chatops: ChatOps, world: World) -> None:
    locked = say(chatops, "lock acme/api : db migration")
    assert locked == "🔒 acme/api production is locked: db migration. Deploys there wait until unlocked."
    with pytest.raises(EnvironmentLocked, match="locked by slack:U0ALICE01"):
        say(chatops, "acme/api")
    assert say(chatops, "unlock acme/api") == "🔓 acme/api production is unlocked."
    assert say(chatops, "acme/api").startswith("Deploy #1 queued")


def test_a_caller_without_a_user_changes_nothing(chatops: ChatOps, world: World) -> None:
    for text in ("acme/api", "lock acme/api", "cancel 1"):
        with pytest.raises(AccessDenied, match="Slack did not say who you are"):
            say(chatops, text, Caller(""))
    assert world.store.list_deploys() == [] and world.store.list_locks() == []


def test_deploy_button_deploys_exactly_the_announced_sha(chatops: ChatOps, world: World) -> None:
    announced = world.github.refs[API]["main"]
    world.github.push(API)  # the branch moved on since the announcement
    reply = chatops.click_deploy(encode_deploy_value(API, "production", announced), ALICE)
    assert reply.text.startswith("Deploy #1 queued")
    (deploy,) = world.store.list_deploys()
    assert (deploy.sha, deploy.source, deploy.channel) == (announced, Source.BUTTON, "C0HERE")


@pytest.mark.parametrize("value", ["²", "0", "1" * 30, "1; drop", ""])
def test_a_broken_cancel_button_is_refused(chatops: ChatOps, value: str) -> None:
    with pytest.raises(BadCommand, match="Cancel button is broken"):
        chatops.click_cancel(value, ALICE)


def test_the_cancel_button_cancels(chatops: ChatOps, world: World) -> None:
    say(chatops, "acme/api")
    assert chatops.click_cancel("1", ALICE).text == "⛔ Deploy #1 cancelled before it started."


def test_status_where_and_help_render_blocks(chatops: ChatOps, world: World) -> None:
    say(chatops, "acme/api")
    status = chatops.command(parse_status(""), ALICE)
    assert status.blocks and "#1" in json.dumps(status.blocks, ensure_ascii=False)
    where = chatops.command(parse_deploy("where acme/api"), ALICE)
    assert where.blocks and "production" in json.dumps(where.blocks)
    assert chatops.command(parse_deploy("help"), ALICE).blocks
