"""`robot run` end to end: real Bolt + SocketModeHandler + WebClient against the fake Slack and GitHub."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.models import DeployState
from bot.slack.ids import CANCEL_ACTION, deploy_action_id, encode_deploy_value
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.support.harness import TOKEN, environ, make_git_repo, write_config
from tests.support.rig import CHANNEL, RobotRig, slack_section
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # `robot run` against the fake Slack and GitHub

PY = sys.executable
WAIT = 20.0


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


def _uploaded(slack: FakeSlack) -> bool:
    """A file was announced and its bytes have landed (the upload is two requests)."""
    return any(f.content is not None for f in slack.files.values())


def _text(messages: list[Any]) -> str:
    """Every block of the messages as one searchable string."""
    return json.dumps([m.blocks for m in messages], ensure_ascii=False)


@pytest.fixture
def rig_for(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[Any]:
    rigs: list[RobotRig] = []

    def make(commands: list[list[str]], env: dict[str, str] | None = None, **repo: Any) -> RobotRig:
        github.add_repo("acme/api")
        checkout = make_git_repo(tmp_path / "checkout")
        envs = repo.pop("environments", None) or {
            "production": {"folder": str(checkout), "commands": commands}
        }
        repos = {"acme/api": {"channel": CHANNEL, "environments": envs, **repo}}
        rig = RobotRig(tmp_path, github, slack, repos, env=env, checkout=checkout)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()


def test_slash_deploy_acks_posts_root_and_thread_then_succeeds(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for([["echo", "hello"], [PY, "-c", "print('two')"]])
    sha = github.head("acme/api", "main")
    answer = rig.command("acme/api")
    assert answer == f"Deploy #1 queued: acme/api@main ({sha[:7]}) → production"
    deploy = rig.final(1)
    assert deploy.state is DeployState.SUCCEEDED, deploy.error
    root = rig.wait_root_text(1, "succeeded")
    blocks = json.dumps(root.blocks)
    assert "Deploy #1" in blocks and "<@U0ALICE01>" in blocks and sha[:7] in blocks
    assert CANCEL_ACTION not in blocks  # no Cancel once final
    wait_for(lambda: "✓ 2/2" in _text(rig.thread(1)), WAIT, "progress to show both steps done")
    (progress,) = rig.thread(1)
    assert "✓ 1/2 `echo hello`" in _text([progress])
    statuses = github.deployments("acme/api")[0].statuses
    assert statuses[-1]["body"]["state"] == "success"
    assert statuses[-1]["body"]["log_url"].startswith("http")
    assert rig.slack.calls_to("chat.getPermalink")


def test_failing_step_shows_tail_and_uploads_log(rig_for: Any) -> None:
    rig = rig_for([[PY, "-c", "import sys; [print('line', i) for i in range(100)]; sys.exit(2)"]])
    rig.command("api")
    deploy = rig.final(1)
    assert deploy.state is DeployState.FAILED
    rig.wait_root_text(1, "failed")
    wait_for(lambda: _uploaded(rig.slack), WAIT, "log upload")
    (upload,) = rig.slack.files.values()
    assert b"line 0" in upload.content and b"line 99" in upload.content
    wait_for(lambda: "line 99" in _text(rig.thread(1)), WAIT, "tail in progress")
    progress = _text(rig.thread(1))
    assert "line 99" in progress and "line 60" in progress and "line 5\\n" not in progress
    assert "exited 2" in progress


@pytest.mark.parametrize(
    ("text", "user", "expected"),
    [
        ("acme/nope", "U0ALICE01", "Unknown repo `acme/nope`"),
        (
            "acme/api to prod",
            "U0ALICE01",
            "Unknown environment `prod` for acme/api. Environments: production.",
        ),
        ("acme/api to", "U0ALICE01", "needs an environment after `to`"),
        ("acme/api@$(id)", "U0ALICE01", "not a valid ref"),
        ("acme/api", "U0MALLORY", "You may not deploy acme/api"),
        ("acme/api!", "U0ALICE01", "You may not force a deploy of acme/api"),
    ],
)
def test_refusals_are_ephemeral_and_queue_nothing(rig_for: Any, text: str, user: str, expected: str) -> None:
    rig = rig_for([["true"]], deployers=["U0ALICE01"])
    answer = rig.command(text, user=user)
    assert expected in answer and answer.startswith("⚠️")
    assert rig.store.list_deploys() == []
    assert rig.slack.calls_to("chat.postMessage") == []


def test_locked_environment_refuses_with_who_and_why(rig_for: Any) -> None:
    rig = rig_for([["true"]])
    assert "locked" in rig.command("lock acme/api : db migration", user="U0BOB0001")
    answer = rig.command("acme/api")
    assert "locked by slack:U0BOB0001" in answer and "db migration" in answer
    assert "unlocked" in rig.command("unlock acme/api")
    assert "queued" in rig.command("acme/api")


def test_cancel_by_button_and_by_command(rig_for: Any, github: FakeGitHub) -> None:
    started = "started"
    rig = rig_for([["touch", started], [PY, "-c", "import time; time.sleep(60)"]])
    rig.command("acme/api")
    wait_for(lambda: (rig.checkout / started).exists(), WAIT, "deploy to start")
    github.push("acme/api", "main")
    assert "Deploy #2 queued" in rig.command("acme/api")
    assert "cancelled before it started" in rig.command("cancel 2")
    root = rig.wait_root_text(1, CANCEL_ACTION)
    answer = rig.click(CANCEL_ACTION, "1", message_ts=root.ts)
    assert "Cancelling deploy #1" in answer
    assert rig.final(1).state is DeployState.CANCELLED
    rig.wait_root_text(1, "cancelled")
    assert rig.store.get_deploy(2).state is DeployState.CANCELLED


def test_double_click_on_deploy_button_starts_one_deploy(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for([[PY, "-c", "import time; time.sleep(1)"]])
    sha = github.head("acme/api", "main")
    value = encode_deploy_value("acme/api", "production", sha)
    first = rig.click(deploy_action_id("production"), value)
    second = rig.click(deploy_action_id("production"), value, user="U0BOB0001")
    assert "Deploy #1 queued" in first
    assert "Deploy #1" in second and "already" in second
    assert [d.id for d in rig.store.list_deploys()] == [1]
    assert rig.final(1).requested_by == "slack:U0ALICE01"


def test_tampered_button_value_is_refused(rig_for: Any) -> None:
    rig = rig_for([["true"]])
    answer = rig.click(
        deploy_action_id("production"), '{"repo": "acme/api", "env": "production", "sha": "main"}'
    )
    assert answer.startswith("⚠️")
    assert rig.store.list_deploys() == []


def test_status_shows_running_and_queued(rig_for: Any, github: FakeGitHub, tmp_path: Path) -> None:
    step = [PY, "-c", "import time; time.sleep(60)"]
    checkout = tmp_path / "checkout"
    envs = {
        "staging": {"folder": str(checkout), "commands": [step]},
        "production": {"folder": str(checkout), "commands": [step]},
    }
    rig = rig_for([], environments=envs)
    rig.command("acme/api to staging")
    rig.command("acme/api to production")
    github.push("acme/api", "main")
    rig.command("acme/api to staging")
    wait_for(
        lambda: len([d for d in rig.store.list_deploys() if d.state is DeployState.RUNNING]) == 2,
        WAIT,
        "two running",
    )
    envelope = rig.slack.send_slash_command(
        command="/deploy-status", text="", user_id="U0ALICE01", channel_id="C0HERE"
    )
    payload = rig.slack.wait_ack(envelope, timeout=WAIT).payload or {}
    body = json.dumps(payload.get("blocks"), ensure_ascii=False)
    assert "*Running*" in body and "#1" in body and "#2" in body
    assert "*Queued*" in body and "#3" in body and "in line" in body


def test_429_storm_loses_no_final_state(rig_for: Any, slack: FakeSlack) -> None:
    rig = rig_for([[PY, "-c", "import time; [print(i) or time.sleep(0.01) for i in range(100)]"]])
    rig.command("acme/api")
    wait_for(
        lambda: rig.store.get_deploy(1) is not None and rig.store.get_deploy(1).message_ts is not None,
        WAIT,
        "root",
    )
    slack.rate_limit("chat.update", seconds=4, retry_after=1)
    slack.rate_limit("chat.postMessage", seconds=4, retry_after=1)
    assert rig.final(1).state is DeployState.SUCCEEDED
    rig.wait_root_text(1, "succeeded")
    assert slack.served_429 > 0


def test_socket_drop_mid_deploy_reconnects_and_messages_arrive(rig_for: Any, slack: FakeSlack) -> None:
    rig = rig_for([["touch", "started"], [PY, "-c", "import time; time.sleep(2)"]])
    rig.command("acme/api")
    wait_for(lambda: (rig.checkout / "started").exists(), WAIT, "deploy to start")
    before = slack.total_connections
    slack.hard_close_all()
    slack.wait_connected(timeout=WAIT, total=before + 1)
    assert rig.final(1).state is DeployState.SUCCEEDED
    rig.wait_root_text(1, "succeeded")
    assert "Deploy #2 queued" in rig.command("acme/api")  # the new socket answers commands


def test_build_output_is_escaped_and_redacted(rig_for: Any) -> None:
    leak = f"print('<!channel> <@U0BOSS001> & {TOKEN}'); raise SystemExit(1)"
    rig = rig_for([[PY, "-c", leak]])
    rig.command("acme/api")
    assert rig.final(1).state is DeployState.FAILED
    wait_for(lambda: "channel" in _text(rig.thread(1)), WAIT, "tail")
    everything = json.dumps([c.args for c in rig.slack.calls], ensure_ascii=False)
    assert "<!channel>" not in everything and "<@U0BOSS001>" not in everything
    assert "&lt;!channel&gt;" in everything
    assert TOKEN not in everything
    wait_for(lambda: _uploaded(rig.slack), WAIT, "log upload")
    (upload,) = rig.slack.files.values()
    assert TOKEN.encode() not in upload.content


def test_robot_run_connects_and_exits_zero_on_sigterm(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    import signal
    import subprocess

    from tests.support.harness import ROOT

    github.add_repo("acme/api")
    checkout = make_git_repo(tmp_path / "checkout")
    config = write_config(
        tmp_path,
        github.url,
        {"acme/api": {"environments": {"production": {"folder": str(checkout), "commands": [["true"]]}}}},
        slack=slack_section(slack),
    )
    env = environ(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    proc = subprocess.Popen(
        [PY, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        slack.wait_connected(timeout=WAIT)
        envelope = slack.send_slash_command(command="/deploy", text="acme/api", user_id="U0ALICE01")
        assert "Deploy #1 queued" in str((slack.wait_ack(envelope, timeout=WAIT).payload or {}).get("text"))
        proc.send_signal(signal.SIGTERM)
        # DESIGN: `robot run` exits within 10 s of SIGTERM; a hang past that fails here.
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert BOT_TOKEN not in err and APP_TOKEN not in err and TOKEN not in err


def test_deployers_may_be_a_user_group(rig_for: Any, slack: FakeSlack) -> None:
    slack.set_usergroup("S0RELEASE", ["U0CAROL01"])
    rig = rig_for([["true"]], deployers=["S0RELEASE"])
    refused = rig.command("acme/api", user="U0MALLORY")
    assert "You may not deploy acme/api" in refused and "S0RELEASE" in refused
    assert "Deploy #1 queued" in rig.command("acme/api", user="U0CAROL01")
    assert rig.final(1).requested_by == "slack:U0CAROL01"


def test_slack_disconnect_message_reconnects(rig_for: Any, slack: FakeSlack) -> None:
    rig = rig_for([["true"]])
    before = slack.total_connections
    slack.disconnect_all()
    slack.wait_connected(timeout=WAIT, total=before + 1)
    assert "Deploy #1 queued" in rig.command("acme/api")


def test_merge_is_announced_with_buttons_and_a_click_deploys_it(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for([["true"]], required_contexts=["ci/test"])
    wait_for(lambda: rig.store.get_head("acme/api") is not None, WAIT, "first poll to record the head")
    assert rig.slack.messages(CHANNEL) == []  # first sight announces nothing
    sha = github.push("acme/api", "main", message="Merge pull request #12\n\nFix <login>")
    github.add_pull_for_commit("acme/api", sha, 12, "Fix <login>", user="alice", merged_by="bob")
    github.set_status("acme/api", sha, "ci/test", "success")
    wait_for(lambda: len(rig.slack.messages(CHANNEL)) == 1, WAIT, "the announcement")
    (announcement,) = rig.slack.messages(CHANNEL)
    body = json.dumps(announcement.blocks, ensure_ascii=False)
    assert "#12" in body and "Fix &lt;login&gt;" in body and "bob" in body and sha[:7] in body
    assert "CI: ✅" in body and "Deploy to production" in body
    value = encode_deploy_value("acme/api", "production", sha)
    buttons = [e for b in announcement.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(deploy_action_id("production"), value)]
    github.push("acme/api", "main")  # the branch moves on; the button still deploys what was announced
    answer = rig.click(deploy_action_id("production"), value, message_ts=announcement.ts)
    assert "Deploy #1 queued" in answer and sha[:7] in answer
    final = rig.final(1)
    assert (final.state, final.sha, final.channel) == (DeployState.SUCCEEDED, sha, CHANNEL)


def test_on_merge_deploy_runs_in_the_announcement_thread(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for([["echo", "deployed"]], on_merge="deploy", auto_deploy="production")
    wait_for(lambda: rig.store.get_head("acme/api") is not None, WAIT, "first poll")
    sha = github.push("acme/api", "main", message="Merge pull request #3\n\nShip")
    github.add_pull_for_commit("acme/api", sha, 3, "Ship", user="alice", merged_by="bob")
    wait_for(lambda: bool(rig.store.list_deploys()), WAIT, "the auto-deploy")
    (deploy,) = rig.store.list_deploys()
    final = rig.final(deploy.id)
    assert (final.state, final.sha, final.requested_by) == (DeployState.SUCCEEDED, sha, "github:bob")
    (announcement,) = [m for m in rig.slack.messages(CHANNEL) if m.thread_ts in (None, m.ts)]
    assert final.message_ts == announcement.ts
    assert "Auto-deploying to production" in json.dumps(announcement.blocks, ensure_ascii=False)

    def thread() -> str:
        return _text(rig.slack.thread(CHANNEL, announcement.ts))

    wait_for(lambda: "succeeded" in thread() and "✓ 1/1" in thread(), WAIT, "root and progress in thread")
    assert f"Deploy #{final.id}" in thread()
    statuses = github.deployments("acme/api")[0].statuses
    assert statuses[-1]["body"]["log_url"].startswith("http")
