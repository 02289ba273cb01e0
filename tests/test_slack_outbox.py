"""The outbox against the fake Slack: a rate-limit storm longer than any retry budget drops nothing."""

from __future__ import annotations

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
