"""The outbox's order and budgets: urgent posts first, edits apart from the channel's post budget."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.slack.outbox import SlackOutbox
from tests.support.wait import wait_for

CHANNEL = "C0DEPLOYS"


class StubSlack:
    """Answers chat.postMessage and chat.update at once and notes when; ``limit_updates`` 429s edits."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str]] = []  # when, method, text
        self.limit_updates = 0
        self._lock = threading.Lock()
        self._ts = 0

    def chat_postMessage(self, *, channel: str, text: str, **_: Any) -> dict[str, str]:
        with self._lock:
            self._ts += 1
            self.calls.append((time.monotonic(), "post", text))
            return {
                "channel": CHANNEL if channel == "#deploys" else channel,
                "ts": f"1700000000.{self._ts:06d}",
            }

    def chat_update(self, *, text: str, **_: Any) -> dict[str, Any]:
        with self._lock:
            if self.limit_updates:
                self.limit_updates -= 1
                limited = _response(429, {"ok": False, "error": "ratelimited"})
                raise SlackApiError("ratelimited", limited)  # type: ignore[no-untyped-call]
            self.calls.append((time.monotonic(), "update", text))
            return {"ok": True}

    def texts(self) -> list[str]:
        with self._lock:
            return [text for _, _, text in self.calls]

    def at(self, text: str) -> float:
        with self._lock:
            return next(when for when, _, said in self.calls if said == text)


def _response(status: int, data: dict[str, Any]) -> SlackResponse:
    return SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.invalid/api/chat.update",
        req_args={},
        data=data,
        headers={"Retry-After": "30"},
        status_code=status,
    )


def outbox(stub: StubSlack, message: float, channel: float, update: float, burst: int = 1) -> SlackOutbox:
    return SlackOutbox(
        cast(WebClient, stub),
        message_interval=message,
        channel_interval=channel,
        update_interval=update,
        channel_burst=burst,
    )


def test_urgent_posts_go_first_and_edits_do_not_wait_for_the_channels_post_budget() -> None:
    stub = StubSlack()
    box = outbox(stub, message=0, channel=0.4, update=0)
    shown = box.adopt(CHANNEL, "1600000000.000001")
    for n in range(3):
        box.post(CHANNEL, f"progress {n}")
    box.update(shown, "edit")
    box.post(CHANNEL, "root", urgent=True)
    box.start()
    try:
        wait_for(lambda: len(stub.texts()) == 5, 5, "every write")
    finally:
        box.stop(1)
    assert stub.texts()[:2] == ["root", "edit"], "the root first, the edit while posts wait for the channel"
    assert stub.texts()[2:] == ["progress 0", "progress 1", "progress 2"]
    assert stub.at("edit") - stub.at("root") < 0.3
    assert stub.at("progress 0") - stub.at("root") >= 0.35, "posts keep one per channel_interval"


def test_a_channel_takes_a_short_burst_and_keeps_the_last_post_in_hand_for_an_urgent_one() -> None:
    stub = StubSlack()
    box = outbox(stub, message=0, channel=0.5, update=0, burst=3)
    for n in range(4):
        box.post(CHANNEL, f"progress {n}")
    box.start()
    try:
        wait_for(lambda: len(stub.texts()) == 2, 5, "the burst")
        time.sleep(0.2)
        assert stub.texts() == ["progress 0", "progress 1"], "the third post in hand stays for an urgent one"
        box.post(CHANNEL, "root", urgent=True)
        wait_for(lambda: "root" in stub.texts(), 0.3, "the urgent post, at once")
        wait_for(lambda: len(stub.texts()) == 5, 5, "the rest, one per channel_interval")
    finally:
        box.stop(1)
    assert stub.texts()[2:] == ["root", "progress 2", "progress 3"]
    assert stub.at("progress 3") - stub.at("progress 2") >= 0.45
    assert stub.at("progress 2") - stub.at("progress 0") >= 0.95, "two posts in hand were spent"


def test_a_channel_named_by_name_and_by_id_has_one_post_budget() -> None:
    stub = StubSlack()
    box = outbox(stub, message=0, channel=0.5, update=0, burst=1)
    box.start()
    try:
        root = box.post("#deploys", "root", urgent=True)
        assert root.wait(2) is not None and root.channel == CHANNEL
        box.post(CHANNEL, "reply by id", thread=root, urgent=True)
        box.post("#deploys", "another root", urgent=True)
        wait_for(lambda: len(stub.texts()) == 3, 5, "the three posts")
    finally:
        box.stop(1)
    assert stub.at("reply by id") - stub.at("root") >= 0.45
    assert stub.at("another root") - stub.at("reply by id") >= 0.45


def test_edits_of_one_message_coalesce_so_the_backlog_stays_bounded() -> None:
    stub = StubSlack()
    box = outbox(stub, message=0.5, channel=0, update=0)
    shown = [box.adopt(CHANNEL, f"1600000000.00000{n}") for n in range(3)]
    box.start()
    try:
        for round_ in range(200):
            for n, ref in enumerate(shown):
                box.update(ref, f"message {n} state {round_}")
            assert box.backlog <= len(shown)
        wait_for(lambda: box.backlog == 0, 5, "the last edits")
    finally:
        box.stop(1)
    last = {text.split(" state ")[0]: text for text in stub.texts()}
    assert last == {f"message {n}": f"message {n} state 199" for n in range(3)}, "the last edit wins"
    assert len(stub.texts()) <= 3 * 3, "a few writes, not 600"


def test_edits_keep_a_workspace_budget_and_a_429_on_an_edit_parks_edits_only() -> None:
    stub = StubSlack()
    box = outbox(stub, message=0, channel=0, update=0.2)
    shown = [box.adopt(f"C0{n}", "1600000000.000001") for n in range(3)]
    box.start()
    try:
        for n, ref in enumerate(shown):
            box.update(ref, f"edit {n}")
        wait_for(lambda: len(stub.texts()) == 3, 5, "three edits in three channels")
        gaps = [stub.at(f"edit {n + 1}") - stub.at(f"edit {n}") for n in range(2)]
        assert min(gaps) >= 0.18, f"one edit per update_interval across channels: {gaps}"
        stub.limit_updates = 1  # Retry-After: 30
        box.update(shown[0], "parked edit")
        wait_for(lambda: box.backlog == 1 and stub.limit_updates == 0, 5, "the 429")
        box.post(CHANNEL, "a new message")
        wait_for(lambda: "a new message" in stub.texts(), 2, "a post, not held by the edits' 429")
        assert "parked edit" not in stub.texts() and box.backlog == 1
    finally:
        box.stop(0)
