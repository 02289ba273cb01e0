"""handlers/answer.py: the reply in the ack when quick, else ⏳ then response_url; errors are answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import Respond
from slack_sdk.webhook import WebhookResponse

from bot.errors import RequestError
from bot.slack.chatops import Reply
from handlers.answer import FAULT_TEXT, WORKING_TEXT, Answerer

WAIT = 5.0


class Recorder:
    """Stands in for Bolt's ack or respond: remembers each call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.called = threading.Event()

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        self.called.set()


class RecordingRespond(Respond):
    """Bolt's Respond with a response_url, recording instead of posting; Slack answers ``status``."""

    def __init__(self, response_url: str | None = "https://hooks.slack.test/r/1", status: int = 200) -> None:
        super().__init__(response_url=response_url)
        self.record = Recorder()
        self.status = status

    def __call__(self, **kwargs: Any) -> Any:  # type: ignore[override]  # records whatever is sent
        self.record(**kwargs)
        body = "ok" if self.status == 200 else "no_such_url"
        return WebhookResponse(url=self.response_url or "", status_code=self.status, body=body, headers={})


@pytest.fixture
def answerer() -> Iterator[Answerer]:
    found = Answerer()
    yield found
    found.close()


def test_a_quick_reply_is_the_ack(answerer: Answerer) -> None:
    ack, respond = Recorder(), RecordingRespond()
    answerer.command(lambda: Reply("done", [{"type": "divider"}]), ack, respond)
    assert ack.calls == [{"text": "done", "response_type": "ephemeral", "blocks": [{"type": "divider"}]}]
    assert respond.record.calls == []


def test_a_slow_reply_acks_working_then_responds(answerer: Answerer) -> None:
    ack, respond = Recorder(), RecordingRespond()
    go = threading.Event()

    def slow() -> Reply:
        go.wait(WAIT)
        return Reply("late")

    answerer.command(slow, ack, respond, budget=0.05)
    assert ack.calls == [{"text": WORKING_TEXT, "response_type": "ephemeral"}]
    go.set()
    assert respond.record.called.wait(WAIT)
    assert respond.record.calls == [{"replace_original": False, "text": "late", "response_type": "ephemeral"}]


def test_while_busy_the_ack_goes_at_once(answerer: Answerer) -> None:
    go = threading.Event()

    def slow(text: str) -> Reply:
        go.wait(WAIT)
        return Reply(text)

    answerer.command(lambda: slow("first"), Recorder(), RecordingRespond(), budget=0.05)
    ack, respond = Recorder(), RecordingRespond()
    started = time.monotonic()
    answerer.command(lambda: slow("second"), ack, respond)
    assert time.monotonic() - started < 1.0, "the ack did not wait for the budget"
    assert ack.calls == [{"text": WORKING_TEXT, "response_type": "ephemeral"}]
    go.set()
    assert respond.record.called.wait(WAIT) and respond.record.calls[0]["text"] == "second"


def test_a_bot_error_is_the_answer_and_a_bug_is_told_briefly(answerer: Answerer) -> None:
    def refused() -> Reply:
        raise RequestError("No <such> thing.")

    def broken() -> Reply:
        raise ZeroDivisionError

    ack = Recorder()
    answerer.command(refused, ack, RecordingRespond())
    assert ack.calls == [{"text": "⚠️ No &lt;such&gt; thing.", "response_type": "ephemeral"}]
    click_ack, respond = Recorder(), RecordingRespond()
    answerer.click(broken, click_ack, respond)
    assert click_ack.calls == [{}]
    assert respond.record.called.wait(WAIT)
    assert respond.record.calls[0]["text"] == "⚠️ " + FAULT_TEXT


def test_refuse_acks_the_error(answerer: Answerer) -> None:
    ack = Recorder()
    answerer.refuse(RequestError("bad text"), ack)
    assert ack.calls == [{"text": "⚠️ bad text", "response_type": "ephemeral"}]


def test_without_a_response_url_the_answer_is_dropped(
    answerer: Answerer, caplog: pytest.LogCaptureFixture
) -> None:
    respond = RecordingRespond(response_url=None)
    done = threading.Event()

    def work() -> Reply:
        done.set()
        return Reply("nobody hears this")

    answerer.click(work, Recorder(), respond)
    assert done.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while "no response_url" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)  # log records wake nobody: poll, bounded
    assert "no response_url" in caplog.text
    assert respond.record.calls == []


def test_an_answer_slack_refuses_is_logged(answerer: Answerer, caplog: pytest.LogCaptureFixture) -> None:
    respond = RecordingRespond(status=404)
    answerer.click(lambda: Reply("refused"), Recorder(), respond)
    assert respond.record.called.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while "refused the answer" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)  # log records wake nobody: poll, bounded
    assert "Slack refused the answer on response_url: 404 no_such_url" in caplog.text


def test_a_bug_inside_the_ack_budget_is_still_acked(answerer: Answerer) -> None:
    def broken() -> Reply:
        raise ZeroDivisionError

    ack = Recorder()
    answerer.command(broken, ack, RecordingRespond())
    assert ack.calls == [{"text": f"⚠️ {FAULT_TEXT}", "response_type": "ephemeral"}]


def test_a_command_known_to_be_slow_is_acked_before_its_work_starts(answerer: Answerer) -> None:
    ack, respond = Recorder(), RecordingRespond()
    started = threading.Event()

    def work() -> Reply:
        assert ack.calls, "the work ran before the ack"
        started.set()
        return Reply("3 commits since 1a2b3c4")

    answerer.later(work, ack, respond)
    assert ack.calls == [{"text": WORKING_TEXT, "response_type": "ephemeral"}]
    assert respond.record.called.wait(WAIT) and started.is_set()
    assert respond.record.calls[0]["text"] == "3 commits since 1a2b3c4"
