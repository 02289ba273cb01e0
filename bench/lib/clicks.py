"""Scenario 1's button clicks: Deploy buttons and Roll back buttons, acked under the same load."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from bot.slack.ids import ROLLBACK_ACTION, deploy_action_id, encode_deploy_value, encode_rollback_value
from tests.fakes.slack import FakeSlack

DEPLOY_KIND = "Deploy button"
ROLLBACK_KIND = "Roll back button"


@dataclass(frozen=True)
class Click:
    """One button click of the mix: which kind, its action id and value."""

    kind: str
    action_id: str
    value: str


def rollback_values(db: Path, repo: str, envs: tuple[str, ...]) -> list[str]:
    """The Roll back buttons the robot's roots show now: one per environment that has a target.

    Read from the robot's own store, so each click names a real target (it queues a rollback, or
    is deduped or refused as out of date, like a real burst of clicks on one button).
    """
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{db}", upgrade=False)
    try:
        values = []
        for env in envs:
            choice = store.rollback_choice(repo, env)
            if choice.current is not None and choice.target is not None:
                values.append(encode_rollback_value(repo, env, choice.target.sha, choice.current.id))
        return values
    finally:
        store.close()


def click_mix(
    count: int, repo: str, envs: tuple[str, ...], shas: list[str], rollbacks: list[str], seed: int = 11
) -> list[Click]:
    """``count`` clicks, half Deploy buttons (announced SHAs) and half Roll back buttons, shuffled."""
    rng = random.Random(seed)
    clicks = []
    for n in range(count):
        env = envs[n % len(envs)]
        if n % 2 and rollbacks:
            clicks.append(Click(ROLLBACK_KIND, ROLLBACK_ACTION, rollbacks[n % len(rollbacks)]))
        else:
            value = encode_deploy_value(repo, env, shas[n % len(shas)])
            clicks.append(Click(DEPLOY_KIND, deploy_action_id(env), value))
    rng.shuffle(clicks)
    return clicks


def send_clicks(
    slack: FakeSlack, clicks: list[Click], user: str, channel: str, timeout: float
) -> list[tuple[str, float | None]]:
    """Send every click at once; (kind, ack latency as the fake measured it, None if not acked)."""
    sent = [
        (click, slack.send_block_action(click.action_id, click.value, user_id=user, channel_id=channel))
        for click in clicks
    ]
    deadline = time.monotonic() + timeout
    samples: list[tuple[str, float | None]] = []
    for click, envelope in sent:
        try:
            ack = slack.wait_ack(envelope, timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            samples.append((click.kind, None))
            continue
        samples.append((click.kind, ack.latency))
    return samples
