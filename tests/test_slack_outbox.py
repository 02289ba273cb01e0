"""The outbox against the fake Slack: a rate-limit storm longer than any retry budget drops nothing."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.slack.outbox import SlackOutbox
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # the real WebClient over loopback HTTP

CHANNEL = "C0DEPLOYS"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_a_final_update_survives_more_429s_than_the_outbox_has_tries(slack: FakeSlack) -> None:
    outbox = SlackOutbox(
        WebClient(base_url=slack.api_url, token=BOT_TOKEN, timeout=5),
        message_interval=0,
        channel_interval=0,
        max_tries=5,
    )
    outbox.start()
    try:
        ref = outbox.post(CHANNEL, "🚀 Deploy #1 running")
        assert ref.wait(10) is not None
        # Retry-After: 0 keeps the storm fast; it is 40 answers long, eight times the try budget.
        slack.rate_limit_next("chat.update", times=40, retry_after=0)
        outbox.update(ref, "✅ Deploy #1 succeeded")
        wait_for(
            lambda: slack.message(CHANNEL, ref.ts or "").text == "✅ Deploy #1 succeeded", 20, "the update"
        )
        assert slack.served_429 >= 40
    finally:
        outbox.stop(2)


def test_home_publishes_are_coalesced_paced_per_user_and_rendered_when_sent(slack: FakeSlack) -> None:
    outbox = SlackOutbox(
        WebClient(base_url=slack.api_url, token=BOT_TOKEN, timeout=5), message_interval=0, channel_interval=0
    )
    renders: list[int] = []

    def render(n: int) -> dict[str, object]:
        renders.append(n)
        return {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"v{n}"}}]}

    def broken() -> dict[str, object]:
        raise RuntimeError("the store is gone")

    outbox.view_published("U1", 0.6)  # U1 just opened Home: the next publish waits
    outbox.start()
    try:
        for n in range(5):  # a burst: one publish covers it, rendered at send time
            outbox.publish_view("U1", functools.partial(render, n), 0.6)
        outbox.publish_view("U2", broken, 0.6)  # a failed render costs that publish only
        outbox.publish_view("U3", lambda: render(99), 0.6)
        wait_for(lambda: len(slack.published()) == 2, 10, "U1 and U3 published")
        assert renders == [99, 0] and slack.home("U1")["blocks"][0]["text"]["text"] == "v0"
        first = slack.published("U1")[0].at
        outbox.publish_view("U1", lambda: render(7), 0.6)
        wait_for(lambda: len(slack.published("U1")) == 2, 10, "U1's next publish")
        assert slack.published("U1")[1].at - first >= 0.55
        assert slack.published("U2") == []
    finally:
        outbox.stop(2)
