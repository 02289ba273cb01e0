"""Shared fixtures: the fake GitHub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_github import FakeGitHub
from tests.harness import TOKEN

pytest_plugins = ["tests.conftest_github"]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fresh fake GitHub accepting the harness token."""
    fake = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        yield fake
    finally:
        fake.stop()
