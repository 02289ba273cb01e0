"""Shared fixtures: the fake GitHub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.github import FakeGitHub
from tests.support.harness import TOKEN

pytest_plugins = ["tests.support.github_fixtures"]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fresh fake GitHub accepting the harness token."""
    fake = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        yield fake
    finally:
        fake.stop()
