"""`robot deploy` to an environment that wants approvals: refused without --approved-by, recorded with it."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.models import DeployState
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.support.harness import environ, make_git_repo, run_cli, write_config

pytestmark = pytest.mark.slow  # the robot CLI as a real process against the fake GitHub


def test_a_terminal_deploy_needs_a_named_approver(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_repo("acme/api")
    checkout = make_git_repo(tmp_path / "checkout")
    production = {"folder": str(checkout), "commands": [["true"]], "approvals": {"approvers": ["U0ANN0001"]}}
    config = write_config(tmp_path, github.url, {"acme/api": {"environments": {"production": production}}})
    refused = run_cli(config, "deploy", "acme/api")
    assert refused.returncode != 0
    assert "acme/api production needs approval: name its approver with --approved-by NAME." in refused.stderr
    own = run_cli(config, "deploy", "acme/api", "--approved-by", getpass.getuser())
    assert own.returncode != 0 and "--approved-by must name someone else" in own.stderr
    assert github.deployments("acme/api") == []
    done = run_cli(config, "deploy", "acme/api", "--approved-by", "alice")
    assert done.returncode == 0, done.stdout + done.stderr
    assert github.deployments("acme/api")[0].payload["approved_by"] == ["alice"]
    store = SqlStore.from_url(load_settings(config, environ()).state.url)
    try:
        (deploy,) = store.list_deploys()
        assert deploy.state is DeployState.SUCCEEDED
        assert [a.approver for a in store.list_approvals([deploy.id])[deploy.id]] == ["cli:alice"]
    finally:
        store.close()
    status = run_cli(config, "status")
    assert "approved by cli:alice" in status.stdout, status.stdout
