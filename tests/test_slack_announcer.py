"""The announcer against the fake Slack: a slow post keeps the head's claim, a refused one gives it back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.errors import BotError
from bot.models import GateResult, MergeNews
from bot.slack.announcer import SlackAnnouncer
from bot.slack.outbox import SlackOutbox
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # the real WebClient over loopback HTTP

CHANNEL = "C0DEPLOYS"
NEWS = MergeNews(
    repo="acme/api",
    branch="main",
    sha="a" * 40,
    previous_sha="b" * 40,
    changes=(),
    total_commits=1,
    truncated=False,
    forced=False,
    ci=GateResult(()),
    environments=("production",),
    auto_deploy_env=None,
    channel=CHANNEL,
    commit_url="https://github.test/acme/api/commit/" + "a" * 40,
)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def outbox(slack: FakeSlack) -> Iterator[SlackOutbox]:
    made = SlackOutbox(
        WebClient(base_url=slack.api_url, token=BOT_TOKEN, timeout=10), message_interval=0, channel_interval=0
    )
    made.start()
    yield made
    made.stop(2)


def posts(slack: FakeSlack) -> int:
    return sum(1 for call in slack.calls if call.method == "chat.postMessage")


def test_an_announcement_slower_than_the_wait_is_not_refused_and_goes_out_once(
    slack: FakeSlack, outbox: SlackOutbox
) -> None:
    # Slack's pacing can hold a post longer than the poller waits: the post is still coming,
    # so raising (and giving the claim back for a second announcement) would be wrong.
    slack.delay_next("chat.postMessage", 1.0)
    announcer = SlackAnnouncer(outbox, {"acme/api": CHANNEL}, post_wait=0.1)
    assert announcer.announce(NEWS) is None
    wait_for(lambda: posts(slack) == 1, 10, "the announcement")
    assert posts(slack) == 1


def test_an_announcement_slack_refuses_gives_the_claim_back(slack: FakeSlack, outbox: SlackOutbox) -> None:
    slack.fail_next("chat.postMessage", "channel_not_found")
    announcer = SlackAnnouncer(outbox, {"acme/api": CHANNEL}, post_wait=5)
    with pytest.raises(BotError, match="Slack did not accept the announcement"):
        announcer.announce(NEWS)
