"""`robot stats` as a real process (text and --json) and `/deploy stats` through the fake Slack,
on the seeded history of tests/unit/test_dora_figures.py moved to end now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import run_cli, write_config
from tests.support.history import API, SEEDED, WEB, insert_history, shifted
from tests.support.rig import RobotRig, db_url

pytestmark = pytest.mark.slow  # `robot` processes, and the robot against the fake Slack

ENVS = {"production": {"commands": [["true"]]}, "staging": {"commands": [["true"]]}}
REPOS = {API: {"environments": ENVS}, WEB: {"environments": {"production": {"commands": [["true"]]}}}}
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, "http://127.0.0.1:9/", REPOS)
    SqlStore.from_url(db_url(tmp_path)).close()
    insert_history(db_url(tmp_path), shifted(SEEDED, datetime.now(UTC)))
    return path


def test_json_for_dashboards(config: Path) -> None:
    done = run_cli(config, "stats", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    until = datetime.strptime(data["until"], ISO_UTC).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - until).total_seconds()) < 60
    assert (datetime.strptime(data["since"], ISO_UTC).replace(tzinfo=UTC) - until).days == -30
    assert (data["version"], data["days"], data["trend_weeks"], data["uncounted_repos"]) == (1, 30, 12, [])
    api = data["repos"][0]
    assert (api["repo"], api["environments"]) == (API, [{"repo": API, "env": "production"}])
    # The hand-worked answers (tests/unit/test_dora_figures.py).
    frequency = api["deployment_frequency"]
    assert (frequency["deploys"], frequency["level"], frequency["sparkline"]) == (6, "high", "▁▁▁▁▁▁▅▁▁███")
    assert frequency["per_day"] == pytest.approx(0.2) and frequency["weekly"] == [
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        2,
        2,
        2,
    ]
    assert api["lead_time"]["median_seconds"] == pytest.approx(3 * 3600, abs=1)
    assert api["lead_time"]["p90_seconds"] == pytest.approx(26.5 * 3600, abs=1)
    failures = api["change_failure_rate"]
    assert (failures["failed"], failures["rolled_back"], failures["finished"], failures["level"]) == (
        3,
        1,
        9,
        "low",
    )
    recovery = api["recovery_time"]
    assert recovery["median_seconds"] == pytest.approx(2.75 * 3600, abs=1)
    assert (recovery["incidents"], recovery["not_recovered"], recovery["level"]) == (3, 1, "high")
    assert data["overall"]["change_failure_rate"]["rate"] == pytest.approx(5 / 12)
    assert data["repos"][1]["deployment_frequency"]["level"] == "medium"


def test_text_for_a_terminal_and_the_options(config: Path) -> None:
    done = run_cli(config, "stats", "api")
    assert done.returncode == 0, done.stderr
    assert "acme/api: production" in done.stdout and "All repos" not in done.stdout
    assert "0.2 per day · 1.4 per week · 6 deploys" in done.stdout
    staging = json.loads(run_cli(config, "stats", "--env", "staging", "--json", "--days", "7").stdout)
    # acme/api staging, last 7 days: #15 succeeded, #16 failed.
    assert [s["repo"] for s in staging["repos"]] == [API]
    assert staging["overall"]["change_failure_rate"]["rate"] == 0.5
    refused = run_cli(config, "stats", "api", "--env", "qa")
    assert refused.returncode == 2 and "Unknown environment `qa` for acme/api" in refused.stderr
    assert run_cli(config, "stats", "--days", "0").returncode == 2


def test_no_database_yet_is_an_empty_history(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/", REPOS)
    done = run_cli(config, "stats", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overall"]["deployment_frequency"]["deploys"] == 0


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


def test_deploy_stats_in_slack(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> None:
    for repo in REPOS:
        github.add_repo(repo)
    repos = {repo: {**settings, "on_merge": "ignore"} for repo, settings in REPOS.items()}
    with RobotRig(tmp_path, github, slack, repos) as rig:
        insert_history(db_url(tmp_path), shifted(SEEDED, datetime.now(UTC)))
        envelope = rig.send_command("stats")
        answer: dict[str, Any] = dict(slack.wait_ack(envelope, timeout=30).payload or {})
        if str(answer.get("text", "")).startswith("⏳"):
            answer = dict(slack.wait_response(envelope, timeout=30))
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("DORA figures, last 30 days: Deployment frequency high")
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "All repos: acme/api production, acme/web production" in shown
    assert "44.4 % · 4 of 9 (3 failed, 1 rolled back)" in shown and "`▁▁▁▁▁▁▅▁▁███`" in shown
