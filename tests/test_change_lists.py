"""Change lists as users meet them: the root of each deploy, `/deploy changes`, `robot changes`,
`robot deploy`; against the fake GitHub, counting its compare calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.models import DeployState
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import TOKEN, make_git_repo, run_cli, write_config
from tests.support.rig import CHANNEL, RobotRig, root_text

pytestmark = pytest.mark.slow  # `robot run` and `robot` processes against the fake Slack and GitHub

REPO = "acme/api"
HOSTILE = f"<!channel> *bold* <@U123> & {TOKEN}"


@pytest.fixture
def rig(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[RobotRig]:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    envs = {"production": {"folder": str(checkout), "commands": [["true"]]}}
    # on_merge: ignore: the merge poller compares nothing, so every compare counted is a change list's.
    repos = {REPO: {"channel": CHANNEL, "environments": envs, "on_merge": "ignore"}}
    with RobotRig(tmp_path, github, slack, repos) as made:
        yield made


def compares(github: FakeGitHub) -> int:
    return github.count("GET", "/compare/")


def deployed(rig: RobotRig, text: str, deploy_id: int) -> str:
    """Deploy through `/deploy text`; the root's blocks once it succeeded and shows its change list."""
    assert rig.command(text).startswith(f"Deploy #{deploy_id} queued")
    assert rig.final(deploy_id).state is DeployState.SUCCEEDED
    rig.wait_root_text(deploy_id, "succeeded")
    rig.wait_root_text(deploy_id, "Changes: ")
    return root_text(rig.slack, rig.deploy(deploy_id))


def test_each_root_says_what_it_ships_with_one_compare_per_sha_pair(
    rig: RobotRig, github: FakeGitHub
) -> None:
    first = github.head(REPO, "main")
    root = deployed(rig, REPO, 1)
    assert "Changes: first deploy to production" in root and compares(github) == 0

    github.push(REPO, "main", message="Fix login (#123)\n\nThe long story.", author="alice")
    github.push(REPO, "main", message=HOSTILE, author=None, author_name="<!here> Carol")
    head = github.push(REPO, "main", message="Bump deps", author="bob")
    root = deployed(rig, REPO, 2)
    assert f"Changes: 3 commits since {first[:7]} (deploy #1, " in root
    assert "Fix login (#123) · alice" in root and "Bump deps · bob" in root
    assert root.index("Bump deps") < root.index("Fix login"), "newest first"
    assert f"<{github.url}/{REPO}/compare/{first}...{head}|Compare on GitHub>" in root
    # GitHub's text never pings, formats or leaks: escaped, in a code span, the token masked.
    assert "<!channel>" not in root and "<@U123>" not in root and "<!here>" not in root
    assert "`&lt;!channel&gt; *bold* &lt;@U123&gt; &amp; ••••••`" in root and TOKEN not in root
    assert "&lt;!here&gt; Carol" in root
    assert compares(github) == 1

    root = deployed(rig, f"{REPO}@{first[:12]}", 3)
    assert f"⏪ goes back 3 commits from {head[:7]} (deploy #2, " in root

    root = deployed(rig, f"{REPO}@{first[:12]}", 4)
    assert f"redeploys {first[:7]} (deploy #3, " in root
    assert compares(github) == 2, "a redeploy compares nothing"

    root = deployed(rig, f"{REPO}@{head[:12]}", 5)
    assert f"Changes: 3 commits since {first[:7]} (deploy #4, " in root
    assert compares(github) == 2, "the same SHA pair as deploy #2: no GitHub call"

    rewritten = github.force_push(REPO, "main", first, "Rewritten history")
    root = deployed(rig, REPO, 6)
    assert f"diverged from {head[:7]} (deploy #5, " in root
    assert "1 commit ahead, 3 commits behind (force push)" in root and "Rewritten history" in root
    assert compares(github) == 3

    changes = rig.store.get_changes(2)
    assert changes is not None and [c.author for c in changes.commits] == ["alice", "<!here> Carol", "bob"]
    assert all(c.committed_at is not None for c in changes.commits), "kept for lead time"
    assert changes.commits[0].pull_number == 123
    latest = rig.store.get_changes(6)
    assert latest is not None and latest.head_sha == rewritten


def test_a_failing_compare_never_fails_the_deploy(rig: RobotRig, github: FakeGitHub) -> None:
    deployed(rig, REPO, 1)
    github.push(REPO, "main", message="Change one")
    github.fail_next(20, 502, path_contains="/compare/")
    root = deployed(rig, REPO, 2)
    assert "Changes: unavailable (GitHub 502" in root
    github.clear_faults()
    github.force_push(REPO, "main", None, "A new root")
    root = deployed(rig, REPO, 3)
    assert "Changes: unavailable (no common history with" in root


def test_deploy_changes_answers_after_its_ack_and_deploys_nothing(rig: RobotRig, github: FakeGitHub) -> None:
    first = github.head(REPO, "main")
    deployed(rig, REPO, 1)
    github.push(REPO, "main", message=f"Add {HOSTILE}", author="alice")
    head = github.push(REPO, "main", message="Fix login (#123)", author="bob")

    def preview() -> str:
        envelope = rig.send_command(f"changes {REPO} to production")
        ack = rig.slack.wait_ack(envelope, timeout=20)
        assert (ack.payload or {}).get("text", "").startswith("⏳"), "acked before GitHub is asked"
        answer = rig.slack.wait_response(envelope, timeout=20)
        return json.dumps(answer, ensure_ascii=False)

    shown = preview()
    assert f"{REPO}@main ({head[:7]}) → production" in shown
    assert f"Changes: 2 commits since {first[:7]} (deploy #1, " in shown
    assert "Fix login (#123) · bob" in shown and TOKEN not in shown and "<!channel>" not in shown
    assert compares(github) == 1
    assert "2 commits since" in preview() and compares(github) == 1, "a repeat costs no compare"
    assert [d.id for d in rig.store.list_deploys()] == [1], "nothing was deployed"


def test_robot_changes_and_robot_deploy_print_the_summary(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    envs = {"production": {"folder": str(checkout), "commands": [["true"]]}}
    config = write_config(tmp_path, github.url, {REPO: {"environments": envs}})
    first = run_cli(config, "deploy", REPO)
    assert first.returncode == 0, first.stderr
    assert "Changes: first deploy to production" in first.stdout
    assert first.stdout.index("Changes:") < first.stdout.index("▶ step 1/1")

    github.push(REPO, "main", message=f"Colour \x1b[31mred\x1b[0m {TOKEN}", author="alice")
    preview = run_cli(config, "changes", "api")
    assert preview.returncode == 0, preview.stderr
    assert "Changes: 1 commit since" in preview.stdout and "(deploy #1, " in preview.stdout
    assert "Colour red ••••••" in preview.stdout
    assert "\x1b" not in preview.stdout and TOKEN not in preview.stdout
    assert f"Compare: {github.url}/{REPO}/compare/" in preview.stdout
    assert compares(github) == 1

    second = run_cli(config, "deploy", REPO)
    assert second.returncode == 0, second.stderr
    assert "Changes: 1 commit since" in second.stdout and "Colour red ••••••" in second.stdout
    assert compares(github) == 1, "robot changes cached the pair for robot deploy"

    unknown = run_cli(config, "changes", "acme/nope")
    assert unknown.returncode == 2 and "acme/nope" in unknown.stderr
