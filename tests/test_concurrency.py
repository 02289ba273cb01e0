"""Many requests at once through the whole robot and the fake Slack socket: no double deploy, FIFO per env."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.models import Deploy, DeployState
from bot.slack.ids import deploy_action_id, encode_deploy_value
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.rig import CHANNEL, WAIT, RobotRig, runs, step_command
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # a whole robot on the loopback fakes, under concurrency

ENVS = ("staging", "production")
ALREADY = re.compile(r"Deploy #1 of .* is already (queued|running); not starting another\.")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


def at_once(count: int, send: Callable[[int], str]) -> list[str]:
    """``send(i)`` for each i in range(count), from as many threads released together."""
    gate = threading.Barrier(count)
    results = [""] * count

    def one(i: int) -> None:
        gate.wait(timeout=WAIT)
        results[i] = send(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert all(results), "every request should have been sent"
    return results


def test_twenty_clicks_on_one_deploy_button_start_one_deploy(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    github.add_repo("acme/api")
    checkout = make_git_repo(tmp_path / "checkout")
    (checkout / "hold").touch()  # the deploy stays running until every click is answered
    envs = {"production": {"folder": str(checkout), "commands": [step_command(checkout)]}}
    sha = github.head("acme/api", "main")
    value = encode_deploy_value("acme/api", "production", sha)
    action = deploy_action_id("production")
    users = [f"U0CLICK{i:02d}" for i in range(20)]
    repos = {"acme/api": {"channel": CHANNEL, "environments": envs}}
    with RobotRig(tmp_path, github, slack, repos) as rig:
        envelopes = at_once(len(users), lambda i: rig.send_click(action, value, users[i]))
        replies = [rig.click_reply(envelope) for envelope in envelopes]
        queued = [i for i, reply in enumerate(replies) if "Deploy #1 queued" in reply]
        assert len(queued) == 1, replies
        others = [reply for i, reply in enumerate(replies) if i != queued[0]]
        assert all(ALREADY.search(reply) for reply in others), others
        assert [d.id for d in rig.store.list_deploys()] == [1]
        (checkout / "hold").unlink()
        deploy = rig.agree(1, DeployState.SUCCEEDED, "success")
    assert deploy.requested_by == f"slack:{users[queued[0]]}" and deploy.sha == sha
    assert len(github.deployments("acme/api")) == 1
    assert runs(checkout) == ["start 1", "end 1"]


def test_fifty_deploys_for_twenty_environments_run_one_at_a_time_each_in_order(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    repos: dict[str, Any] = {}
    folders: dict[tuple[str, str], Path] = {}
    requests: list[tuple[str, str, str]] = []  # (repo, env, sha) in the order they are sent
    for r in range(10):
        repo = f"acme/r{r}"
        github.add_repo(repo)
        envs = {}
        for env in ENVS:
            folders[repo, env] = folder = tmp_path / f"r{r}-{env}"
            folder.mkdir()
            envs[env] = {"folder": str(folder), "commands": [step_command(folder, sleep=0.2)]}
        repos[repo] = {"channel": f"C0R{r}", "environments": envs}
        # Five distinct commits (identical requests are deduplicated): 3 to staging, 2 to production.
        requests += [(repo, ENVS[j % 2], github.push(repo, "main")) for j in range(5)]
    asked = {sha: (repo, env) for repo, env, sha in requests}
    texts = [f"{repo}@{sha} to {env}" for repo, env, sha in requests]
    workers = {"workers": 20, "ci_poll_interval": 0.2, "kill_grace": 1}
    quick = {"channel_interval": 0.02, "update_interval": 0.02}
    with RobotRig(tmp_path, github, slack, repos, deploys=workers, slack_settings=quick) as rig:
        with RunningSampler(rig) as sampler:
            envelopes = at_once(len(texts), lambda i: rig.send_command(texts[i]))
            replies = [rig.reply(envelope) for envelope in envelopes]
            wait_for(lambda: len(done(rig)) == 50, 60, "all 50 deploys to succeed")
        for (repo, env, sha), reply in zip(requests, replies, strict=True):
            assert re.search(rf"Deploy #\d+ queued: {repo}@{sha} \({sha[:7]}\) → {env}", reply), reply
        for deploy_id in range(1, 51):
            rig.agree(deploy_id, DeployState.SUCCEEDED, "success")
        deploys = rig.store.list_deploys(limit=100)

    assert sampler.most_at_once > 1, "deploys to different environments should run in parallel"
    assert sampler.most_per_target == 1, "never two running deploys for one repo + env"
    for (repo, env), folder in folders.items():
        mine = [d for d in deploys if (d.repo, d.env) == (repo, env)]
        assert len(mine) == (3 if env == "staging" else 2)
        assert all(asked[d.sha] == (repo, env) for d in mine)
        order = [d.id for d in sorted(mine, key=started)]
        assert order == sorted(order), f"{repo} {env} ran out of queue order: {order}"
        # The step itself saw one deploy at a time, each exactly once, in queue order.
        assert runs(folder) == [f"{what} {i}" for i in order for what in ("start", "end")]
    assert sum(len(github.deployments(repo)) for repo in repos) == 50


def done(rig: RobotRig) -> list[Deploy]:
    return rig.store.list_deploys(states=[DeployState.SUCCEEDED], limit=100)


def started(deploy: Deploy) -> datetime:
    assert deploy.started_at is not None
    return deploy.started_at


class RunningSampler:
    """Reads the running deploys from the store every 10 ms: the most at once, per repo+env and in all."""

    def __init__(self, rig: RobotRig) -> None:
        self._rig = rig
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.most_per_target = 0
        self.most_at_once = 0

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    def _run(self) -> None:
        for _ in range(int(120 / 0.01)):  # bounded: a test is over in 120 s
            if self._stop.wait(0.01):
                return
            running = self._rig.store.list_deploys(states=[DeployState.RUNNING], limit=200)
            self.most_at_once = max(self.most_at_once, len(running))
            per_target = Counter((d.repo, d.env) for d in running)
            self.most_per_target = max([self.most_per_target, *per_target.values()])
