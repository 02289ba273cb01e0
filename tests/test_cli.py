"""`robot` as a user runs it: a real process, exit codes, one-line errors, live output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from bot.config import load_settings
from bot.models import DeployRequest, DeployState, Source
from bot.slack.access import BOT_SCOPES
from bot.store import SqlStore
from bot.store.engine import make_engine
from bot.store.schema import deploys
from tests.fakes.github import FakeGitHub
from tests.fakes.memory import RecordingObserver
from tests.fakes.slack import FakeSlack
from tests.support.harness import (
    ROOT,
    TOKEN,
    environ,
    make_git_repo,
    run_cli,
    slack_user,
    start_core,
    write_config,
)
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # the robot CLI as a real process against the fake GitHub

PY = sys.executable


@pytest.fixture
def setup(tmp_path: Path, github: FakeGitHub) -> Any:
    def make(commands: list[list[str]], **repo: Any) -> Path:
        github.add_repo("acme/api")
        checkout = make_git_repo(tmp_path / "checkout")
        envs = {"production": {"folder": str(checkout), "commands": commands}}
        return write_config(tmp_path, github.url, {"acme/api": {"environments": envs, **repo}})

    return make


def recorded(config: Path) -> list[Any]:
    store = SqlStore.from_url(load_settings(config, environ()).state.url)
    try:
        return store.list_deploys()
    finally:
        store.close()


def test_deploy_shows_steps_and_output_and_exits_zero(setup: Any, github: FakeGitHub) -> None:
    config = setup([["echo", "hello from {repo}"], [PY, "-c", "print('second')"]])
    done = run_cli(config, "deploy", "acme/api@main")
    assert done.returncode == 0, done.stderr
    sha = github.head("acme/api", "main")
    out = done.stdout
    assert f"Deploy #1 queued: acme/api@main ({sha[:7]}) → production" in out
    assert "▶ step 1/2: echo hello from {repo}" in out
    assert "│ hello from acme/api" in out
    assert "│ second" in out
    assert "✅ succeeded" in out
    assert out.index("hello from acme/api") < out.index("second") < out.index("✅ succeeded")
    assert done.stderr == ""


def test_failed_deploy_exits_one_and_says_why(setup: Any) -> None:
    config = setup([[PY, "-c", "print('bad'); raise SystemExit(4)"]])
    done = run_cli(config, "deploy", "api")
    assert done.returncode == 1
    assert "❌ failed" in done.stdout and "exited 4" in done.stdout
    assert [d.state for d in recorded(config)] == [DeployState.FAILED]


def test_blocked_deploy_exits_one_and_force_deploys(setup: Any, github: FakeGitHub) -> None:
    config = setup([["true"]], required_contexts=["ci/test"])
    github.set_status("acme/api", github.head("acme/api", "main"), "ci/test", "failure")
    blocked = run_cli(config, "deploy", "acme/api")
    assert blocked.returncode == 1
    assert "🚫 blocked" in blocked.stdout and "CI failed: ci/test" in blocked.stdout
    forced = run_cli(config, "deploy", "acme/api", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert github.deployments("acme/api")[0].required_contexts == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "acme/nope"], "robot: Unknown repo `acme/nope`. Configured repos: acme/api."),
        (
            ["deploy", "acme/api", "--env", "prod"],
            "robot: Unknown environment `prod` for acme/api. Environments: production.",
        ),
        (["deploy", "acme//api"], "is not a repo name"),
        (["deploy", "acme/api@no-such-branch"], "Unknown ref `no-such-branch` in acme/api."),
        (["deploy", "acme/api@main;reboot"], "is not a valid ref"),
        (["deploy", "acme/api@$(id)"], "is not a valid ref"),
        (["status", "nope"], "robot: Unknown repo `nope`."),
    ],
)
def test_bad_input_is_one_line_exit_two_nothing_recorded(setup: Any, args: list[str], message: str) -> None:
    config = setup([["true"]])
    done = run_cli(config, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert recorded(config) == []


def test_missing_folder_and_unset_variable(setup: Any, tmp_path: Path) -> None:
    config = setup([["true"]])
    text = config.read_text().replace(str(tmp_path / "checkout"), str(tmp_path / "gone"))
    config.write_text(text)
    done = run_cli(config, "deploy", "acme/api")
    assert done.returncode == 2
    assert f"folder {tmp_path / 'gone'} does not exist" in done.stderr
    assert recorded(config) == []
    unset = run_cli(
        config,
        "deploy",
        "acme/api",
        env={k: v for k, v in environ().items() if k != "GITHUB_TOKEN"},
    )
    assert unset.returncode == 2
    assert "github.token: environment variable GITHUB_TOKEN is not set" in unset.stderr


def test_missing_ansible_playbook_is_refused(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_repo("acme/infra")
    folder = tmp_path / "infra"
    folder.mkdir()
    (folder / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    config = write_config(
        tmp_path,
        github.url,
        {"acme/infra": {"folder": str(folder), "ansible_playbook": "site.yml"}},
    )
    # An interpreter outside the venv's bin (and a PATH without it) cannot find ansible-playbook.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(Path(sys.base_prefix) / "bin" / Path(PY).name)
    site = sysconfig.get_paths()["purelib"]
    env = {**environ(), "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "bot.cli", "deploy", "infra", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ansible-playbook not found on PATH; install ansible-core" in done.stderr
    assert recorded(config) == []


def test_status_lists_history_newest_first(setup: Any, github: FakeGitHub) -> None:
    config = setup([["true"]])
    assert run_cli(config, "deploy", "acme/api").returncode == 0
    first_sha = github.head("acme/api", "main")
    github.push("acme/api", "main")
    assert run_cli(config, "deploy", "acme/api").returncode == 0
    done = run_cli(config, "status", "api")
    assert done.returncode == 0
    rows = [line for line in done.stdout.splitlines() if "acme/api" in line]
    assert len(rows) == 2
    assert rows[0].split()[0] == "2" and rows[1].split()[0] == "1"
    assert first_sha[:7] in rows[1] and "succeeded" in rows[1] and "cli:" in rows[1]


def test_status_shows_the_locks_and_what_is_left_of_each(setup: Any) -> None:
    config = setup([["true"]])
    assert "Locked" not in run_cli(config, "status").stdout
    store = SqlStore.from_url(load_settings(config, environ()).state.url)
    try:
        store.set_lock("acme/api", "production", "slack:U0ALICE01", "release freeze", timedelta(hours=2))
        store.set_lock("acme/api", "staging", "cli:root", "")
    finally:
        store.close()
    done = run_cli(config, "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("No deploys recorded yet.\n\nLocked:\n")
    production, staging = done.stdout.splitlines()[3:5]
    assert production.startswith("🔒 acme/api production: locked by slack:U0ALICE01 since ")
    assert production.endswith(
        (" UTC for 2 h more: release freeze", " UTC for 1 h 59 min more: release freeze")
    )
    assert staging.startswith("🔒 acme/api staging: locked by cli:root since ") and staging.endswith(" UTC")


def test_check_reports_each_environment(setup: Any, tmp_path: Path) -> None:
    config = setup([["true"]])
    good = run_cli(config, "check")
    assert good.returncode == 0
    assert "✓ acme/api production: 1 command(s)" in good.stdout
    config.write_text(config.read_text().replace(str(tmp_path / "checkout"), "/nonexistent/x"))
    bad = run_cli(config, "check")
    assert bad.returncode == 1
    assert "✗ acme/api production: folder /nonexistent/x does not exist" in bad.stdout


def test_check_online_tries_each_repo(setup: Any, github: FakeGitHub) -> None:
    config = setup([["true"]])
    done = run_cli(config, "check", "--online")
    assert done.returncode == 0, done.stdout
    assert "✓ github token: token accepted: acting as deploy-robot;" in done.stdout
    assert "✓ github acme/api:" in done.stdout
    wrong = run_cli(config, "check", "--online", env=environ(GITHUB_TOKEN="ghp_wrong_token_123"))
    assert wrong.returncode == 1
    # A refused token is said once, not once per repo it cannot reach.
    assert "✗ github token: GitHub refused the token (401" in wrong.stdout
    assert "github acme/api" not in wrong.stdout
    assert "ghp_wrong_token_123" not in wrong.stdout + wrong.stderr


def test_sigterm_cancels_the_running_deploy(setup: Any, tmp_path: Path, github: FakeGitHub) -> None:
    started = tmp_path / "started"
    config = setup([["touch", str(started)], [PY, "-c", "import time; time.sleep(60)"]])
    proc = subprocess.Popen(
        [PY, "-m", "bot.cli", "deploy", "acme/api", "--config", str(config)],
        cwd=ROOT,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(started.exists, what="the deploy to start")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "⛔ cancelled" in out
    assert [d.state for d in recorded(config)] == [DeployState.CANCELLED]
    statuses = github.deployments("acme/api")[0].statuses
    assert statuses[-1]["body"]["state"] == "error"


def test_secret_in_output_is_redacted_in_terminal(setup: Any) -> None:
    config = setup([[PY, "-c", f"print('leak {TOKEN} and', __import__('os').environ.get('DB_PASSWORD'))"]])
    done = run_cli(config, "deploy", "acme/api", env=environ(DB_PASSWORD="pa55word-xyz"))
    assert done.returncode == 0
    assert TOKEN not in done.stdout and "pa55word-xyz" not in done.stdout
    assert "leak •••••• and ••••••" in done.stdout


def test_unreachable_database_is_one_line(setup: Any, tmp_path: Path) -> None:
    config = setup([["true"]])
    text = config.read_text()
    start = text.index("sqlite:///")
    end = text.index("\n", start)
    config.write_text(text[:start] + "postgresql://robot:pw-secret@127.0.0.1:1/robot" + text[end:])
    done = run_cli(config, "deploy", "acme/api")
    assert done.returncode == 2
    assert "state.url: cannot open the database" in done.stderr
    assert "pw-secret" not in done.stderr and done.stderr.count("\n") == 1


def test_cancel_from_another_robot_stops_the_terminal_deploy(setup: Any, tmp_path: Path) -> None:
    started = tmp_path / "started"
    config = setup([["touch", str(started)], [PY, "-c", "import time; time.sleep(60)"]])
    proc = subprocess.Popen(
        [PY, "-m", "bot.cli", "deploy", "acme/api", "--config", str(config)],
        cwd=ROOT,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    other = start_core(config, RecordingObserver())
    try:
        wait_for(started.exists, what="the deploy to start")
        assert other.service.cancel(1, slack_user("U2")).cancel_requested
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        other.close()
    assert proc.returncode == 130
    assert "⛔ cancelled" in out


HEAVY = {"sqlalchemy", "pydantic", "yaml", "rich", "github", "requests", "slack_bolt", "slack_sdk", "alembic"}


def imported(*args: str, config: Path | None = None) -> set[str]:
    """Top-level packages a `robot` process imports, from Python's own import log."""
    argv = [*args, "--config", str(config)] if config else list(args)
    done = subprocess.run(
        [PY, "-X", "importtime", "-m", "bot.cli", *argv],
        cwd=ROOT,
        env=environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = (line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line)
    return {name.split(".")[0] for name in names}


def test_help_and_status_import_only_what_they_use(setup: Any) -> None:
    for args in (["--help"], ["deploy", "--help"], ["db", "upgrade", "--help"]):
        assert imported(*args) & (HEAVY | {"psycopg"}) == set(), args
    config = setup([["true"]])
    # Not a terminal: no rich; SQLite: no PostgreSQL driver; Alembic only to create the schema.
    deploy = imported("deploy", "acme/api", config=config)
    assert {"github", "alembic"} <= deploy
    assert deploy & {"rich", "slack_bolt", "slack_sdk", "psycopg"} == set()
    status = imported("status", config=config)
    assert {"sqlalchemy", "pydantic"} <= status
    unneeded = {"rich", "github", "requests", "slack_bolt", "slack_sdk", "alembic", "psycopg", "cryptography"}
    assert status & unneeded == set()


def test_status_without_a_terminal_is_a_plain_table(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9",
        {"acme/api": {"environments": {"production": {"folder": ".", "commands": [["true"]]}}}},
    )
    store = SqlStore.from_url(load_settings(config, environ()).state.url)
    try:
        for n, state in enumerate((DeployState.SUCCEEDED, DeployState.INTERRUPTED, DeployState.FAILED)):
            request = DeployRequest(
                repo="acme/api",
                env="production",
                ref="main",
                sha=f"{n}" * 40,
                requested_by="U1",
                source=Source.CLI,
            )
            deploy, _ = store.create_deploy(request)
            store.finish_deploy(deploy.id, state, "exited 4" if state is DeployState.FAILED else None)
    finally:
        store.close()
    done = run_cli(config, "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["#", "repo", "env", "sha", "state", "who", "when", "took", "why"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert lines[1].endswith("exited 4") and "\x1b" not in done.stdout

    def screen_column(line: str, text: str) -> int:
        # Each state emoji takes two cells: ✅ and ❌ are one code point, ⚠️ is two.
        before = line[: line.index(text)].replace("\ufe0f", "")
        return len(before) + sum(before.count(icon) for icon in "✅❌⚠")

    who = [screen_column(lines[0], "who"), *(screen_column(line, "U1") for line in lines[1:])]
    assert len(set(who)) == 1, lines


def test_check_shows_the_database_without_its_password(
    setup: Any, pg_server: PostgresServer, tmp_path: Path
) -> None:
    config = setup([["true"]])
    # The test server trusts local connections, so a password in the URL is accepted and unused.
    url = pg_server.new_database().replace("postgres@", "postgres:hunter2-netloc@")
    url += "?password=hunter2-query"
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'robot.db'}", url))
    done = run_cli(config, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ state: postgresql+psycopg://postgres:***@127.0.0.1:" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


HOSTILE_ERROR = "folder [/srv/app] missing [bold]x[/bold] \x1b[31mred\x1b[0m \u202eevil\x07 done"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_status_shows_hostile_text_as_plain_text(setup: Any, terminal: bool) -> None:
    config = setup([["true"]])
    store = SqlStore.from_url(load_settings(config, environ()).state.url)
    try:
        deploy, _ = store.create_deploy(
            DeployRequest("acme/api", "production", "main", "a" * 40, "U1", Source.COMMAND)
        )
        store.finish_deploy(deploy.id, DeployState.FAILED, HOSTILE_ERROR)
    finally:
        store.close()
    argv = [PY, "-m", "bot.cli", "status", "--config", str(config)]
    if terminal:  # rich draws the table only on a terminal
        main, child = os.openpty()
        code = subprocess.run(
            argv, cwd=ROOT, env=environ(COLUMNS="300"), stdout=child, stderr=child, timeout=60
        ).returncode
        os.close(child)
        out = b""
        while chunk := _read_pty(main):
            out += chunk
        os.close(main)
        text = out.decode()
    else:
        finished = run_cli(config, "status")
        code, text = finished.returncode, finished.stdout + finished.stderr
    assert code == 0, text
    assert "folder [/srv/app] missing [bold]x[/bold] red evil done" in text
    assert "\x1b[31m" not in text and "\u202e" not in text and "\x07" not in text


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child side is closed and drained
        return b""


def test_only_robot_run_needs_the_slack_variables(setup: Any) -> None:
    config = setup([["true"]])
    config.write_text(
        config.read_text() + "slack:\n  bot_token: ${SLACK_BOT_TOKEN}\n  app_token: ${SLACK_APP_TOKEN}\n"
    )
    env = {k: v for k, v in environ().items() if not k.startswith("SLACK_")}
    status = run_cli(config, "status", env=env)
    assert status.returncode == 0, status.stderr
    run = run_cli(config, "run", env=env)
    assert run.returncode == 2
    assert "environment variables not set: SLACK_BOT_TOKEN (slack.bot_token)" in run.stderr


def test_prune_deletes_old_logs_and_keeps_the_history(setup: Any) -> None:
    config = setup([["echo", "shipped"]])
    assert run_cli(config, "deploy", "acme/api").returncode == 0
    assert run_cli(config, "deploy", "acme/api", "--force").returncode == 0  # the same SHA again
    url = load_settings(config, environ()).state.url
    old, recent = sorted(recorded(config), key=lambda d: d.id)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:  # the first deploy ended 100 days ago
            conn.execute(
                update(deploys)
                .where(deploys.c.id == old.id)
                .values(finished_at=datetime.now(UTC) - timedelta(days=100))
            )
    finally:
        engine.dispose()
    done = run_cli(config, "prune", "--older-than", "90d")
    assert done.returncode == 0, done.stderr
    assert "Deleted the logs of 1 deploy(s) that ended before" in done.stdout
    store = SqlStore.from_url(url)
    try:
        assert store.read_log(old.id) == "" and "shipped" in store.read_log(recent.id)
        assert [d.id for d in store.list_deploys()] == [recent.id, old.id]  # the history stays
    finally:
        store.close()
    bad = run_cli(config, "prune", "--older-than", "ninety days")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "robot: `ninety days` is not a duration; use a whole number of minutes, hours, days or weeks, "
        "e.g. `30m`, `2h`, `90d`, `1w`."
    )


def test_a_deploying_robot_is_not_dumpable_and_holds_no_token_in_its_environment(setup: Any) -> None:
    # Running as root here, a step could read /proc anyway; what is checked is that the robot
    # made itself non-dumpable (so a same-user, non-root step cannot read its /proc files) and
    # that its environment no longer holds the GitHub token once the config has read it.
    config = setup([["true"]])
    done = subprocess.run(
        [PY, "-c", HARDENING_PROBE, str(config)],
        cwd=ROOT,
        env=environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "dumpable=False token-in-environ=False exit=0"


# Runs `robot deploy` in-process so the test can look at the robot's own state afterwards.
HARDENING_PROBE = """
import os, sys
from bot.cli import main
from bot.hardening import is_dumpable
code = main(["deploy", "acme/api", "--config", sys.argv[1]])
print(f"dumpable={is_dumpable()}", f"token-in-environ={'GITHUB_TOKEN' in os.environ}", f"exit={code}")
"""


def test_check_online_tries_both_slack_tokens_and_the_bots_scopes(setup: Any) -> None:
    config = setup([["true"]])
    slack_keys = "slack:\n  bot_token: ${SLACK_BOT_TOKEN}\n  app_token: ${SLACK_APP_TOKEN}\n"
    with FakeSlack(bot_scopes=("commands", "chat:write")) as slack:
        config.write_text(config.read_text() + slack_keys + f"  api_url: {slack.api_url}\n")
        good = environ(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token)
        done = run_cli(config, "check", "--online", env=good)
        assert done.returncode == 1, done.stdout
        assert "✗ slack bot token: deploy-robot in Acme, but the bot lacks the scopes" in done.stdout
        assert "chat:write.public, files:write, usergroups:read" in done.stdout
        assert "✓ slack app token: Socket Mode connections allowed" in done.stdout
        slack.bot_scopes = BOT_SCOPES
        swapped = environ(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.bot_token)
        done = run_cli(config, "check", "--online", env=swapped)
        assert "✓ slack bot token: deploy-robot in Acme; scopes" in done.stdout
        assert (
            "✗ slack app token: Slack refused it: not_allowed_token_type (an app-level token" in done.stdout
        )
        assert slack.bot_token not in done.stdout + done.stderr
