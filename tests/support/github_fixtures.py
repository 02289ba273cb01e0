"""Pytest fixtures: a running fake GitHub and gateways pointed at it (load via pytest_plugins)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.github import GitHubGateway
from tests.fakes.github import FakeGitHub

GatewayFactory = Callable[..., GitHubGateway]


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A fake GitHub on 127.0.0.1, stopped after the test."""
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def make_gateway(fake_github: FakeGitHub) -> Iterator[GatewayFactory]:
    """Build gateways on the fake: no throttling, short backoff; keyword overrides allowed."""
    made: list[GitHubGateway] = []

    def make(**overrides: Any) -> GitHubGateway:
        options: dict[str, Any] = {
            "seconds_between_requests": 0,
            "seconds_between_writes": 0,
            "timeout": 2,
            "max_retries": 3,
            "max_backoff": 0.05,
        }
        options.update(overrides)
        # `app=AppCredentials(...)` makes a GitHub App gateway (no token).
        token = options.pop("token", None if options.get("app") else fake_github.token)
        gateway = GitHubGateway(token, fake_github.url, **options)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def github_gateway(make_gateway: GatewayFactory) -> GitHubGateway:
    """A gateway on the fake with the test defaults."""
    return make_gateway()
