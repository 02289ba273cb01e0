"""The DORA section of the App Home: what the dashboard reads (at most once a minute), and where
the view shows it, within Slack's 100 blocks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.home import Dashboard
from bot.models import DoraHistory
from bot.slack.blocks.home import MAX_VIEW_BLOCKS, home_view, repos_that_fit
from bot.slack.blocks.stats import DORA_HOME_BLOCKS, dora_home_blocks
from bot.stats import DoraStats
from tests.fakes.memory import MemoryStore
from tests.support.history import API, SEEDED, UNTIL, WEB, seed_memory
from tests.unit.conftest import WorldFactory, commands_env


class CountingSource:
    """The store's DORA read, counted."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads = 0

    def dora_history(self, targets: Sequence[tuple[str, str]], until: datetime, days: int) -> DoraHistory:
        self.reads += 1
        return self.store.dora_history(targets, until, days)


def repos(folder: Path, count: int = 0) -> dict[str, Any]:
    env = commands_env(folder)
    config: dict[str, Any] = {
        API: {"environments": {"production": env, "staging": env}},
        WEB: {"environments": {"production": env}},
    }
    config.update(
        {f"acme/svc{n:02d}": {"environments": {"production": env, "staging": env}} for n in range(count)}
    )
    return config


def test_home_shows_every_repos_figures_or_the_filtered_ones(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    seed_memory(world.store, SEEDED)
    source = CountingSource(world.store)
    stats = DoraStats(world.settings, source, clock=lambda: UNTIL)
    dashboard = Dashboard(world.settings, world.store, world.service, world.github.commit_url, stats=stats)
    assert dashboard.shows_dora

    page = dashboard.snapshot(None, lambda counts: 2)
    assert page.dora is not None and page.dora.overall.frequency.numbers["deploys"] == 8
    shown = json.dumps(home_view(dashboard.for_user(page, "U0ALICE01"), UNTIL)["blocks"], ensure_ascii=False)
    # At the end of the page: every repo together (the hand-worked answers of test_dora_figures).
    assert shown.index("DORA figures · last 30 days") > shown.index("acme/web")
    assert "All repos: acme/api production, acme/web production" in shown
    assert "0.3 per day · 1.9 per week · 8 deploys" in shown and "41.7 % · 5 of 12" in shown

    # Figures over 30 days are read again at most once a minute, whatever changes meanwhile.
    dashboard.snapshot(None, lambda counts: 2)
    assert source.reads == 1
    web = dashboard.snapshot(WEB, lambda counts: 2)
    assert source.reads == 2 and web.dora is not None
    assert "acme/web: production" in json.dumps(dora_home_blocks(web.dora))


def test_without_stats_the_home_is_as_before(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    dashboard = Dashboard(world.settings, world.store, world.service, world.github.commit_url)
    page = dashboard.snapshot(None, lambda counts: 2)
    assert not dashboard.shows_dora and page.dora is None
    assert "DORA" not in json.dumps(home_view(page, UNTIL))


def test_the_section_takes_its_room_from_the_repos(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout", count=30))
    stats = DoraStats(world.settings, MemoryStore(), clock=lambda: UNTIL)
    dashboard = Dashboard(world.settings, world.store, world.service, world.github.commit_url, stats=stats)
    fits = lambda counts: repos_that_fit(counts, MAX_VIEW_BLOCKS - DORA_HOME_BLOCKS)  # noqa: E731  as HomeOps
    page = dashboard.snapshot(None, fits)
    blocks = home_view(page, UNTIL)["blocks"]
    assert page.hidden > 0 and len(blocks) <= MAX_VIEW_BLOCKS
    assert blocks[-3] == {"type": "divider"} and "DORA figures" in json.dumps(blocks[-2])
    assert "more blocks cut" not in json.dumps(blocks)
