"""`robot status --json` and its filters, through the real CLI process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from bot.config import load_settings
from bot.models import DeployRequest, DeployState, Source
from bot.store import SqlStore
from bot.store.schema import deploys
from tests.support.harness import environ, run_cli, write_config

pytestmark = pytest.mark.slow  # the robot CLI as a real process

DEPLOY_KEYS = {
    "id",
    "repo",
    "env",
    "ref",
    "sha",
    "state",
    "requested_by",
    "source",
    "force",
    "created_at",
    "started_at",
    "finished_at",
    "duration_seconds",
    "error",
    "waiting_for",
    "github_deployment_id",
    "channel",
    "thread_ts",
    "root_ts",
    "rollback_of",
    "approved_by",
}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four deploys: #1 failed 10 days ago, #2 succeeded 2 days ago, #3 queued to staging, #4 cancelled."""
    tmp_path = tmp_path_factory.mktemp("status")
    envs = {name: {"folder": ".", "commands": [["true"]]} for name in ("staging", "production")}
    path = write_config(tmp_path, "http://127.0.0.1:9", {"acme/api": {"environments": envs}})
    store = SqlStore.from_url(load_settings(path, environ()).state.url)
    try:
        plan = [
            ("production", DeployState.FAILED, timedelta(days=10)),
            ("production", DeployState.SUCCEEDED, timedelta(days=2)),
            ("staging", DeployState.QUEUED, timedelta(hours=1)),
            ("production", DeployState.CANCELLED, timedelta(minutes=5)),
        ]
        for n, (env, state, age) in enumerate(plan, start=1):
            request = DeployRequest("acme/api", env, "main", f"{n}" * 40, "slack:U0ALICE01", Source.COMMAND)
            deploy, _ = store.create_deploy(request)
            if state is DeployState.SUCCEEDED:
                store.claim_next(only_id=deploy.id)
            if state.is_final:
                store.finish_deploy(deploy.id, state, "exited 4" if state is DeployState.FAILED else None)
            with store._engine.begin() as conn:  # the seeded history's ages
                conn.execute(update(deploys).where(deploys.c.id == deploy.id).values(created_at=NOW - age))
        store.set_lock("acme/api", "production", "slack:U0BOB0001", "release freeze")
    finally:
        store.close()
    return path


def status(config: Path, *args: str) -> Any:
    done = run_cli(config, "status", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ids(document: Any) -> list[int]:
    return [d["id"] for d in document["deploys"]]


def test_json_shape_has_every_field_a_script_needs(config: Path) -> None:
    document = status(config)
    assert set(document) == {"deploys", "locks"}
    assert ids(document) == [4, 3, 2, 1]
    assert all(set(d) == DEPLOY_KEYS for d in document["deploys"])
    succeeded = document["deploys"][2]
    assert succeeded["state"] == "succeeded" and succeeded["sha"] == "2" * 40
    assert succeeded["requested_by"] == "slack:U0ALICE01" and succeeded["source"] == "command"
    assert succeeded["created_at"] == (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert succeeded["finished_at"].endswith("Z") and isinstance(succeeded["duration_seconds"], float)
    assert document["deploys"][3]["error"] == "exited 4"
    assert succeeded["rollback_of"] is None and succeeded["approved_by"] == []
    assert document["deploys"][1]["started_at"] is None and document["deploys"][1]["duration_seconds"] is None
    (lock,) = document["locks"]
    assert lock["locked_by"] == "slack:U0BOB0001" and lock["reason"] == "release freeze"
    assert set(lock) == {"repo", "env", "locked_by", "reason", "locked_at", "expires_at"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "staging"], [3]),
        (["api", "--env", "production"], [4, 2, 1]),
        (["--state", "failed"], [1]),
        (["--state", "failed", "--state", "queued"], [3, 1]),
        (["--state", "succeeded,cancelled"], [4, 2]),
        (["--since", "3d"], [4, 3, 2]),
        (["--since", "12h"], [4, 3]),
        (["--since", (NOW - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")], [4, 3, 2]),
        (["--since", (NOW - timedelta(days=30)).date().isoformat()], [4, 3, 2, 1]),
        (["--limit", "2"], [4, 3]),
        (["--env", "production", "--state", "succeeded,failed", "--since", "7d"], [2]),
    ],
)
def test_each_filter(config: Path, args: list[str], expected: list[int]) -> None:
    assert ids(status(config, *args)) == expected


def test_the_env_filter_applies_to_locks(config: Path) -> None:
    assert status(config, "--env", "staging")["locks"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--state", "done"],
            "robot: --state: `done` is not a deploy state; valid states: awaiting_approval, queued, waiting,",
        ),
        (["--state", ","], "robot: --state: an empty list is not a deploy state; valid states:"),
        (["--since", "yesterday"], "robot: --since: `yesterday` is neither an ISO 8601 date or time"),
        (["--since", "7x"], "nor a duration back from now (30m, 12h, 7d, 1w)"),
        (["--limit", "0"], "robot: --limit: 0 is out of range; give 1 to 10000."),
        (["--limit", "100001"], "robot: --limit: 100001 is out of range"),
        (["--env", "prod"], "robot: Unknown environment `prod`. Environments: staging, production."),
        (["api", "--env", "prod"], "Unknown environment `prod` for acme/api. Environments: staging,"),
    ],
)
def test_bad_filter_values_say_what_is_valid_and_exit_2(config: Path, args: list[str], message: str) -> None:
    done = run_cli(config, "status", "--json", *args)
    assert done.returncode == 2
    assert message in done.stderr and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1


def test_limit_must_be_a_number(config: Path) -> None:
    done = run_cli(config, "status", "--limit", "many")
    assert done.returncode == 2 and "--limit: invalid int value: 'many'" in done.stderr


def test_the_table_takes_the_same_filters(config: Path) -> None:
    done = run_cli(config, "status", "--state", "failed")
    assert done.returncode == 0, done.stderr
    table, _, locks = done.stdout.partition("\n\nLocked:\n")  # the locks follow the history
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["1"]
    assert "production" in locks
