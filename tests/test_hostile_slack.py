"""Malformed Slack payloads through the real robot: no exception escapes a listener, nothing is queued."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import Robot
from bot.app.guard import UNHANDLED_TEXT
from bot.slack.ids import CANCEL_ACTION, deploy_action_id, encode_deploy_value
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import TOKEN, make_git_repo
from tests.support.rig import RobotRig

pytestmark = pytest.mark.slow  # a whole robot behind the fake Slack's WebSocket

WAIT = 20.0
CHANNEL = "C0DEPLOYS"
ROBOT_LOGGERS = ("bot", "handlers", "slack_bolt")


class Rig:
    """One running robot (anyone may deploy acme/api) and the fakes it talks to."""

    def __init__(self, robot: Robot, slack: FakeSlack, sha: str) -> None:
        self.robot = robot
        self.slack = slack
        self.sha = sha

    def send(self, type_: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Send an envelope as Slack would; the ack and the ephemeral answer (ack text, or response_url)."""
        payload = copy.deepcopy(payload)
        live = payload.get("response_url") == "LIVE"
        # The fake's response_url binding, made before sending: a fast answer cannot miss it.
        response_id = self.slack._new_response_id()
        self.slack._bind_response(response_id, f"hostile-{response_id}")
        if live:
            payload["response_url"] = f"{self.slack.base_url}/response/{response_id}"
        envelope = self.slack.send_envelope(
            type_, payload, accepts_response_payload=type_ == "slash_commands"
        )
        ack = self.slack.wait_ack(envelope, timeout=WAIT).payload or {}
        text = str(ack.get("text", ""))
        # Slack shows a click's ack to nobody: its answer is what goes to the response_url.
        if live and (type_ == "interactive" or not text or text.startswith("⏳")):
            self.slack.wait_for(lambda: bool(self._answers(response_id)), WAIT, "an answer via response_url")
            text = str(self._answers(response_id)[0].get("text", ""))
        return ack, text

    def _answers(self, response_id: str) -> list[dict[str, Any]]:
        return [p.body for p in self.slack.response_posts() if p.response_id == response_id]

    def nothing_queued(self) -> bool:
        return self.robot.core.store.list_deploys() == [] and not self.slack.calls_to("chat.postMessage")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp_path = tmp_path_factory.mktemp("hostile-slack")
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    slack = FakeSlack().start()
    github.add_repo("acme/api")
    checkout = make_git_repo(tmp_path / "checkout")
    envs = {"production": {"folder": str(checkout), "commands": [["true"]]}}
    try:
        with RobotRig(
            tmp_path, github, slack, {"acme/api": {"channel": CHANNEL, "environments": envs}}
        ) as rig:
            yield Rig(rig.robot, slack, github.head("acme/api", "main"))
    finally:
        slack.stop()
        github.stop()
    assert slack.server_errors == []


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fails the test if the robot logged an error: a listener fault (on_error) or a failed command."""
    caplog.set_level(logging.WARNING)
    yield caplog
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(ROBOT_LOGGERS)]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]


def slash(**fields: Any) -> dict[str, Any]:
    """A /deploy payload as Slack sends it, with fields replaced or (value ...) removed."""
    payload: dict[str, Any] = {
        "team_id": "T0FAKE",
        "channel_id": "C0HERE",
        "user_id": "U0ALICE01",
        "user_name": "alice",
        "command": "/deploy",
        "text": "acme/api",
        "api_app_id": "A0FAKE",
        "response_url": "LIVE",
        "trigger_id": "trigger-1",
    }
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not ...}


def click(action: Any = None, **fields: Any) -> dict[str, Any]:
    """A block_actions payload for one button, with fields replaced or (value ...) removed."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ALICE01", "username": "alice", "team_id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": CHANNEL},
        "trigger_id": "trigger-2",
        "team": {"id": "T0FAKE"},
        "channel": {"id": CHANNEL, "name": "deploys"},
        "response_url": "LIVE",
        "actions": [action] if action is not None else [],
    }
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not ...}


def button(action_id: Any, value: Any = ...) -> dict[str, Any]:
    """One button action as Slack sends it, with the value replaced or (...) removed."""
    found = {"action_id": action_id, "block_id": "b", "type": "button", "action_ts": "1.1", "value": value}
    return {k: v for k, v in found.items() if v is not ...}


def assert_refused(ack: dict[str, Any], text: str, rig: Rig, needle: str = "") -> None:
    assert text.startswith("⚠️") and needle in text, text
    assert ack.get("response_type", "ephemeral") == "ephemeral"
    assert rig.nothing_queued()


# ---- slash commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"user_id": ...}, "who"),
        ({"user_id": ""}, "who"),
        ({"user_id": 12345}, "who"),
        ({"user_id": ["U0ALICE01"]}, "who"),
        ({"user_id": {"id": "U0ALICE01"}}, "who"),
        ({"text": "acme/api@$(reboot)"}, "not a valid ref"),
        ({"text": "acme/api to <!channel>"}, "Slack link or mention"),
        ({"text": "x" * 100_000}, "too long"),
        ({"text": "cancel 99999999999999999999"}, "not a deploy id"),
        ({"text": "lock acme/api", "user_id": ...}, "who"),
    ],
)
def test_slash_command_with_bad_fields_is_refused(
    rig: Rig, quiet: None, fields: dict[str, Any], needle: str
) -> None:
    ack, text = rig.send("slash_commands", slash(**fields))
    assert_refused(ack, text, rig, needle)
    assert rig.robot.core.store.list_locks() == []


@pytest.mark.parametrize("text", [..., None, 42, 4.2, True, ["acme/api"], {"repo": "acme/api"}, ""])
def test_slash_command_without_usable_text_gets_help(rig: Rig, quiet: None, text: Any) -> None:
    ack, answer = rig.send("slash_commands", slash(text=text))
    assert "/deploy <repo>" in str(ack.get("blocks")) and "Deploy robot commands" in answer
    assert rig.nothing_queued()


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (slash(command=...), UNHANDLED_TEXT),
        (slash(command="/nope"), UNHANDLED_TEXT),
        (slash(command=42), UNHANDLED_TEXT),
        ({}, UNHANDLED_TEXT),
        (slash(response_url=..., text="cancel 1"), "There is no deploy #1."),
        (slash(channel_id=..., text="cancel 1"), "There is no deploy #1."),
        ({"command": "/deploy"}, "Deploy robot commands"),
    ],
)
def test_slash_command_payloads_missing_routing_fields_are_answered(
    rig: Rig, quiet: None, payload: dict[str, Any], answer: str
) -> None:
    ack, text = rig.send("slash_commands", payload)
    assert answer in text and ack.get("response_type") == "ephemeral"
    assert rig.nothing_queued()


# ---- buttons ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [..., None, "", "abc", "-1", "0", "1.5", "²", "٣", "9" * 5000, "9" * 19, 42, {"id": 1}, ["1"], "1\n"],
)
def test_cancel_button_with_a_bad_value_is_refused(rig: Rig, quiet: None, value: Any) -> None:
    ack, text = rig.send("interactive", click(button(CANCEL_ACTION, value)))
    assert ack == {}
    assert_refused(ack, text, rig)


@pytest.mark.parametrize(
    "value",
    [..., None, "", "{}", "[]", "null", '{"repo": "acme/api", "env": "production", "sha": "main"}', {"a": 1}],
)
def test_deploy_button_with_a_bad_value_is_refused(rig: Rig, quiet: None, value: Any) -> None:
    ack, text = rig.send("interactive", click(button(deploy_action_id("production"), value)))
    assert_refused(ack, text, rig, "broken or out of date")


@pytest.mark.parametrize(
    "fields",
    [{"user": ...}, {"user": "U0ALICE01"}, {"user": {"id": 7}}, {"user": {}}, {"user": None}],
)
def test_a_click_by_nobody_queues_nothing(rig: Rig, quiet: None, fields: dict[str, Any]) -> None:
    value = encode_deploy_value("acme/api", "production", rig.sha)
    ack, text = rig.send("interactive", click(button(deploy_action_id("production"), value), **fields))
    assert_refused(ack, text, rig, "who")


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (click(), UNHANDLED_TEXT),
        (click(actions=...), UNHANDLED_TEXT),
        (click(actions="deploy_cancel"), UNHANDLED_TEXT),
        (click(actions={"0": button(CANCEL_ACTION, "1")}), UNHANDLED_TEXT),
        (click(actions=[None]), UNHANDLED_TEXT),
        (click(actions=[[]]), UNHANDLED_TEXT),
        (click(button("no_such_action", "1")), UNHANDLED_TEXT),
        (click(button(42, "1")), UNHANDLED_TEXT),
        (click(button(CANCEL_ACTION, "1"), user=False), UNHANDLED_TEXT),  # Bolt cannot parse these
        (click(button(CANCEL_ACTION, "1"), channel=True, container=...), UNHANDLED_TEXT),
        (click(button(CANCEL_ACTION, "1"), team=5), UNHANDLED_TEXT),
        (click(button(CANCEL_ACTION, "1"), channel=..., container=...), "There is no deploy #1."),
    ],
)
def test_click_payloads_missing_routing_fields_are_answered(
    rig: Rig, quiet: None, payload: dict[str, Any], answer: str
) -> None:
    ack, text = rig.send("interactive", payload)
    assert ack in ({}, {"text": UNHANDLED_TEXT, "response_type": "ephemeral"})
    assert answer in text
    assert rig.nothing_queued()


def test_a_click_without_a_response_url_is_acked_and_its_answer_dropped(
    rig: Rig, quiet: pytest.LogCaptureFixture
) -> None:
    ack, _ = rig.send("interactive", click(button(CANCEL_ACTION, "1"), response_url=...))
    assert ack == {}

    def dropped() -> bool:
        return any("no response_url" in r.getMessage() for r in quiet.records)

    # Log records do not wake the fake's waiters: poll (bounded) instead.
    deadline = time.monotonic() + WAIT
    while not dropped() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dropped()
    assert rig.nothing_queued()


def test_a_payload_of_an_unknown_type_is_acked(rig: Rig, quiet: None) -> None:
    payload = click(button(CANCEL_ACTION, "1"), type="something_else", response_url=...)
    ack, _ = rig.send("interactive", payload)
    assert ack == {"text": UNHANDLED_TEXT, "response_type": "ephemeral"}
    assert rig.nothing_queued()


# ---- generated payloads ----------------------------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)


@st.composite
def mangled(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A real-looking slash command or click with some fields dropped or replaced by junk."""
    if draw(st.booleans()):
        type_, payload = "slash_commands", slash(text=draw(st.text(max_size=60) | junk))
    else:
        action_id = draw(st.sampled_from([CANCEL_ACTION, deploy_action_id("production"), "other"]) | junk)
        action = button(action_id, draw(st.sampled_from(["1", "", "abc"]) | junk))
        for key in draw(st.lists(st.sampled_from(sorted(action)), max_size=2, unique=True)):
            action.pop(key)
        type_, payload = "interactive", click(action)
    for key in draw(st.lists(st.sampled_from(sorted(payload)), max_size=3, unique=True)):
        if key == "response_url":
            continue  # without one the answer has nowhere to go; explicit cases cover that
        if draw(st.booleans()):
            del payload[key]
        else:
            payload[key] = draw(junk)
    return type_, payload


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mangled())
def test_generated_malformed_payloads_are_acked_and_queue_nothing(
    rig: Rig, quiet: None, case: tuple[str, dict[str, Any]]
) -> None:
    ack, text = rig.send(*case)
    assert isinstance(ack, dict)
    assert text.startswith("⚠️") or "Deploy robot commands" in text, text
    assert rig.nothing_queued()
