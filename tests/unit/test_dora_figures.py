"""DORA figures from a seeded history, every answer worked out by hand below (MemoryStore).

tests/test_dora_store.py checks the same answers on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.dora import DAY, HOUR, DoraReport, Level, Scope, report_json, report_lines
from bot.errors import BadCommand, UnknownEnvironment
from bot.models import DeployState
from bot.slack.blocks.stats import dora_section, stats_reply
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import parse_deploy
from bot.stats import DoraStats, dora_targets
from tests.fakes.memory import MemoryStore
from tests.support.history import API, SEEDED, UNTIL, WEB, Past, ago, seed_memory
from tests.unit.conftest import World, WorldFactory, commands_env

S, F = DeployState.SUCCEEDED, DeployState.FAILED


def repos(folder: Path) -> dict[str, Any]:
    return {
        API: {"environments": {"production": commands_env(folder), "staging": commands_env(folder)}},
        WEB: {"environments": {"production": commands_env(folder)}},
    }


@pytest.fixture
def world(world_for: WorldFactory, tmp_path: Path) -> World:
    return world_for(repos(tmp_path / "checkout"))


def stats_of(world: World, history: tuple[Past, ...] = SEEDED) -> DoraStats:
    seed_memory(world.store, history)
    return DoraStats(world.settings, world.store, clock=lambda: UNTIL)


def numbers(scope: Scope) -> dict[str, Any]:
    """Every figure's value, level and numbers, flat: what the assertions compare."""
    flat: dict[str, Any] = {}
    for figure in scope.figures:
        flat[f"{figure.key}.level"] = figure.level
        for name, value in figure.numbers.items():
            flat[f"{figure.key}.{name}"] = value
    return flat


def test_the_seeded_history_of_acme_api_production(world: World) -> None:
    report = stats_of(world).report(API)
    assert [scope.repo for scope in report.repos] == [API]
    assert report.repos[0].targets == ((API, "production"),)  # staging is not counted
    got = numbers(report.repos[0])
    # In the last 30 days: succeeded #3 #6 #7 #8 #9 #10 = 6; failed #4 #5 #14 = 3; cancelled #11,
    # blocked #12 and interrupted #13 are not finished deploys here.
    # Frequency: 6 / 30 days = 0.2 a day (1.4 a week): at least once a week → high.
    assert got["deployment_frequency.deploys"] == 6
    assert got["deployment_frequency.per_day"] == pytest.approx(0.2)
    assert got["deployment_frequency.per_week"] == pytest.approx(1.4)
    assert got["deployment_frequency.level"] is Level.HIGH
    # Lead times of the commits first shipped in the window: a 2 h, b 4 h (#3); c 5 h, d 1 h (#6);
    # e 48 h (#7; c1 shipped by #1 long before: not again); f 0.5 h (#9; e again and g, first
    # shipped by #2 40 days ago, not again). Sorted 0.5 1 2 4 5 48 h: median (2 + 4) / 2 = 3 h,
    # under a day → elite; p90 at rank 0.9 x 5 = 4.5: 5 + 0.5 x (48 - 5) = 26.5 h.
    assert got["lead_time.commits"] == 6
    assert got["lead_time.median_seconds"] == pytest.approx(3 * HOUR, abs=1)
    assert got["lead_time.p90_seconds"] == pytest.approx(26.5 * HOUR, abs=1)
    assert got["lead_time.level"] is Level.ELITE
    # Failures: #4 #5 #14 failed, #7 rolled back 1 h after it ended (#11 asked 25 h after #10:
    # too late to count). (3 + 1) / (6 + 3) = 44.4 % → low.
    assert (got["change_failure_rate.failed"], got["change_failure_rate.rolled_back"]) == (3, 1)
    assert got["change_failure_rate.finished"] == 9
    assert got["change_failure_rate.rate"] == pytest.approx(4 / 9)
    assert got["change_failure_rate.level"] is Level.LOW
    # Incidents: #4 (and #5, the same run) until #6: 15 d 2 h - 14 d 22 h = 4 h; #7 until its
    # rollback #8: 10 d 2 h - 10 d 0.5 h = 1.5 h; #14 not recovered. Median of 4 h and 1.5 h =
    # 2.75 h: under a day → high.
    assert (got["recovery_time.incidents"], got["recovery_time.recovered"]) == (3, 2)
    assert got["recovery_time.not_recovered"] == 1
    assert got["recovery_time.median_seconds"] == pytest.approx(2.75 * HOUR, abs=1)
    assert got["recovery_time.level"] is Level.HIGH


def test_each_repo_and_all_of_them_together(world: World) -> None:
    report = stats_of(world).report()
    assert [scope.repo for scope in report.repos] == [API, WEB]
    web, overall = numbers(report.repos[1]), numbers(report.overall)
    # acme/web: #17 and #19 succeeded, #18 failed. 2 / 30 = 0.067 a day: at least monthly → medium.
    assert web["deployment_frequency.per_day"] == pytest.approx(2 / 30)
    assert web["deployment_frequency.level"] is Level.MEDIUM
    # h: committed 3 d 2 h ago, shipped 2 d 2 h ago: 24 h, not under a day → high.
    assert web["lead_time.median_seconds"] == pytest.approx(DAY, abs=1)
    assert web["lead_time.level"] is Level.HIGH
    # 1 of 3 failed → 33 % → low; #18 recovered by #19 in 1 h, not under an hour → high.
    assert web["change_failure_rate.rate"] == pytest.approx(1 / 3)
    assert web["recovery_time.median_seconds"] == pytest.approx(HOUR, abs=1)
    assert web["recovery_time.level"] is Level.HIGH
    # Both: 8 succeeded / 30 days = 0.27 a day → high; (4 failed + 1 rolled back) / 12 = 41.7 %.
    assert overall["deployment_frequency.deploys"] == 8
    assert overall["deployment_frequency.level"] is Level.HIGH
    assert overall["change_failure_rate.rate"] == pytest.approx(5 / 12)
    # Leads 0.5 1 2 4 5 24 48 h: median 4 h → elite; p90 rank 0.9 x 6 = 5.4: 24 + 0.4 x 24 = 33.6 h.
    assert overall["lead_time.median_seconds"] == pytest.approx(4 * HOUR, abs=1)
    assert overall["lead_time.p90_seconds"] == pytest.approx(33.6 * HOUR, abs=1)
    assert overall["lead_time.level"] is Level.ELITE
    # Recovered in 4 h, 1.5 h, 1 h (and one open): median 1.5 h → high.
    assert overall["recovery_time.median_seconds"] == pytest.approx(1.5 * HOUR, abs=1)
    assert (overall["recovery_time.incidents"], overall["recovery_time.not_recovered"]) == (4, 1)


def test_twelve_week_trends(world: World) -> None:
    api = stats_of(world).report(API).repos[0]
    # Week 11 is the last 7 days, week 0 the oldest. Succeeded: #2 (day 40 → week 11 - 5 = 6),
    # #3 and #6 (days 20, 14 → week 9), #7 and #8 (day 10 → week 10), #9 and #10 (week 11).
    assert api.frequency.weekly == (0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 2, 2)
    assert api.frequency.trend == "▁▁▁▁▁▁▅▁▁███"  # 1 of the top 2 → bar 4 of 0…7
    # Failure rate per week: week 6 0/1, week 9 2/4 (#4 #5), week 10 1/2 (#7), week 11 1/3 (#14).
    rates = [None if v is None else round(v, 3) for v in api.failure_rate.weekly]
    assert rates == [None] * 6 + [0.0, None, None, 0.5, 0.5, 0.333]
    assert api.failure_rate.trend == "      ▁  ██▆"  # a week without deploys is a blank
    # Lead time medians: week 6 g 3 h; week 9 median of 1 2 4 5 h = 3 h; week 10 e 48 h; week 11 f.
    hours = [None if v is None else round(v / HOUR, 2) for v in api.lead_time.weekly]
    assert hours == [None] * 6 + [3.0, None, None, 3.0, 48.0, 0.5]
    # Recovery: the incident of week 9 took 4 h, that of week 10 1.5 h; #14's is still open.
    hours = [None if v is None else round(v / HOUR, 2) for v in api.recovery.weekly]
    assert hours == [None] * 9 + [4.0, 1.5, None]


def test_no_deploys_at_all(world: World) -> None:
    scope = stats_of(world, ()).report(API).repos[0]
    # No deploy is a measurement (none a month → low); the others have nothing to measure.
    assert scope.frequency.value == 0 and scope.frequency.level is Level.LOW
    assert scope.frequency.trend == "▁" * 12
    for figure in (scope.lead_time, scope.failure_rate, scope.recovery):
        assert figure.value is None and figure.level is None and figure.trend == " " * 12
    assert scope.lead_time.text == "no commits recorded as shipped"
    assert scope.failure_rate.text == "no finished deploys"
    assert scope.recovery.text == "no failed or rolled-back deploys"


def test_one_deploy(world: World) -> None:
    one = (Past(1, S, ago(2, 3), commits=(("a" * 40, ago(2, 5)),)),)
    got = numbers(stats_of(world, one).report(API).repos[0])
    # 1 / 30 = 0.033 a day: at least monthly → medium; lead 2 h → elite; 0 of 1 failed → elite.
    assert got["deployment_frequency.per_day"] == pytest.approx(1 / 30)
    assert got["deployment_frequency.level"] is Level.MEDIUM
    assert got["lead_time.median_seconds"] == got["lead_time.p90_seconds"] == pytest.approx(2 * HOUR, abs=1)
    assert got["lead_time.level"] is Level.ELITE
    assert (got["change_failure_rate.rate"], got["change_failure_rate.level"]) == (0.0, Level.ELITE)
    assert (got["recovery_time.incidents"], got["recovery_time.level"]) == (0, None)


def test_all_failed(world: World) -> None:
    failed = tuple(Past(n, F, ago(n, 1), commits=(("b" * 40, ago(20)),)) for n in range(1, 4))
    got = numbers(stats_of(world, failed).report(API).repos[0])
    # 3 of 3 failed: 100 % → low; nothing succeeded: no deploys, no lead time; the three failures
    # in a row are one incident, not recovered yet: no recovery time.
    assert got["deployment_frequency.deploys"] == 0
    assert (got["change_failure_rate.rate"], got["change_failure_rate.level"]) == (1.0, Level.LOW)
    assert got["lead_time.commits"] == 0 and got["lead_time.level"] is None
    assert (got["recovery_time.incidents"], got["recovery_time.not_recovered"]) == (1, 1)
    assert got["recovery_time.median_seconds"] is None and got["recovery_time.level"] is None


def test_a_rollback_within_a_day_makes_its_deploy_a_failure(world: World) -> None:
    history = (
        Past(1, S, ago(3, 2)),
        Past(2, S, ago(2, 2)),
        # Rolled back 20 h after #2 ended (asked at 1 d 6 h ago, done 1 d 5 h ago).
        Past(3, S, ago(1, 5), created_at=ago(1, 6), rollback_of=2),
    )
    got = numbers(stats_of(world, history).report(API).repos[0])
    # 3 succeeded deploys, #2 counts as failed: 1 / 3; recovered when the rollback ended:
    # 2 d 2 h - 1 d 5 h = 21 h → high.
    assert got["deployment_frequency.deploys"] == 3
    assert (got["change_failure_rate.rolled_back"], got["change_failure_rate.rate"]) == (
        1,
        pytest.approx(1 / 3),
    )
    assert got["recovery_time.median_seconds"] == pytest.approx(21 * HOUR, abs=1)
    assert got["recovery_time.level"] is Level.HIGH


def test_the_window_is_days_long(world: World) -> None:
    report = stats_of(world).report(API, days=7)
    got = numbers(report.repos[0])
    # The last 7 days: #9 #10 succeeded, #14 failed.
    assert (got["deployment_frequency.deploys"], got["change_failure_rate.finished"]) == (2, 3)
    assert report.since == UNTIL - timedelta(days=7)
    with pytest.raises(BadCommand, match="1 to 3650 days"):
        stats_of(world).report(days=0)


def test_which_environments_count(world_for: WorldFactory, tmp_path: Path) -> None:
    folder = tmp_path / "checkout"
    env = commands_env(folder)
    world = world_for(
        {
            "acme/flagged": {"environments": {"production": env, "eu": {**env, "dora": True}}},
            "acme/single": {"environments": {"live": env}},
            "acme/several": {"environments": {"blue": env, "green": env}},
            API: {"environments": {"staging": env, "production": env}},
        }
    )
    targets, uncounted = dora_targets(world.settings)
    # `dora: true` wins over the name; a repo's only environment counts; several, none named
    # production and none flagged: the repo is not counted (and said so).
    assert targets == [("acme/flagged", "eu"), ("acme/single", "live"), (API, "production")]
    assert uncounted == ["acme/several"]
    assert dora_targets(world.settings, env="staging") == ([(API, "staging")], [])
    assert dora_targets(world.settings, "several", "green") == ([("acme/several", "green")], [])
    with pytest.raises(UnknownEnvironment, match="Unknown environment `qa` for acme/api"):
        dora_targets(world.settings, API, "qa")
    with pytest.raises(UnknownEnvironment, match="No configured repo has an environment `qa`"):
        dora_targets(world.settings, env="qa")


def test_json_has_stable_keys_and_iso_times(world: World) -> None:
    data = json.loads(json.dumps(report_json(stats_of(world).report())))
    assert list(data) == [
        "version",
        "since",
        "until",
        "days",
        "trend_weeks",
        "overall",
        "repos",
        "uncounted_repos",
    ]
    assert (data["since"], data["until"], data["days"]) == (
        "2026-11-01T12:00:00Z",
        "2026-12-01T12:00:00Z",
        30,
    )
    scope = data["repos"][0]
    assert list(scope) == [
        "repo",
        "environments",
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "recovery_time",
    ]
    assert scope["environments"] == [{"repo": API, "env": "production"}]
    assert data["overall"]["repo"] is None
    assert list(scope["lead_time"]) == [
        "value",
        "level",
        "commits",
        "median_seconds",
        "p90_seconds",
        "weekly",
        "sparkline",
    ]
    assert scope["change_failure_rate"]["level"] == "low" and len(scope["recovery_time"]["weekly"]) == 12
    assert scope["deployment_frequency"]["sparkline"] == "▁▁▁▁▁▁▅▁▁███"


def test_terminal_lines(world: World) -> None:
    text = "\n".join(report_lines(stats_of(world).report()))
    assert "DORA figures, last 30 days (2026-11-01 12:00 → 2026-12-01 12:00 UTC)" in text
    assert "All repos: acme/api production, acme/web production" in text
    assert "acme/api: production" in text
    assert (
        "Deployment frequency             high    ▁▁▁▁▁▁▅▁▁███  0.2 per day · 1.4 per week · 6 deploys"
        in text
    )
    assert "median 3.0 h · p90 1.1 d · 6 commits" in text
    assert "44.4 % · 4 of 9 (3 failed, 1 rolled back)" in text
    assert "median 2.8 h · 3 incidents, 1 not recovered yet" in text


def test_slack_blocks_overall_first_and_bounded(world: World) -> None:
    report = stats_of(world).report()
    blocks = dora_section(report)
    texts = [json.dumps(b, ensure_ascii=False) for b in blocks]
    assert "DORA figures, last 30 days" in texts[0]
    assert "All repos" in texts[1] and "acme/api: production" in texts[2] and "acme/web" in texts[3]
    assert "`▁▁▁▁▁▁▅▁▁███`" in texts[2] and "*high*" in texts[2]
    # App Home has less room: the figures stop in time and say how many repos were left out.
    small = dora_section(report, max_blocks=3)
    assert len(small) == 3 and "2 more repos" in json.dumps(small[-1])
    assert all(len(dora_section(report, max_blocks=n)) <= n for n in range(1, 6))
    text, reply_blocks = stats_reply(report)
    assert text.startswith("DORA figures, last 30 days: Deployment frequency high")
    assert reply_blocks == blocks


def test_deploy_stats_through_chatops(world: World) -> None:
    chatops = ChatOps(world.service, stats=stats_of(world))
    reply = chatops.command(parse_deploy("stats api"), Caller("U0ALICE01", "C0HERE"))
    assert reply.blocks is not None and "acme/api: production" in json.dumps(reply.blocks)
    assert reply.as_kwargs()["response_type"] == "ephemeral"
    with pytest.raises(BadCommand, match="does not work out DORA figures"):
        ChatOps(world.service).command(parse_deploy("stats"), Caller("U0ALICE01"))


def test_an_empty_report_says_what_to_configure(world_for: WorldFactory, tmp_path: Path) -> None:
    env = commands_env(tmp_path / "checkout")
    world = world_for({"acme/several": {"environments": {"blue": env, "green": env}}})
    report: DoraReport = DoraStats(world.settings, MemoryStore(), clock=lambda: UNTIL).report()
    assert report.repos == () and report.uncounted == ("acme/several",)
    assert "No environment is counted" in "\n".join(report_lines(report))
    assert "No environment is counted" in json.dumps(dora_section(report))
