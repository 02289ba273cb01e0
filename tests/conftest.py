"""Shared fixtures: the fake GitHub and the fake Slack on 127.0.0.1, and one throwaway PostgreSQL
server per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import TOKEN
from tests.support.postgres import PostgresServer, start_postgres, unavailable_reason

pytest_plugins = ["tests.support.github_fixtures"]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fresh fake GitHub accepting the harness token."""
    fake = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack; a test fails when the fake served an error (a request it could not take)."""
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (each test takes a fresh database on it)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
