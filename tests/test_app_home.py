"""App Home through the fakes: published on open, only permitted buttons, every action and its
refusal, republish coalescing, and Slack's 100-block cap with many repos."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.models import Comparison, DeployState
from bot.slack.ids import (
    HOME_ALL_REPOS,
    HOME_APPROVE_ACTION,
    HOME_CANCEL_ACTION,
    HOME_DEPLOY_ACTION,
    HOME_DURATION_BLOCK,
    HOME_FILTER_ACTION,
    HOME_LOCK_ACTION,
    HOME_LOCK_VIEW,
    HOME_REASON_BLOCK,
    HOME_REJECT_ACTION,
    HOME_ROLLBACK_ACTION,
    HOME_UNLOCK_ACTION,
    decode_rollback_value,
    encode_target,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.rig import CHANNEL, RobotRig, step_command
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # `robot run` against the fake Slack and GitHub

ALICE = "U0ALICE01"  # a deployer
MALLORY = "U0MALLORY"  # not one
ANN = "U0ANN0001"  # approves acme/api production where it wants approvals
WAIT = 20.0


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


def make_rig(
    tmp_path: Path,
    github: FakeGitHub,
    slack: FakeSlack,
    repos: int = 1,
    home_interval: float = 10.0,
    approvals: dict[str, Any] | None = None,
) -> RobotRig:
    """``approvals``: acme/api production's `approvals:` (none by default)."""
    checkout = make_git_repo(tmp_path / "checkout")
    config: dict[str, Any] = {}
    for n in range(repos):
        name = "acme/api" if n == 0 else f"acme/svc{n:03d}"
        github.add_repo(name)
        step = step_command(checkout, sleep=0)
        envs: dict[str, dict[str, Any]] = {
            env: {"folder": str(checkout), "commands": [step]} for env in ("staging", "production")
        }
        if approvals is not None and n == 0:
            envs["production"]["approvals"] = approvals
        config[name] = {"channel": CHANNEL, "environments": envs, "deployers": [ALICE]}
    return RobotRig(
        tmp_path, github, slack, config, checkout=checkout, slack_settings={"home_interval": home_interval}
    )


@pytest.fixture
def rig(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[RobotRig]:
    with make_rig(tmp_path, github, slack, home_interval=1.0) as made:
        wait_for(lambda: made.store.get_head("acme/api") is not None, WAIT, "the poller to see the head")
        yield made


def hold(rig: RobotRig) -> Path:
    """While this file exists the recording step waits."""
    assert rig.checkout is not None
    return rig.checkout / "hold"


def open_home(slack: FakeSlack, user: str) -> dict[str, Any]:
    before = len(slack.published(user))
    slack.send_app_home_opened(user)
    wait_for(lambda: len(slack.published(user)) > before, WAIT, f"Home of {user}")
    return slack.home(user)


def fresh_home(slack: FakeSlack, user: str, needle: str) -> dict[str, Any]:
    """The user's Home once it shows ``needle``."""
    wait_for(
        lambda: needle in text(slack.published(user)[-1].view if slack.published(user) else {}), WAIT, needle
    )
    return slack.home(user)


def text(view: dict[str, Any]) -> str:
    return json.dumps(view.get("blocks", []), ensure_ascii=False)


def buttons(view: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every button and select of the view by action id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for block in view["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            found.setdefault(element["action_id"], []).append(element)
    return found


def click(rig: RobotRig, user: str, action: str, value: str, view: dict[str, Any] | None = None) -> None:
    envelope = rig.slack.send_view_action(action, value, user_id=user, view=view)
    rig.slack.wait_ack(envelope, timeout=WAIT)


def dm(slack: FakeSlack, user: str) -> str:
    return " ".join(m.text for m in slack.messages(user))


def test_home_is_published_on_open_with_the_sections_and_only_permitted_buttons(
    rig: RobotRig, github: FakeGitHub
) -> None:
    sha = github.head("acme/api", "main")
    rig.command("acme/api to production")
    rig.final(1)
    rig.command("lock acme/api to staging : release freeze")
    alice = open_home(rig.slack, ALICE)
    assert alice["type"] == "home"
    shown = text(alice)
    assert "acme/api" in shown and "*production*" in shown and "*staging*" in shown
    assert f"{sha[:7]}" in shown and "#1 by <@U0ALICE01>" in shown and "ago)" in shown
    assert "Locked by <@U0ALICE01>" in shown and "release freeze" in shown
    mine = buttons(alice)
    (deploy,) = mine[HOME_DEPLOY_ACTION]  # production only: staging is locked
    assert deploy["text"]["text"] == "Deploy main"
    assert deploy["value"] == encode_target("acme/api", "production", sha)
    assert f"`main` at {sha[:7]} to production?" in deploy["confirm"]["text"]["text"]
    assert [b["value"] for b in mine[HOME_UNLOCK_ACTION]] == [encode_target("acme/api", "staging")]
    assert [b["value"] for b in mine[HOME_LOCK_ACTION]] == [encode_target("acme/api", "production")]
    assert HOME_CANCEL_ACTION not in mine  # nothing runs

    mallory = open_home(rig.slack, MALLORY)
    assert "release freeze" in text(mallory) and sha[:7] in text(mallory)
    assert buttons(mallory) == {}  # one repo: no filter either
    assert {v.user for v in rig.store.home_viewers(_long_ago())} == {ALICE, MALLORY}

    rig.command("unlock acme/api to staging")  # a change made elsewhere reaches every viewer
    unlocked = lambda: all("release freeze" not in text(rig.slack.home(u)) for u in (ALICE, MALLORY))  # noqa: E731
    wait_for(unlocked, WAIT, "every viewer's Home to show the unlock")


def _long_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


def test_deploy_cancel_lock_and_unlock_from_home(rig: RobotRig, github: FakeGitHub) -> None:
    sha = github.head("acme/api", "main")
    view = open_home(rig.slack, ALICE)
    hold(rig).touch()
    click(rig, ALICE, HOME_DEPLOY_ACTION, buttons(view)[HOME_DEPLOY_ACTION][1]["value"], view)
    wait_for(lambda: rig.store.get_deploy(1) is not None, WAIT, "the deploy from Home")
    deploy = rig.wait_state(1, DeployState.RUNNING)
    assert (deploy.env, deploy.sha, deploy.requested_by) == ("production", sha, f"slack:{ALICE}")

    running = fresh_home(rig.slack, ALICE, "🚀 Running #1")
    (cancel,) = buttons(running)[HOME_CANCEL_ACTION]
    assert cancel["value"] == "1"
    click(rig, ALICE, HOME_CANCEL_ACTION, "1", running)
    assert rig.final(1).state is DeployState.CANCELLED

    lock_value = encode_target("acme/api", "staging")
    click(rig, ALICE, HOME_LOCK_ACTION, lock_value)
    wait_for(lambda: rig.slack.views, WAIT, "the Lock… modal")
    (modal,) = rig.slack.views
    assert modal["callback_id"] == HOME_LOCK_VIEW and modal["private_metadata"] == lock_value
    values = {HOME_REASON_BLOCK: {HOME_REASON_BLOCK: {"type": "plain_text_input", "value": "db migration"}}}
    ack = rig.slack.wait_ack(rig.slack.send_view_submission(modal, values, user_id=ALICE), timeout=WAIT)
    assert not (ack.payload or {}).get("errors")
    lock = rig.store.get_lock("acme/api", "staging")
    assert lock is not None and lock.reason == "db migration" and lock.locked_by == f"slack:{ALICE}"
    fresh_home(rig.slack, ALICE, "db migration")

    click(rig, ALICE, HOME_UNLOCK_ACTION, lock_value)
    wait_for(lambda: rig.store.get_lock("acme/api", "staging") is None, WAIT, "the unlock")
    assert dm(rig.slack, ALICE) == ""  # nothing refused


def test_home_actions_are_refused_without_the_right(rig: RobotRig, github: FakeGitHub) -> None:
    sha = github.head("acme/api", "main")
    hold(rig).touch()
    rig.command("acme/api to production")
    rig.wait_state(1, DeployState.RUNNING)
    rig.command("lock acme/api to staging : freeze")
    open_home(rig.slack, MALLORY)

    # Forged clicks: Mallory's view has none of these buttons, the server checks again.
    click(rig, MALLORY, HOME_DEPLOY_ACTION, encode_target("acme/api", "production", sha))
    click(rig, MALLORY, HOME_CANCEL_ACTION, "1")
    click(rig, MALLORY, HOME_UNLOCK_ACTION, encode_target("acme/api", "staging"))
    click(rig, MALLORY, HOME_LOCK_ACTION, encode_target("acme/api", "production"))
    click(rig, MALLORY, HOME_DEPLOY_ACTION, "not json")
    wait_for(lambda: dm(rig.slack, MALLORY).count("⚠️") == 5, WAIT, "five refusals in Mallory's messages")
    said = dm(rig.slack, MALLORY)
    assert "You may not deploy acme/api" in said and "You may not cancel deploy #1" in said
    assert "You may not unlock staging of acme/api" in said and "You may not lock production" in said
    assert "broken or out of date" in said
    assert rig.slack.views == []  # no modal opened for her
    modal = {
        "type": "modal",
        "callback_id": HOME_LOCK_VIEW,
        "private_metadata": encode_target("acme/api", "production"),
    }
    values = {HOME_REASON_BLOCK: {HOME_REASON_BLOCK: {"type": "plain_text_input", "value": "mine"}}}
    ack = rig.slack.wait_ack(rig.slack.send_view_submission(modal, values, user_id=MALLORY), timeout=WAIT)
    assert ack.payload is not None and ack.payload["response_action"] == "errors"
    assert "You may not lock production of acme/api" in ack.payload["errors"][HOME_REASON_BLOCK]

    assert [d.id for d in rig.store.list_deploys()] == [1] and rig.deploy(1).state is DeployState.RUNNING
    assert rig.store.get_lock("acme/api", "staging") is not None
    assert rig.store.get_lock("acme/api", "production") is None
    hold(rig).unlink()
    rig.final(1)


def test_a_burst_of_changes_republishes_each_viewer_at_most_once_per_interval(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    interval = 1.5
    with make_rig(tmp_path, github, slack, repos=3, home_interval=interval) as rig:
        viewers = [ALICE, MALLORY, "U0BOB0001"]
        for user in viewers:
            open_home(slack, user)
        opened = {user: len(slack.published(user)) for user in viewers}
        for n in range(12):
            repo = "acme/api" if n % 3 == 0 else f"acme/svc{n % 3:03d}"
            rig.command(f"{repo}@{github.push(repo, 'main')} to {'staging' if n % 2 else 'production'}")
        for deploy_id in range(1, 13):
            rig.final(deploy_id)
        wait_for(
            lambda: all("#12" in text(slack.home(user)) for user in viewers),
            WAIT,
            "every Home to show the last",
        )
        for user in viewers:
            times = [p.at for p in slack.published(user)]
            republished = times[opened[user] - 1 :]  # from the open's publish on
            assert len(republished) >= 2, "changes were republished"
            gaps = [b - a for a, b in itertools.pairwise(republished)]
            assert min(gaps) >= interval - 0.05, (user, gaps)


def test_many_repos_stay_within_100_blocks_with_a_remembered_filter(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    with make_rig(tmp_path, github, slack, repos=40) as rig:
        rig.command("acme/svc037 to staging")
        rig.final(1)
        view = open_home(slack, ALICE)
        assert len(view["blocks"]) <= 100
        (select,) = buttons(view)[HOME_FILTER_ACTION]
        values = [o["value"] for o in select["options"]]
        assert values[:2] == [HOME_ALL_REPOS, "acme/svc037"]  # the most recently active first
        assert len(values) == 41
        assert "more repo(s): pick one in the filter above" in text(view)
        shown = repos_shown(view)
        # 4 blocks of the page's own and 3 of its DORA section, then 5 per repo (a header; a section
        # and buttons per environment).
        assert shown[0] == "acme/svc037" and len(shown) == (100 - 4 - 3) // 5 and "acme/api" in shown
        assert "DORA figures · last 30 days" in text(view)

        envelope = slack.send_view_action(
            HOME_FILTER_ACTION, user_id=ALICE, view=view, selected="acme/svc012"
        )
        slack.wait_ack(envelope, timeout=WAIT)
        wait_for(lambda: repos_shown(slack.home(ALICE)) == ["acme/svc012"], WAIT, "the filtered Home")
        filtered = slack.home(ALICE)
        assert buttons(filtered)[HOME_FILTER_ACTION][0]["initial_option"]["value"] == "acme/svc012"
        assert repos_shown(open_home(slack, ALICE)) == ["acme/svc012"]  # the filter is remembered
        (viewer,) = rig.store.home_viewers(_long_ago())
        assert viewer.repo_filter == "acme/svc012"


def repos_shown(view: dict[str, Any]) -> list[str]:
    """The repos a Home shows, by their headers."""
    return [b["text"]["text"] for b in view["blocks"][1:] if b["type"] == "header"]


def lock_values(reason: str, duration: str) -> dict[str, Any]:
    """The Lock… modal's state as Slack sends it on submit."""
    return {
        HOME_REASON_BLOCK: {HOME_REASON_BLOCK: {"type": "plain_text_input", "value": reason}},
        HOME_DURATION_BLOCK: {HOME_DURATION_BLOCK: {"type": "plain_text_input", "value": duration}},
    }


def test_approve_and_reject_from_home_by_an_approver_only_and_viewers_see_it(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    with make_rig(tmp_path, github, slack, home_interval=1.0, approvals={"approvers": [ANN, ALICE]}) as rig:
        wait_for(lambda: rig.store.get_head("acme/api") is not None, WAIT, "the poller to see the head")
        rig.command("acme/api to production", user=ALICE)
        assert rig.wait_state(1, DeployState.AWAITING_APPROVAL).requested_by == f"slack:{ALICE}"
        mallory = open_home(slack, MALLORY)  # a viewer: her Home follows the approval
        assert "✋ Awaiting approval #1" in text(mallory) and "0/1 approved" in text(mallory)
        assert buttons(mallory) == {}
        alice = open_home(slack, ALICE)  # an approver, but the requester: never Approve
        assert not any(a.startswith((HOME_APPROVE_ACTION, HOME_REJECT_ACTION)) for a in buttons(alice))
        ann = open_home(slack, ANN)
        (approve,) = buttons(ann)[f"{HOME_APPROVE_ACTION}:1"]
        (reject,) = buttons(ann)[f"{HOME_REJECT_ACTION}:1"]
        assert approve["value"] == reject["value"] == "1" and "confirm" in reject

        # Forged clicks: the service checks again.
        click(rig, ALICE, f"{HOME_APPROVE_ACTION}:1", "1")
        click(rig, MALLORY, f"{HOME_APPROVE_ACTION}:1", "1")
        click(rig, MALLORY, f"{HOME_REJECT_ACTION}:1", "1")
        wait_for(lambda: dm(slack, MALLORY).count("⚠️") == 2 and "⚠️" in dm(slack, ALICE), WAIT, "refusals")
        assert "someone else must approve it" in dm(slack, ALICE)
        assert "You may not approve deploys to production of acme/api" in dm(slack, MALLORY)
        assert "You may not reject deploys to production of acme/api" in dm(slack, MALLORY)
        assert rig.deploy(1).state is DeployState.AWAITING_APPROVAL

        click(rig, ANN, f"{HOME_APPROVE_ACTION}:1", "1", ann)
        assert rig.final(1).state is DeployState.SUCCEEDED
        assert [a.approver for a in rig.store.list_approvals([1])[1]] == [f"slack:{ANN}"]
        # Republished to a viewer after the approval: no longer awaiting, now current.
        approved = lambda: "Awaiting approval" not in text(slack.home(MALLORY))  # noqa: E731
        wait_for(approved, WAIT, "Mallory's Home after the approval")
        fresh_home(slack, MALLORY, "#1 by <@U0ALICE01>")
        assert dm(slack, ANN) == ""

        rig.command(f"acme/api@{github.push('acme/api', 'main')} to production", user=ALICE)
        rig.wait_state(2, DeployState.AWAITING_APPROVAL)
        ann = fresh_home(slack, ANN, "✋ Awaiting approval #2")
        click(rig, ANN, f"{HOME_REJECT_ACTION}:2", buttons(ann)[f"{HOME_REJECT_ACTION}:2"][0]["value"], ann)
        assert rig.final(2).state is DeployState.REJECTED
        wait_for(lambda: "✋ Awaiting approval #2" not in text(slack.home(MALLORY)), WAIT, "Mallory's Home")


def test_roll_back_from_home_with_a_confirm_and_refused_without_the_right(
    rig: RobotRig, github: FakeGitHub
) -> None:
    old = github.head("acme/api", "main")
    rig.command("acme/api to staging")
    rig.final(1)
    new = github.push("acme/api", "main")
    rig.command(f"acme/api@{new} to staging")
    rig.final(2)
    assert buttons(open_home(rig.slack, MALLORY)) == {}
    view = open_home(rig.slack, ALICE)
    (roll,) = buttons(view)[HOME_ROLLBACK_ACTION]
    assert roll["text"]["text"] == f"Roll back to {old[:7]}"
    assert decode_rollback_value(roll["value"]) == ("acme/api", "staging", old, 2)
    assert roll["confirm"]["title"]["text"] == f"Roll back to {old[:7]}?"
    assert f"Deploys {old[:7]} (deploy #1) to staging of acme/api again" in roll["confirm"]["text"]["text"]

    click(rig, MALLORY, HOME_ROLLBACK_ACTION, roll["value"])  # forged: not a deployer
    click(rig, MALLORY, HOME_ROLLBACK_ACTION, "not json")
    wait_for(lambda: dm(rig.slack, MALLORY).count("⚠️") == 2, WAIT, "two refusals")
    assert "You may not roll back acme/api" in dm(rig.slack, MALLORY)
    assert "broken or out of date" in dm(rig.slack, MALLORY)
    assert [d.id for d in rig.store.list_deploys()] == [2, 1]

    click(rig, ALICE, HOME_ROLLBACK_ACTION, roll["value"], view)
    wait_for(lambda: rig.store.get_deploy(3) is not None, WAIT, "the rollback")
    rollback = rig.final(3)
    assert (rollback.state, rollback.sha, rollback.rollback_of) == (DeployState.SUCCEEDED, old, 2)
    assert rollback.requested_by == f"slack:{ALICE}"
    click(rig, ALICE, HOME_ROLLBACK_ACTION, roll["value"])  # the same button again: moved on
    wait_for(
        lambda: "moved on since this Roll back button was shown" in dm(rig.slack, ALICE), WAIT, "refusal"
    )
    assert rig.store.get_deploy(4) is None


def test_lock_from_home_for_a_duration_shows_until_and_expiry_republishes(rig: RobotRig) -> None:
    value = encode_target("acme/api", "staging")
    open_home(rig.slack, MALLORY)  # a viewer
    click(rig, ALICE, HOME_LOCK_ACTION, value)
    wait_for(lambda: rig.slack.views, WAIT, "the Lock… modal")
    (modal,) = rig.slack.views
    assert [b.get("block_id") for b in modal["blocks"]][1:] == [HOME_REASON_BLOCK, HOME_DURATION_BLOCK]

    said = {}
    for bad in ("2 weeks", "31d", "0m"):
        envelope = rig.slack.send_view_submission(modal, lock_values("freeze", bad), user_id=ALICE)
        answer = rig.slack.wait_ack(envelope, timeout=WAIT).payload
        assert answer is not None and answer["response_action"] == "errors", bad
        (said[bad],) = [text for field, text in answer["errors"].items() if field == HOME_DURATION_BLOCK]
        assert len(answer["errors"]) == 1 and len(said[bad]) <= 150
        assert rig.store.get_lock("acme/api", "staging") is None
    assert "is not a lock duration" in said["2 weeks"] and "longer than 30 days" in said["31d"]
    assert "is no time at all" in said["0m"]

    before = datetime.now(UTC)
    ack = rig.slack.wait_ack(
        rig.slack.send_view_submission(modal, lock_values("release", " 2h "), user_id=ALICE), timeout=WAIT
    )
    assert not (ack.payload or {}).get("errors")
    lock = rig.store.get_lock("acme/api", "staging")
    assert lock is not None and lock.expires_at is not None and lock.reason == "release"
    assert timedelta(hours=2) <= lock.expires_at - before <= timedelta(hours=2, seconds=WAIT)
    shown = text(fresh_home(rig.slack, ALICE, "release"))
    assert " until <!date^" in shown and "more): release" in shown
    assert lock.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") in shown
    fresh_home(rig.slack, MALLORY, "release")

    rig.command("unlock acme/api to staging")
    wait_for(lambda: rig.store.get_lock("acme/api", "staging") is None, WAIT, "the unlock")
    ack = rig.slack.wait_ack(
        rig.slack.send_view_submission(modal, lock_values("hotfix window", "5s"), user_id=ALICE), timeout=WAIT
    )
    assert not (ack.payload or {}).get("errors")
    fresh_home(rig.slack, MALLORY, "hotfix window")
    # The robot releases the lock when its time is up, and every viewer's Home follows.
    wait_for(lambda: rig.store.get_lock("acme/api", "staging") is None, WAIT, "the expiry")
    wait_for(
        lambda: "hotfix window" not in text(rig.slack.home(MALLORY)), WAIT, "Mallory's Home after the expiry"
    )


def test_the_deploy_confirm_names_the_change_count_when_the_comparison_is_cached(
    rig: RobotRig, github: FakeGitHub
) -> None:
    rig.command("acme/api to production")
    current = rig.final(1).sha
    head = github.push("acme/api", "main")

    def seen() -> bool:
        known = rig.store.get_head("acme/api")
        return known is not None and known.sha == head

    def confirm(view: dict[str, Any]) -> str:
        said: str = buttons(view)[HOME_DEPLOY_ACTION][1]["confirm"]["text"]["text"]
        return said

    wait_for(seen, WAIT, "the poller to see the new head")
    compares = github.count(path_contains="/compare/")
    said = confirm(open_home(rig.slack, ALICE))
    assert said == f"Deploy `main` at {head[:7]} to production?"  # not cached: the SHA only
    rig.store.put_comparison("acme/api", current, head, Comparison("ahead", 3, 0, 3, ()))
    said = confirm(open_home(rig.slack, ALICE))
    assert said == f"Deploy `main` at {head[:7]} to production? 3 commits since {current[:7]}."
    assert github.count(path_contains="/compare/") == compares  # a Home asks GitHub nothing
