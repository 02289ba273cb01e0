"""Change lists on the in-memory fakes: the summary text, the Slack builders and the service."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.changes import ChangeLists, CommitLine, Summary, summarize, summary_lines
from bot.errors import GitHubError
from bot.models import ChangeKind, ChangeList, CommitInfo, Comparison, Deploy, DeployState, Source
from bot.redact import Redactor
from bot.slack.blocks.changes import changes_reply, changes_text, literal
from bot.slack.blocks.replies import help_blocks
from bot.slack.blocks.thread import root_message
from bot.slack.commands import USAGE, ChangesCommand, parse_deploy
from tests.fakes.memory import MemoryGitHub
from tests.support.harness import TOKEN
from tests.unit.conftest import API, World, WorldFactory

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BASE = "1a2b3c4" + "0" * 33
HEAD = "9f8e7d6" + "0" * 33


def commit(n: int, title: str = "", author: str = "alice") -> CommitInfo:
    return CommitInfo(f"{n:07x}" + "f" * 33, title or f"Change {n}", (), author, NOW - timedelta(hours=n))


def listed(
    kind: ChangeKind, ahead: int = 0, behind: int = 0, commits: tuple[CommitInfo, ...] = ()
) -> ChangeList:
    return ChangeList(kind, HEAD, BASE, 41, NOW - timedelta(hours=2), ahead, behind, commits)


# ---- the summary ---------------------------------------------------------------------------


def test_ahead_lists_the_newest_ten_then_how_many_more() -> None:
    commits = tuple(commit(n) for n in range(1, 14))
    summary = summarize(listed(ChangeKind.AHEAD, 13, 0, commits), "production", NOW)
    assert summary.headline == "Changes: 13 commits since 1a2b3c4 (deploy #41, 2 h ago)"
    assert [c.title for c in summary.commits] == [f"Change {n}" for n in range(13, 3, -1)]
    assert summary.more == 3
    lines = summary_lines(summary, "https://github.com/acme/api/compare/a...b")
    assert lines[1] == f"• {commits[-1].sha[:7]} Change 13 · alice"
    assert lines[-2:] == ["+3 more", "Compare: https://github.com/acme/api/compare/a...b"]


def test_every_kind_has_its_headline() -> None:
    def headline(changes: ChangeList) -> str:
        return summarize(changes, "production", NOW).headline

    assert headline(ChangeList(ChangeKind.FIRST, HEAD)) == "Changes: first deploy to production"
    assert headline(listed(ChangeKind.BEHIND, 0, 4)) == (
        "Changes: ⏪ goes back 4 commits from 1a2b3c4 (deploy #41, 2 h ago)"
    )
    assert headline(listed(ChangeKind.IDENTICAL)) == "Changes: none, redeploys 1a2b3c4 (deploy #41, 2 h ago)"
    assert headline(listed(ChangeKind.DIVERGED, 2, 3, (commit(1), commit(2)))) == (
        "Changes: diverged from 1a2b3c4 (deploy #41, 2 h ago): 2 commits ahead, 3 commits behind (force push)"
    )
    unavailable = ChangeList(ChangeKind.UNAVAILABLE, HEAD, BASE, 41, note="GitHub 502 on compare commits")
    assert headline(unavailable) == "Changes: unavailable (GitHub 502 on compare commits)"
    assert headline(listed(ChangeKind.AHEAD, 1, 0, (commit(1),))).startswith("Changes: 1 commit since")


def test_pull_numbers_are_read_from_titles() -> None:
    assert commit(1, "Fix login (#123)").pull_number == 123
    assert commit(1, "Merge pull request #7 from acme/fix").pull_number == 7
    assert commit(1, "Fix #123 later").pull_number is None


# ---- the Slack builders --------------------------------------------------------------------

HOSTILE = "<!channel> ping <@U123> *bold* & _it_ `tick`"


def test_hostile_commit_text_is_inert_in_slack() -> None:
    summary = Summary("Changes: 1 commit since 1a2b3c4", (CommitLine("9f8e7d6", HOSTILE, "<@U999>"),))
    text = changes_text(summary, None)
    assert "<!channel>" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "&lt;@U123&gt;" in text and "&amp;" in text
    # mrkdwn formatting is held in a code span, so `*bold*` shows as typed.
    assert "`&lt;!channel&gt; ping &lt;@U123&gt; *bold* &amp; _it_ 'tick'`" in text
    assert "<@U999>" not in text and "&lt;@U999&gt;" in text
    assert literal("Fix login (#123)") == "Fix login (#123)"


def test_the_root_shows_the_change_list_with_its_compare_link() -> None:
    deploy = Deploy(7, API, "production", "main", HEAD, "slack:U1", Source.COMMAND, DeployState.RUNNING)
    summary = summarize(listed(ChangeKind.AHEAD, 1, 0, (commit(1, "Fix login (#123)"),)), "production", NOW)
    url = f"https://github.com/{API}/compare/{BASE}...{HEAD}"
    _, blocks = root_message(deploy, "https://github.com/x", 3.0, changes=changes_text(summary, url))
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "Changes: 1 commit since 1a2b3c4 (deploy #41, 2 h ago)" in shown
    assert f"• {commit(1).sha[:7]} Fix login (#123) · alice" in shown
    assert f"<{url}|Compare on GitHub>" in shown
    _, plain = root_message(deploy, "https://github.com/x", 3.0)
    assert "Changes" not in json.dumps(plain)


def test_the_changes_reply_names_what_would_be_deployed() -> None:
    summary = summarize(ChangeList(ChangeKind.FIRST, HEAD), "production", NOW)
    text, blocks = changes_reply(API, "production", "main", HEAD, summary, None)
    assert "acme/api@main (9f8e7d6) → production" in text
    assert "first deploy to production" in json.dumps(blocks, ensure_ascii=False)


def test_changes_is_a_command_word_in_the_usage_and_the_help() -> None:
    assert parse_deploy("changes acme/api") == ChangesCommand("acme/api")
    assert parse_deploy("changes api to staging") == ChangesCommand("api", "staging")
    assert "`/deploy changes <repo> [to <env>]`" in USAGE
    assert "`/deploy changes <repo> [to <env>]`" in json.dumps(help_blocks()[1])


# ---- the service on the memory fakes -------------------------------------------------------


def _lists(world: World) -> ChangeLists:
    return ChangeLists(world.settings, world.github, world.store, Redactor([TOKEN]))


def _succeed(world: World, sha: str | None = None, deploy: Deploy | None = None) -> Deploy:
    deploy = deploy or world.request(ref=sha)
    world.store.claim_next(only_id=deploy.id)
    return world.store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)


def test_one_compare_per_sha_pair_and_none_for_first_or_equal(world_for: WorldFactory) -> None:
    world = world_for()
    lists = _lists(world)
    gh: MemoryGitHub = world.github
    first = world.request()
    assert lists.for_deploy(first).kind is ChangeKind.FIRST
    base = _succeed(world, deploy=first)
    head = gh.push(API)
    gh.comparisons[(API, base.sha, head)] = Comparison(
        "ahead", 2, 0, 2, (commit(1, f"Use {TOKEN}"), commit(2, "Fix login (#123)", "bob"))
    )
    one = world.request(ref=head)
    changes = lists.for_deploy(one)
    assert changes.kind is ChangeKind.AHEAD and changes.ahead_by == 2 and changes.base_deploy_id == base.id
    assert TOKEN not in changes.commits[0].title and "••••••" in changes.commits[0].title
    assert len(gh.compare_calls) == 1
    world.store.cancel_queued(one.id)
    again = world.request(ref=head)
    assert lists.for_deploy(again).ahead_by == 2
    assert len(gh.compare_calls) == 1, "the same SHA pair is compared once"
    recorded = world.store.get_changes(again.id)
    assert recorded is not None and [c.title for c in recorded.commits][1] == "Fix login (#123)"
    world.store.cancel_queued(again.id)
    redeploy = world.request(ref=base.sha)
    assert lists.for_deploy(redeploy).kind is ChangeKind.IDENTICAL
    assert len(gh.compare_calls) == 1


def test_a_failed_or_unrelated_compare_is_unavailable_not_an_error(world_for: WorldFactory) -> None:
    world = world_for()
    lists = _lists(world)
    gh: MemoryGitHub = world.github
    base = _succeed(world, gh.refs[API]["main"])
    head = gh.push(API)
    gh.compare_failures.append(GitHubError(f"GitHub 502 on compare commits for {API} after 3 tries {TOKEN}"))
    deploy = world.request(ref=head)
    changes = lists.for_deploy(deploy)
    assert changes.kind is ChangeKind.UNAVAILABLE and "502" in changes.note and TOKEN not in changes.note
    assert world.store.get_comparison(API, base.sha, head) is None, "a failure is not cached"
    world.store.cancel_queued(deploy.id)
    gh.comparisons[(API, base.sha, head)] = Comparison("unrelated", 0, 0, 0, ())
    changes = lists.for_deploy(world.request(ref=head))
    assert changes.kind is ChangeKind.UNAVAILABLE and "no common history" in changes.note


def test_a_pipeline_with_change_lists_records_them_at_claim(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for()
    world.pipeline.changes = _lists(world)
    deploy = world.request()
    assert world.run(deploy.id).state is DeployState.SUCCEEDED
    recorded = world.store.get_changes(deploy.id)
    assert recorded is not None and recorded.kind is ChangeKind.FIRST
    world.github.compare_failures.append(RuntimeError("a robot bug in the compare path"))
    second = world.request(ref=world.github.push(API))
    assert world.run(second.id).state is DeployState.SUCCEEDED, "a change list never fails a deploy"
