"""The fake Slack speaks what the real slack_sdk WebClient and a Bolt Socket Mode app expect."""

from __future__ import annotations

import queue
import socket
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import Ack as BoltAck
from slack_bolt import App, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, RESPONSE_URL_MAX_USES, FakeSlack
from tests.fakes.slack_socket import JSON, _WsConnection

pytestmark = pytest.mark.slow  # the fake Slack over loopback HTTP and WebSocket

WAIT = 10.0


@pytest.fixture
def web(slack: FakeSlack) -> WebClient:
    """A real WebClient pointed at the fake with the bot token."""
    return WebClient(base_url=slack.api_url, token=BOT_TOKEN, timeout=5)


class BoltRig:
    """A connected Bolt Socket Mode app and what its listeners saw."""

    def __init__(self, slack: FakeSlack, web: WebClient) -> None:
        self.clicks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.app = App(client=web)
        self.app.command("/deploy")(self._deploy)
        self.app.action("deploy_button")(self._click)
        # A short ping interval bounds how long a dropped TCP connection goes unnoticed.
        self.handler = SocketModeHandler(self.app, APP_TOKEN, web_client=web, ping_interval=0.5)

    def _deploy(self, ack: BoltAck, respond: Respond, command: dict[str, Any]) -> None:
        ack(f"queued {command['text']}")
        respond(f"done {command['text']}")

    def _click(self, ack: BoltAck, body: dict[str, Any]) -> None:
        ack()
        self.clicks.put(body)


@pytest.fixture
def bolt(slack: FakeSlack, web: WebClient) -> Iterator[BoltRig]:
    """A Bolt app connected to the fake through the real SocketModeHandler."""
    rig = BoltRig(slack, web)
    rig.handler.connect()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
    try:
        slack.wait_connected(timeout=WAIT)
        yield rig
    finally:
        close_quickly(slack, rig.handler)


def close_quickly(slack: FakeSlack, handler: SocketModeHandler) -> None:
    """Close a handler without waiting out the client's 3 s socket read timeout."""
    # The client's close blocks until its pending recv returns; a close frame makes it return now.
    handler.client.auto_reconnect_enabled = False
    slack.close_all()
    handler.close()  # type: ignore[no-untyped-call]


# ---- Web API -----------------------------------------------------------------------------


def test_post_thread_and_update_are_kept_per_channel(slack: FakeSlack, web: WebClient) -> None:
    """Messages keep text, blocks, thread and update count; every call is recorded."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Deploy #1 queued"}}]
    parent = web.chat_postMessage(channel="C1", text="Deploy #1 queued", blocks=blocks)
    reply = web.chat_postMessage(channel="C1", text="step 1", thread_ts=parent["ts"])
    web.chat_update(channel="C1", ts=parent["ts"], text="Deploy #1 running")
    web.chat_update(channel="C1", ts=parent["ts"], text="Deploy #1 done")

    assert parent["channel"] == "C1" and reply["ts"] != parent["ts"]
    top = slack.message("C1", parent["ts"])
    assert (top.text, top.updates) == ("Deploy #1 done", 2)
    assert top.history == ["Deploy #1 queued", "Deploy #1 running"]
    assert [m.text for m in slack.thread("C1", parent["ts"])] == ["step 1"]
    assert slack.messages("C2") == []
    assert [c.args["text"] for c in slack.calls_to("chat.update")] == ["Deploy #1 running", "Deploy #1 done"]
    assert slack.calls_to("chat.postMessage")[0].args["blocks"] == blocks


def test_update_of_unknown_message_and_empty_post_fail_like_slack(web: WebClient) -> None:
    """chat.update on a missing ts and a post with no text are refused."""
    with pytest.raises(SlackApiError) as missing:
        web.chat_update(channel="C1", ts="1.000001", text="x")
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning):
        web.chat_postMessage(channel="C1", text="")
    assert missing.value.response["error"] == "message_not_found"
    assert empty.value.response["error"] == "no_text"


def test_ephemeral_and_permalink(slack: FakeSlack, web: WebClient) -> None:
    """Ephemerals are kept per user; permalinks point at the message (and its thread)."""
    web.chat_postEphemeral(channel="C1", user="U7", text="Deploy #2 queued")
    parent = web.chat_postMessage(channel="C1", text="top")
    reply = web.chat_postMessage(channel="C1", text="in thread", thread_ts=parent["ts"])

    top_link = web.chat_getPermalink(channel="C1", message_ts=parent["ts"])["permalink"]
    reply_link = web.chat_getPermalink(channel="C1", message_ts=reply["ts"])["permalink"]

    assert [(e.user, e.text) for e in slack.ephemerals("C1")] == [("U7", "Deploy #2 queued")]
    assert top_link.endswith("/archives/C1/p" + parent["ts"].replace(".", ""))
    assert f"thread_ts={parent['ts']}" in reply_link
    with pytest.raises(SlackApiError):
        web.chat_getPermalink(channel="C1", message_ts="9.000009")


def test_files_upload_v2_round_trip(slack: FakeSlack, web: WebClient) -> None:
    """files_upload_v2 goes through all three steps and the bytes land in the fake."""
    result = web.files_upload_v2(
        channel="C1",
        content="line 1\nline 2\n",
        filename="deploy.log",
        title="Deploy #3 log",
        thread_ts="1.000001",
        initial_comment="full log",
    )

    stored = slack.files[result["file"]["id"]]
    assert stored.content == b"line 1\nline 2\n"
    assert (stored.completed, stored.title, stored.channel_id, stored.thread_ts) == (
        True,
        "Deploy #3 log",
        "C1",
        "1.000001",
    )
    assert [c.method for c in slack.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]


def test_usergroups_and_auth(slack: FakeSlack, web: WebClient) -> None:
    """Known groups list their users; unknown groups and wrong tokens are refused."""
    slack.set_usergroup("S1", ["U1", "U2"])

    assert web.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert web.auth_test()["user_id"]
    with pytest.raises(SlackApiError) as group:
        web.usergroups_users_list(usergroup="S9")
    with pytest.raises(SlackApiError) as bad:
        WebClient(base_url=slack.api_url, token="xoxb-wrong").auth_test()
    with pytest.raises(SlackApiError) as bot_for_socket:
        web.apps_connections_open(app_token=BOT_TOKEN)
    assert group.value.response["error"] == "no_such_subteam"
    assert bad.value.response["error"] == "invalid_auth"
    assert bot_for_socket.value.response["error"] == "not_allowed_token_type"
    assert web.apps_connections_open(app_token=APP_TOKEN)["url"].startswith("ws://127.0.0.1:")


def test_views_open_and_conversations_join(slack: FakeSlack, web: WebClient) -> None:
    """A modal opened with a trigger id is kept; joining a channel succeeds."""
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Deploy"}, "blocks": []}

    opened = web.views_open(trigger_id="trigger-1", view=view)
    joined = web.conversations_join(channel="C9")

    assert opened["view"]["id"] == slack.views[0]["id"]
    assert slack.views[0]["title"]["text"] == "Deploy"
    assert joined["channel"]["id"] == "C9"


# ---- faults ------------------------------------------------------------------------------


def test_rate_limit_window_answers_429_with_retry_after(slack: FakeSlack, web: WebClient) -> None:
    """During a rate-limit window the method answers 429 + Retry-After; others are untouched."""
    slack.rate_limit("chat.update", seconds=60, retry_after=7)

    with pytest.raises(SlackApiError) as err:
        web.chat_update(channel="C1", ts="1.000001", text="x")
    web.chat_postMessage(channel="C1", text="still fine")

    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "7"
    assert slack.served_429 == 1


def test_retry_handler_recovers_from_a_429(slack: FakeSlack) -> None:
    """The SDK's RateLimitErrorRetryHandler waits out Retry-After and then succeeds."""
    client = WebClient(
        base_url=slack.api_url,
        token=BOT_TOKEN,
        timeout=5,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack.rate_limit("chat.postMessage", seconds=0.5, retry_after=1)

    posted = client.chat_postMessage(channel="C1", text="after the wait")

    assert slack.message("C1", posted["ts"]).text == "after the wait"
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]


def test_write_limit_is_per_channel(slack: FakeSlack, web: WebClient) -> None:
    """A second write to the same channel within the interval gets 429; another channel does not."""
    slack.enforce_write_limit(per_second=0.01)
    first = web.chat_postMessage(channel="C1", text="one")

    with pytest.raises(SlackApiError) as err:
        web.chat_update(channel="C1", ts=first["ts"], text="too soon")
    web.chat_postMessage(channel="C2", text="other channel")

    assert err.value.response.status_code == 429
    assert slack.message("C1", first["ts"]).updates == 0
    assert slack.served_429 == 1


def test_fail_next_then_recover(slack: FakeSlack, web: WebClient) -> None:
    """fail_next fails exactly the next calls, with the given error and status."""
    slack.fail_next("chat.postMessage", error="channel_not_found")
    slack.fail_next("auth.test", error="service_unavailable", status=503)

    with pytest.raises(SlackApiError) as first:
        web.chat_postMessage(channel="C1", text="x")
    with pytest.raises(SlackApiError) as outage:
        web.auth_test()
    web.chat_postMessage(channel="C1", text="y")

    assert first.value.response["error"] == "channel_not_found"
    assert outage.value.response.status_code == 503
    assert [m.text for m in slack.messages("C1")] == ["y"]


def test_delay_next_makes_the_client_time_out(slack: FakeSlack) -> None:
    """A delayed answer outlasts a short client timeout."""
    slack.delay_next("auth.test", seconds=3)
    client = WebClient(base_url=slack.api_url, token=BOT_TOKEN, timeout=1)

    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        client.auth_test()


# ---- Socket Mode through Bolt --------------------------------------------------------------


def test_slash_command_is_acked_and_responded(slack: FakeSlack, bolt: BoltRig) -> None:
    """A /deploy envelope gets an ack with the app's text and a response_url post."""
    envelope_id = slack.send_slash_command(command="/deploy", text="acme/api", user_id="U1")

    ack = slack.wait_ack(envelope_id, timeout=WAIT)
    response = slack.wait_response(envelope_id, timeout=WAIT)

    assert ack.payload == {"text": "queued acme/api"}
    assert ack.latency is not None and ack.latency >= 0
    assert response["text"] == "done acme/api"


def test_large_envelope_and_ack_cross_frame_and_buffer_sizes(slack: FakeSlack, bolt: BoltRig) -> None:
    """Envelopes and acks far above one receive buffer (and the 125-byte frame size) arrive whole."""
    text = "acme/api " + "x" * 70_000

    ack = slack.wait_ack(slack.send_slash_command(text=text), timeout=WAIT)

    assert ack.payload == {"text": f"queued {text}"}


def test_block_action_is_acked_with_the_message(slack: FakeSlack, web: WebClient, bolt: BoltRig) -> None:
    """A button click on a posted message reaches the listener with the value and the message."""
    posted = web.chat_postMessage(channel="C1", text="acme/api merged")

    envelope_id = slack.send_block_action(
        "deploy_button", "acme/api", user_id="U2", channel_id="C1", message_ts=posted["ts"]
    )
    ack = slack.wait_ack(envelope_id, timeout=WAIT)
    body = bolt.clicks.get(timeout=WAIT)

    assert ack.payload is None
    assert body["actions"][0]["value"] == "acme/api"
    assert body["user"]["id"] == "U2"
    assert body["message"]["text"] == "acme/api merged"


def test_response_url_accepts_five_posts(slack: FakeSlack, bolt: BoltRig) -> None:
    """A response_url takes five posts; the sixth is refused as used."""
    envelope_id = slack.send_slash_command(text="acme/web")
    slack.wait_response(envelope_id, timeout=WAIT)
    hook = WebhookClient(slack.envelope(envelope_id).payload["response_url"], timeout=5)

    statuses = [hook.send(text=f"update {i}").status_code for i in range(RESPONSE_URL_MAX_USES)]

    assert statuses == [200] * (RESPONSE_URL_MAX_USES - 1) + [404]
    assert len(slack.response_posts(envelope_id)) == RESPONSE_URL_MAX_USES + 1


@pytest.mark.parametrize("kind", ["click", "command"])
def test_response_url_is_live_once_its_envelope_is_sent(
    slack: FakeSlack, bolt: BoltRig, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """An app may answer on the response_url before the sender of the envelope runs again
    (a loaded machine): that post is the envelope's response, never a 404."""
    answered: queue.Queue[int] = queue.Queue()

    def answer_at_once(ack: BoltAck, respond: Respond) -> None:
        ack()
        answered.put(respond(text="answered").status_code)

    bolt.app.action("answer_at_once")(answer_at_once)
    bolt.app.command("/answer")(answer_at_once)
    sent = _WsConnection.send_json

    def send_then_wait_for_the_answer(conn: _WsConnection, message: JSON) -> None:
        sent(conn, message)
        answered.put(answered.get(timeout=WAIT))  # the sender is descheduled until the app answered

    monkeypatch.setattr(_WsConnection, "send_json", send_then_wait_for_the_answer)
    if kind == "click":
        envelope_id = slack.send_block_action("answer_at_once", "1")
    else:
        envelope_id = slack.send_slash_command(command="/answer")

    assert answered.get(timeout=WAIT) == 200
    assert slack.wait_response(envelope_id, timeout=WAIT)["text"] == "answered"


def test_disconnect_message_makes_the_client_reconnect(slack: FakeSlack, bolt: BoltRig) -> None:
    """After Slack's disconnect message the client opens a new connection and drops the old one."""
    before = slack.send_slash_command(text="acme/web")
    slack.wait_ack(before, timeout=WAIT)
    slack.disconnect_all(reason="refresh_requested")

    slack.wait_connected(timeout=WAIT, total=2)
    envelope_id = slack.send_slash_command(text="acme/api")

    assert slack.wait_ack(envelope_id, timeout=WAIT).payload == {"text": "queued acme/api"}
    assert slack.envelope(envelope_id).connection_id != slack.envelope(before).connection_id
    slack.wait_for(lambda: slack.connection_count == 1, timeout=WAIT, what="the old connection to close")


def test_hard_close_makes_the_client_reconnect(slack: FakeSlack, bolt: BoltRig) -> None:
    """A TCP reset is noticed and the client reconnects; later commands still get acked."""
    slack.hard_close_all()

    slack.wait_connected(timeout=WAIT, total=2)
    envelope_id = slack.send_slash_command(text="acme/api")

    assert slack.wait_ack(envelope_id, timeout=WAIT).payload == {"text": "queued acme/api"}
    slack.wait_for(lambda: slack.connection_count == 1, timeout=WAIT, what="only the new connection")


def test_envelopes_need_a_live_connection(slack: FakeSlack) -> None:
    """Sending with no app connected is a test error, not a silent drop."""
    with pytest.raises(RuntimeError):
        slack.send_slash_command(text="acme/api")
