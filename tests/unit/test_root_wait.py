"""A deploy waits for its Slack root a short, bounded while: the payload names it when it is in time."""

from __future__ import annotations

import threading
import time

from bot.models import DeployState
from bot.pipeline import ROOT_WAIT_SECONDS
from tests.unit.conftest import WorldFactory

CHANNEL = "C0DEPLOYS"


def test_a_root_still_queued_holds_the_deploy_only_briefly(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request(channel=CHANNEL)
    assert world.store.claim_root(deploy.id, 30) is not None  # claimed; its post waits in Slack's queue
    began = time.monotonic()
    final = world.run(deploy.id)
    took = time.monotonic() - began
    assert final.state is DeployState.SUCCEEDED
    (deployment,) = world.github.deployments
    assert deployment.payload["slack_channel"] == CHANNEL and deployment.payload["slack_thread_ts"] is None
    assert ROOT_WAIT_SECONDS <= 1.0 and took < ROOT_WAIT_SECONDS + 0.5, f"held {took:.2f} s"


def test_a_root_posted_within_the_wait_is_named_in_the_payload(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request(channel=CHANNEL)
    token = world.store.claim_root(deploy.id, 30)
    assert token is not None

    def post_soon() -> None:
        time.sleep(ROOT_WAIT_SECONDS / 4)
        world.store.record_root(deploy.id, token, CHANNEL, "1700000000.000100")

    poster = threading.Thread(target=post_soon)
    poster.start()
    world.run(deploy.id)
    poster.join()
    (deployment,) = world.github.deployments
    assert deployment.payload["slack_thread_ts"] == "1700000000.000100"
