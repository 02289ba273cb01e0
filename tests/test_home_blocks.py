"""App Home builders as data: sections, only permitted buttons, the confirm naming the SHA, the cap."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import BadCommand
from bot.home import Awaiting, EnvCard, HomePage, PendingChanges, RepoCards
from bot.models import Deploy, DeployState, Lock, Source
from bot.slack.blocks.home import (
    APPROVALS_WITH_BUTTONS,
    MAX_VIEW_BLOCKS,
    change_count,
    env_buttons,
    env_text,
    home_view,
    lock_form,
    lock_line,
    repos_that_fit,
)
from bot.slack.blocks.primitives import MAX_ACTIONS
from bot.slack.home import read_reason
from bot.slack.ids import (
    HOME_ALL_REPOS,
    HOME_APPROVE_ACTION,
    HOME_APPROVE_PATTERN,
    HOME_CANCEL_ACTION,
    HOME_DEPLOY_ACTION,
    HOME_DURATION_BLOCK,
    HOME_FILTER_ACTION,
    HOME_LOCK_ACTION,
    HOME_LOCK_VIEW,
    HOME_REASON_BLOCK,
    HOME_REJECT_ACTION,
    HOME_REJECT_PATTERN,
    HOME_ROLLBACK_ACTION,
    HOME_UNLOCK_ACTION,
    decode_rollback_value,
    decode_target,
    encode_target,
)

NOW = datetime(2026, 12, 1, 13, 5, tzinfo=UTC)
SHA = "3f2a9c1" + "0" * 33
HEAD = "abcdef0" + "1" * 33


def deploy(deploy_id: int, state: DeployState, **kw: Any) -> Deploy:
    values: dict[str, Any] = {
        "id": deploy_id,
        "repo": "acme/api",
        "env": "production",
        "ref": "main",
        "sha": SHA,
        "requested_by": "slack:U0ALICE01",
        "source": Source.COMMAND,
        "state": state,
        "created_at": NOW - timedelta(hours=2),
        "started_at": NOW - timedelta(hours=2),
    }
    values.update(kw)
    return Deploy(**values)


def card(**kw: Any) -> EnvCard:
    values: dict[str, Any] = {
        "repo": "acme/api",
        "env": "production",
        "branch": "main",
        "head_sha": HEAD,
        "current": deploy(7, DeployState.SUCCEEDED, finished_at=NOW - timedelta(hours=2)),
        "current_url": f"https://github.com/acme/api/commit/{SHA}",
        "running": None,
        "current_step": None,
        "waiting": (),
        "queued": 0,
        "lock": None,
        "last_failure": None,
        "may_deploy": True,
        "may_lock": True,
        "cancellable": frozenset(),
    }
    values.update(kw)
    return EnvCard(**values)


def ids(elements: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for e in elements]


def test_an_environment_says_current_running_waiting_queued_lock_and_last_failure() -> None:
    running = deploy(9, DeployState.RUNNING, started_at=NOW - timedelta(seconds=12), ref="<!channel>")
    waiting = deploy(10, DeployState.WAITING, waiting_for="ci/test pending")
    failed = deploy(
        8, DeployState.FAILED, error="step 2/2 `make` exited 1", finished_at=NOW - timedelta(hours=1)
    )
    lock = Lock("acme/api", "production", "slack:U0BOB0001", "freeze <@U0X>", NOW - timedelta(days=1))
    text = env_text(
        card(
            running=running,
            current_step="step 2/3 git pull",
            waiting=(waiting,),
            queued=2,
            lock=lock,
            last_failure=failed,
        ),
        NOW,
    )
    lines = text.splitlines()
    assert lines[0] == "*production*"
    assert lines[1].startswith("🔒 Locked by <@U0BOB0001> since <!date^") and lines[1].endswith(
        "freeze &lt;@U0X&gt;"
    )
    assert lines[2].startswith(
        f"Current: <https://github.com/acme/api/commit/{SHA}|3f2a9c1> `main` · #7 by <@U0ALICE01>"
    )
    assert lines[2].endswith("(2 h ago)")
    assert lines[3] == "🚀 Running #9 `&lt;!channel&gt;` (3f2a9c1) by <@U0ALICE01> · step 2/3 git pull · 12 s"
    assert lines[4] == "⏸️ Waiting #10 `main` (3f2a9c1) by <@U0ALICE01>: ci/test pending"
    assert lines[5] == "⏳ 2 queued"
    assert lines[6].startswith("❌ Last failure: #8 `main` (3f2a9c1)") and lines[6].endswith("exited 1")
    assert "never deployed" in env_text(card(current=None, current_url=None), NOW)


def test_a_deployer_gets_deploy_with_a_confirm_naming_the_sha_cancel_and_lock() -> None:
    running = deploy(9, DeployState.RUNNING)
    elements = env_buttons(card(running=running, cancellable=frozenset({9})))
    assert ids(elements) == [HOME_DEPLOY_ACTION, HOME_CANCEL_ACTION, HOME_LOCK_ACTION]
    deploy_button, cancel, lock = elements
    assert deploy_button["text"]["text"] == "Deploy main" and deploy_button["style"] == "primary"
    assert decode_target(deploy_button["value"]) == ("acme/api", "production", HEAD)
    confirm = deploy_button["confirm"]
    assert confirm["text"]["text"] == "Deploy `main` at abcdef0 to production?"
    assert confirm["title"]["text"] == "Deploy acme/api?" and confirm["confirm"]["text"] == "Deploy"
    assert (cancel["value"], cancel["style"]) == ("9", "danger")
    assert decode_target(lock["value"]) == ("acme/api", "production", None)
    unknown_head = env_buttons(card(head_sha=None))[0]
    assert decode_target(unknown_head["value"])[2] == "main"
    assert "the current head of `main`" in unknown_head["confirm"]["text"]["text"]


def test_only_permitted_buttons_are_shown() -> None:
    running = deploy(9, DeployState.RUNNING)
    locked = Lock("acme/api", "production", "slack:U0BOB0001", "", NOW)
    assert env_buttons(card(may_deploy=False, may_lock=False, running=running)) == []
    assert ids(env_buttons(card(lock=locked))) == [HOME_UNLOCK_ACTION]  # no Deploy while locked
    assert ids(env_buttons(card(may_deploy=False, running=running, cancellable=frozenset({9})))) == [
        HOME_CANCEL_ACTION,
        HOME_LOCK_ACTION,
    ]
    waiting = deploy(10, DeployState.WAITING)
    assert ids(env_buttons(card(may_lock=False, waiting=(waiting,), cancellable=frozenset({10})))) == [
        HOME_DEPLOY_ACTION,
        HOME_CANCEL_ACTION,
    ]


def test_a_requester_may_cancel_their_deploy_awaiting_approval() -> None:
    own = Awaiting(deploy(11, DeployState.AWAITING_APPROVAL), (), 1)
    elements = env_buttons(card(may_lock=False, awaiting=(own,), cancellable=frozenset({11})))
    assert ids(elements) == [HOME_DEPLOY_ACTION, HOME_CANCEL_ACTION]
    assert elements[-1]["value"] == "11"
    assert ids(env_buttons(card(may_lock=False, awaiting=(own,)))) == [HOME_DEPLOY_ACTION]


def page(repos: int, envs: int, repo_filter: str | None = None) -> HomePage:
    names = tuple(f"acme/svc{n:03d}" for n in range(repos))
    shown = names[: repos_that_fit([envs] * repos)] if repo_filter is None else (repo_filter,)
    cards = tuple(
        RepoCards(name, tuple(card(repo=name, env=f"env{e}") for e in range(envs))) for name in shown
    )
    return HomePage("U0ALICE01", names, repo_filter, cards, len(names) - len(shown))


@pytest.mark.parametrize(("repos", "envs"), [(1, 1), (19, 2), (20, 2), (200, 3), (1, 60)])
def test_a_home_never_exceeds_100_blocks(repos: int, envs: int) -> None:
    view = home_view(page(repos, envs), NOW)
    assert view["type"] == "home"
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    shown = json.dumps(view["blocks"])
    if repos > 1:
        select = view["blocks"][2]["elements"][0]
        assert select["action_id"] == HOME_FILTER_ACTION and select["type"] == "static_select"
        assert select["options"][0]["value"] == HOME_ALL_REPOS and len(select["options"]) <= 100
        assert select["initial_option"] == select["options"][0]
    if repos * (1 + 2 * envs) + 4 > MAX_VIEW_BLOCKS:
        assert "more repo(s)" in shown or "more blocks cut" in shown


def test_repos_that_fit_counts_each_repos_blocks() -> None:
    assert repos_that_fit([2] * 19) == 19  # 4 + 19 * 5 = 99
    assert repos_that_fit([2] * 20) == 19
    assert repos_that_fit([60]) == 1  # one at least: its environments are cut instead
    assert repos_that_fit([]) == 0


def test_the_filter_shows_the_chosen_repo() -> None:
    view = home_view(page(50, 3, repo_filter="acme/svc042"), NOW)
    select = view["blocks"][2]["elements"][0]
    assert select["initial_option"]["value"] == "acme/svc042"
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers == ["Deploys", "acme/svc042"]


def test_lock_form_asks_a_reason_and_a_duration_and_carries_the_target() -> None:
    form = lock_form("acme/api", "production")
    assert form["type"] == "modal" and form["callback_id"] == HOME_LOCK_VIEW
    assert decode_target(form["private_metadata"]) == ("acme/api", "production", None)
    assert len(form["title"]["text"]) <= 24
    reason, duration = [b for b in form["blocks"] if b["type"] == "input"]
    assert reason["block_id"] == reason["element"]["action_id"] == HOME_REASON_BLOCK
    assert reason["optional"] is True and reason["element"]["type"] == "plain_text_input"
    assert duration["block_id"] == duration["element"]["action_id"] == HOME_DURATION_BLOCK
    assert duration["optional"] is True and duration["element"]["type"] == "plain_text_input"
    hint = duration["hint"]["text"]
    assert len(hint) <= 150 and "`" not in hint and "2h" in hint and "until unlocked" in hint
    extra = {"type": "input", "block_id": "ticket", "label": {"type": "plain_text", "text": "Ticket"}}
    assert lock_form("acme/api", "production", [extra])["blocks"][-1] == extra
    state = {"reason": {"reason": {"type": "plain_text_input", "value": "  freeze  "}}}
    assert read_reason(state) == "freeze"
    assert read_reason({}) == "" and read_reason({"reason": {"reason": {"value": None}}}) == ""


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not json",
        "[]",
        '{"repo": "acme/api"}',
        '{"repo": "acme/api", "env": "prod", "x": 1}',
        '{"repo": "../x", "env": "prod"}',
        '{"repo": "acme/api", "env": "-rf"}',
        '{"repo": "acme/api", "env": "prod", "ref": "--upload-pack=x"}',
        '{"repo": "acme/api", "env": "prod", "ref": 7}',
        "x" * 3000,
    ],
)
def test_a_forged_or_broken_home_value_is_refused(value: str) -> None:
    with pytest.raises(BadCommand, match="broken or out of date"):
        decode_target(value)


def test_targets_round_trip() -> None:
    assert decode_target(encode_target("acme/api", "production", SHA)) == ("acme/api", "production", SHA)
    assert decode_target(encode_target("acme/api", "staging")) == ("acme/api", "staging", None)
    with pytest.raises(ValueError):
        encode_target("not a repo", "production")


def test_escaped_text_from_users_and_github() -> None:
    hostile = replace(card(), env="production")
    lock = Lock("acme/api", "production", "github:<!here>", "<https://evil|click>", NOW)
    text = env_text(replace(hostile, lock=lock), NOW)
    assert "<!here>" not in text and "<https://evil" not in text


OLD = "0badc0d" + "2" * 33


def awaiting(deploy_id: int, approved_by: tuple[str, ...] = (), **kw: Any) -> Awaiting:
    return Awaiting(deploy(deploy_id, DeployState.AWAITING_APPROVAL, **kw), approved_by, 2)


def test_an_expiring_lock_says_until_and_how_long_is_left() -> None:
    lock = Lock("acme/api", "production", "slack:U0BOB0001", "db move", NOW, NOW + timedelta(hours=2))
    line = lock_line(lock, NOW + timedelta(minutes=30))
    assert line.startswith("🔒 Locked by <@U0BOB0001> since <!date^")
    assert " until <!date^" in line and "|2026-12-01 15:05 UTC>" in line
    assert line.endswith("(for 1 h 30 min more): db move")
    forever = replace(lock, expires_at=None)
    assert " until " not in lock_line(forever, NOW) and lock_line(forever, NOW).endswith(": db move")
    assert lock_line(lock, NOW + timedelta(hours=3)).endswith("(expiring now): db move")
    assert "(for 2 h more)" in env_text(card(lock=lock), NOW)


def test_awaiting_deploys_are_listed_with_approve_and_reject_where_permitted() -> None:
    first = awaiting(11, ("slack:U0ANN0001",), requested_by="slack:U0REQ0001")
    second = awaiting(12, rollback_of=7)
    text = env_text(card(awaiting=(first, second)), NOW)
    assert "✋ Awaiting approval #11 `main` (3f2a9c1) by <@U0REQ0001> · 1/2 approved by <@U0ANN0001>" in text
    assert "✋ Awaiting approval #12 `main` (3f2a9c1), rolling back #7 by <@U0ALICE01> · 0/2 approved" in text

    shown = card(may_deploy=False, may_lock=False, awaiting=(first, second))
    assert env_buttons(shown) == []  # no rights: no buttons
    elements = env_buttons(replace(shown, approvable=frozenset({12}), rejectable=frozenset({11, 12})))
    assert ids(elements) == [
        f"{HOME_REJECT_ACTION}:11",
        f"{HOME_APPROVE_ACTION}:12",
        f"{HOME_REJECT_ACTION}:12",
    ]
    reject11, approve12, reject12 = elements
    assert (approve12["text"]["text"], approve12["value"], approve12["style"]) == (
        "Approve #12",
        "12",
        "primary",
    )
    assert (reject11["value"], reject11["style"]) == ("11", "danger") and "confirm" in reject11
    assert reject12["confirm"]["title"]["text"] == "Reject deploy #12?"
    assert "/deploy reject 12 : reason" in reject12["confirm"]["text"]["text"]
    assert all(HOME_APPROVE_PATTERN.match(a) or HOME_REJECT_PATTERN.match(a) for a in ids(elements))
    assert not HOME_APPROVE_PATTERN.match(f"{HOME_APPROVE_ACTION}:12x")


def test_approve_buttons_stay_within_an_actions_block_with_unique_ids() -> None:
    many = tuple(awaiting(n) for n in range(20, 40))
    everything = card(
        running=deploy(9, DeployState.RUNNING),
        cancellable=frozenset({9}),
        awaiting=many,
        approvable=frozenset(range(20, 40)),
        rejectable=frozenset(range(20, 40)),
        rollback_to=deploy(5, DeployState.SUCCEEDED, sha=OLD),
        may_roll_back=True,
    )
    elements = env_buttons(everything)
    assert len(elements) <= MAX_ACTIONS and len(set(ids(elements))) == len(elements)
    assert ids(elements)[:2] == [HOME_DEPLOY_ACTION, HOME_ROLLBACK_ACTION]
    assert ids(elements)[-2:] == [HOME_CANCEL_ACTION, HOME_LOCK_ACTION]
    assert sum(i.startswith(HOME_APPROVE_ACTION) for i in ids(elements)) == APPROVALS_WITH_BUTTONS
    assert "#39" in env_text(everything, NOW)  # every one listed; the oldest get buttons
    full = HomePage("U0ALICE01", ("acme/api",), None, (RepoCards("acme/api", (everything,) * 60),), 0)
    assert len(home_view(full, NOW)["blocks"]) <= MAX_VIEW_BLOCKS


def test_roll_back_names_the_sha_in_its_confirm_and_shows_only_where_permitted() -> None:
    target = deploy(5, DeployState.SUCCEEDED, sha=OLD)
    offered = card(rollback_to=target, may_roll_back=True)
    (roll,) = [e for e in env_buttons(offered) if e["action_id"] == HOME_ROLLBACK_ACTION]
    assert roll["text"]["text"] == "Roll back to 0badc0d"
    assert decode_rollback_value(roll["value"]) == ("acme/api", "production", OLD, 7)
    confirm = roll["confirm"]
    assert confirm["title"]["text"] == "Roll back to 0badc0d?" and confirm["confirm"]["text"] == "Roll back"
    assert "Deploys 0badc0d (deploy #5) to production of acme/api again" in confirm["text"]["text"]
    assert "undoing deploy #7 (3f2a9c1)" in confirm["text"]["text"]
    locked = Lock("acme/api", "production", "slack:U0BOB0001", "", NOW)
    for without in (
        replace(offered, may_roll_back=False),
        replace(offered, lock=locked),  # the service would refuse
        replace(offered, rollback_to=None),
        replace(offered, current=None),
    ):
        assert HOME_ROLLBACK_ACTION not in ids(env_buttons(without))


@pytest.mark.parametrize(
    ("pending", "said"),
    [
        (None, "Deploy `main` at abcdef0 to production?"),
        (PendingChanges(SHA, 3), "Deploy `main` at abcdef0 to production? 3 commits since 3f2a9c1."),
        (
            PendingChanges(SHA, 1, 2),
            "Deploy `main` at abcdef0 to production? 1 commit since 3f2a9c1 (2 behind it).",
        ),
        (
            PendingChanges(SHA, 0, 2),
            "Deploy `main` at abcdef0 to production? 2 commits behind 3f2a9c1: this goes back.",
        ),
        (
            PendingChanges(SHA, 0),
            "Deploy `main` at abcdef0 to production? Nothing new: 3f2a9c1 runs there already.",
        ),
    ],
)
def test_the_deploy_confirm_names_the_change_count_when_known(
    pending: PendingChanges | None, said: str
) -> None:
    (deploy_button,) = env_buttons(card(pending=pending, may_lock=False))
    assert deploy_button["confirm"]["text"]["text"] == said
    assert change_count(PendingChanges(SHA, 3)) == "3 commits since 3f2a9c1."
