"""Block Kit builders and mrkdwn helpers: checked as data against Slack's limits and the design's wording."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import AccessDenied, BadCommand
from bot.models import Actor, Deploy, DeployState, Lock, MergedPull, Source
from bot.slack.blocks.announcements import merge_announcement
from bot.slack.blocks.replies import error_text, help_blocks, status_blocks
from bot.slack.blocks.thread import StepState, StepView, progress_message, root_message
from bot.slack.ids import CANCEL_ACTION, DEPLOY_ACTION_PATTERN, decode_deploy_value
from bot.slack.text import code_block, escape, fmt_duration, fmt_time, mention, truncate

SHA = "abc1234def5678abc1234def5678abc1234def56"
URL = f"https://github.com/acme/api/commit/{SHA}"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
Block = dict[str, Any]


def deploy(state: DeployState = DeployState.RUNNING, **kw: Any) -> Deploy:
    """A deploy of acme/api to production with overridable fields."""
    values: dict[str, Any] = {
        "id": 42,
        "repo": "acme/api",
        "env": "production",
        "ref": "main",
        "sha": SHA,
        "requested_by": "U012ABCDEF",
        "source": Source.COMMAND,
        "state": state,
        "created_at": T0,
        "started_at": T0,
    }
    values.update(kw)
    return Deploy(**values)


def check_shape(text: str, blocks: list[Block]) -> None:
    """Slack's limits and the minimal Block Kit shape every builder must respect."""
    assert 0 < len(text) < 4000
    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert block["type"] in ("section", "context", "actions", "divider", "header")
        if block["type"] == "section":
            assert block["text"]["type"] in ("mrkdwn", "plain_text")
            assert 0 < len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert all(0 < len(e["text"]) <= 3000 for e in block["elements"])
        if block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
            ids = [b["action_id"] for b in block["elements"]]
            assert len(ids) == len(set(ids))
            for button in block["elements"]:
                assert button["type"] == "button"
                assert len(button["value"]) <= 2000
                assert len(button["text"]["text"]) <= 75
    json.dumps(blocks)  # must be plain data


def texts(blocks: list[Block]) -> str:
    """Every visible text of the blocks, joined."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            out.append(element["text"] if isinstance(element["text"], str) else element["text"]["text"])
    return "\n".join(out)


def buttons(blocks: list[Block]) -> list[Block]:
    """Every button of the blocks."""
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


# --- text helpers ---------------------------------------------------------------------------------


def test_escape_makes_mentions_and_links_inert() -> None:
    assert escape("<!channel> hi <@U123> & <http://x|y>") == (
        "&lt;!channel&gt; hi &lt;@U123&gt; &amp; &lt;http://x|y&gt;"
    )
    assert escape("&amp;") == "&amp;amp;"


def test_code_block_keeps_the_last_lines_and_marks_the_cut() -> None:
    lines = [f"line {i}" for i in range(10_000)]
    block = code_block(lines, 500)
    assert len(block) <= 500
    assert block.startswith("```\n… ") and block.endswith("\nline 9999\n```")
    kept = block.count("\nline ")
    assert f"… {10_000 - kept} earlier lines cut" in block


def test_code_block_never_breaks_its_fence_or_pings() -> None:
    block = code_block(["before", "```", "<!channel> done ``` x", "````"], 2900)
    assert block.count("```") == 2
    assert block.startswith("```\n") and block.endswith("\n```")
    assert "<!channel>" not in block and "&lt;!channel&gt;" in block


def test_code_block_with_a_one_megabyte_line_keeps_its_end() -> None:
    huge = "x" * 1_000_000 + " END"
    block = code_block(["first", huge], 2900)
    assert len(block) <= 2900
    assert block.endswith(" END\n```")
    assert "… 1 earlier line cut" in block


def test_code_block_of_nothing_says_so() -> None:
    assert code_block([], 100) == "```(no output)```"
    with pytest.raises(ValueError, match="at least"):
        code_block(["x"], 10)


def test_truncate_marks_the_cut_and_never_splits_markup() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("a" * 100, 20)
    assert len(cut) == 20 and cut.endswith("… (cut)")
    cut = truncate("see <https://example.com/very/long|link> now", 20)
    assert "<" not in cut and cut.endswith("… (cut)")


def test_mention_only_for_slack_user_ids() -> None:
    assert mention(Actor.parse("slack:U012ABCDEF")) == "<@U012ABCDEF>"
    assert mention(Actor.parse("W012ABCDEF", Source.BUTTON)) == "<@W012ABCDEF>"
    assert mention(Actor.parse("cli:root")) == "root (terminal)"
    assert mention(Actor.parse("slack:<!channel>")) == "&lt;!channel&gt;"
    assert mention(Actor.parse("robot")) == "the robot"


def test_a_github_login_shaped_like_a_slack_id_is_never_a_mention() -> None:
    # A merge deploy's requester is the merger's GitHub login; `U12345` is a valid one.
    assert mention(Actor.parse("github:U012ABCDEF")) == "U012ABCDEF (GitHub)"
    assert mention(Actor.parse("U012ABCDEF", Source.MERGE)) == "U012ABCDEF (GitHub)"  # a row from before
    merge = deploy(requested_by="github:U012ABCDEF", source=Source.MERGE)
    text, blocks = root_message(merge, "https://github.test/c", None)
    assert "<@U012ABCDEF>" not in text + str(blocks)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (42.4, "42 s"),
        (60, "1 min"),
        (185, "3 min 5 s"),
        (3720, "1 h 2 min"),
        (-3, "0 s"),
    ],
)
def test_fmt_duration(seconds: float, shown: str) -> None:
    assert fmt_duration(seconds) == shown


def test_fmt_time_is_a_slack_date_token_with_a_utc_fallback() -> None:
    assert (
        fmt_time(T0) == f"<!date^{int(T0.timestamp())}^{{date_short_pretty}} {{time}}|2026-01-02 03:04 UTC>"
    )
    assert fmt_time(T0.replace(tzinfo=None)) == fmt_time(T0)


# --- root message -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [DeployState.QUEUED, DeployState.RUNNING])
def test_root_message_has_cancel_while_active(state: DeployState) -> None:
    text, blocks = root_message(deploy(state), URL, 12)
    check_shape(text, blocks)
    body = texts(blocks)
    assert body.startswith("*🚀 Deploy #42 · acme/api → production*")
    assert f"`main` (<{URL}|abc1234>)" in body
    assert "Requested by <@U012ABCDEF> via /deploy" in body
    assert f"State: {'⏳' if state is DeployState.QUEUED else '🚀'} {state.value} · 12 s" in body
    [button] = buttons(blocks)
    assert button["action_id"] == CANCEL_ACTION and button["value"] == "42"


@pytest.mark.parametrize(
    ("state", "icon"),
    [
        (DeployState.SUCCEEDED, "✅"),
        (DeployState.FAILED, "❌"),
        (DeployState.CANCELLED, "⛔"),
        (DeployState.BLOCKED, "🚫"),
        (DeployState.INTERRUPTED, "⚠️"),
    ],
)
def test_root_message_final_states_have_no_button(state: DeployState, icon: str) -> None:
    text, blocks = root_message(deploy(state, error="step 2/3 `make` exited 1 <!channel>"), URL, 185)
    check_shape(text, blocks)
    assert buttons(blocks) == []
    body = texts(blocks)
    assert f"State: {icon} {state.value} · 3 min 5 s" in body
    assert text.startswith(icon)
    if state is DeployState.SUCCEEDED:
        assert "exited 1" not in body
    else:
        assert "> step 2/3 `make` exited 1 &lt;!channel&gt;" in body


def test_root_message_for_a_terminal_user_a_sha_ref_and_a_giant_error() -> None:
    d = deploy(DeployState.FAILED, requested_by="cli:root", ref=SHA, source=Source.CLI, error="e" * 100_000)
    text, blocks = root_message(d, "javascript:alert(1)", None)
    check_shape(text, blocks)
    body = texts(blocks)
    assert "Requested by root (terminal) via terminal" in body
    assert "Ref: `abc1234`" in body  # an unsafe URL is not linked
    assert "… (cut)" in body


def test_root_message_hides_cancel_once_requested() -> None:
    text, blocks = root_message(deploy(DeployState.RUNNING, cancel_requested=True), URL, 5)
    check_shape(text, blocks)
    assert buttons(blocks) == []
    assert "cancel requested" in texts(blocks)


def test_root_message_shows_force() -> None:
    _, blocks = root_message(deploy(DeployState.QUEUED, force=True, source=Source.BUTTON), URL, None)
    assert "via Deploy button · forced (CI gate skipped)" in texts(blocks)


# --- progress -----------------------------------------------------------------------------------


def test_progress_lines_task_and_elapsed() -> None:
    steps = [
        StepView(1, "git fetch origin", StepState.OK),
        StepView(2, "ansible-playbook deploy/site.yml", StepState.RUNNING),
        StepView(3, "make <restart>", StepState.PENDING),
    ]
    text, blocks = progress_message(steps, "Install packages <!here>", 65, None)
    check_shape(text, blocks)
    body = texts(blocks)
    assert "✓ 1/3 `git fetch origin`" in body
    assert "… 2/3 `ansible-playbook deploy/site.yml`" in body
    assert "○ 3/3 `make &lt;restart&gt;`" in body
    assert "Task: *Install packages &lt;!here&gt;*" in body
    assert "Elapsed: 1 min 5 s" in body
    assert "```" not in body


def test_progress_failure_shows_reason_and_escaped_tail() -> None:
    steps = [StepView(1, "make", StepState.FAILED, "exited 2")]
    tail = [f"out {i}" for i in range(100)] + ["<!channel> ``` broken"]
    text, blocks = progress_message(steps, None, 3, tail)
    check_shape(text, blocks)
    body = texts(blocks)
    assert "✗ 1/1 `make` — exited 2" in body
    assert "… 61 earlier lines cut\nout 61\n" in body and "out 60" not in body  # the last 40 lines
    assert "&lt;!channel&gt;" in body and "<!channel>" not in body
    assert body.count("```") == 2
    assert text == "Step 1/1 failed: make"


def test_progress_with_ten_thousand_steps_stays_in_limits_and_shows_the_failure() -> None:
    steps = [StepView(i, f"step number {i} " + "x" * 50, StepState.OK) for i in range(1, 10_001)]
    steps[5000] = StepView(5001, "the broken one", StepState.FAILED, "r" * 10_000)
    steps[5001:] = [StepView(i, "later", StepState.PENDING) for i in range(5002, 10_001)]
    text, blocks = progress_message(steps, "t" * 10_000, 1.0, ["y" * 1_000_000] * 3)
    check_shape(text, blocks)
    body = texts(blocks)
    assert "✗ 5001/10000 `the broken one`" in body
    assert "earlier" in body and "more" in body


def test_progress_with_no_steps() -> None:
    text, blocks = progress_message([], None, 0, None)
    check_shape(text, blocks)
    assert "No steps." in texts(blocks)


# --- merge announcement -------------------------------------------------------------------------


def test_announcement_of_one_pull_with_a_button_per_environment() -> None:
    pulls = [MergedPull(123, "Fix login", "carol", "alice")]
    text, blocks = merge_announcement(
        "acme/api", pulls, SHA, "main", "success", ["staging", "production"], URL
    )
    check_shape(text, blocks)
    assert blocks[0]["text"]["text"] == (
        f'🔀 acme/api #123 "Fix login" merged by @alice into main (<{URL}|abc1234>) · CI: ✅'
    )
    assert text == '🔀 acme/api #123 "Fix login" merged by @alice into main (abc1234) · CI: ✅'
    found = buttons(blocks)
    assert [b["text"]["text"] for b in found] == ["Deploy to staging", "Deploy to production"]
    for button, env in zip(found, ["staging", "production"], strict=True):
        assert DEPLOY_ACTION_PATTERN.match(button["action_id"])
        assert decode_deploy_value(button["value"]) == ("acme/api", env, SHA)


def test_announcement_of_a_direct_push() -> None:
    text, blocks = merge_announcement("acme/api", [], SHA, "main", "pending", ["production"], URL)
    check_shape(text, blocks)
    assert "direct push" in text and "CI: ⏳" in text
    assert len(buttons(blocks)) == 1


def test_announcement_of_several_pulls_names_the_newest_and_lists_the_rest() -> None:
    pulls = [MergedPull(n, f"change <{n}>", f"dev{n}") for n in range(100, 400)]
    text, blocks = merge_announcement("acme/api", pulls, SHA, "main", "failure", ["e"] * 3 + ["f"], URL)
    check_shape(text, blocks)
    body = texts(blocks)
    assert body.startswith('🔀 acme/api #399 "change &lt;399&gt;" merged by @dev399')
    assert "Also merged:" in body and '• #398 "change &lt;398&gt;" by @dev398' in body
    assert "more" in body and "CI: ❌" in body
    assert [b["text"]["text"] for b in buttons(blocks)] == ["Deploy to e", "Deploy to f"]


def test_announcement_with_many_environments_and_an_unknown_ci_word() -> None:
    envs = [f"env{i}" for i in range(60)] + ["bad env"]
    text, blocks = merge_announcement("acme/api", [], SHA, "main", "<weird>", envs, URL)
    check_shape(text, blocks)
    assert len(buttons(blocks)) == 60
    assert "CI: &lt;weird&gt;" in text


# --- status -------------------------------------------------------------------------------------


def test_status_when_nothing_happens() -> None:
    text, blocks = status_blocks([], [], [], [])
    check_shape(text, blocks)
    assert texts(blocks) == "Nothing running, nothing queued, no recent deploys, no locks."


def test_status_sections() -> None:
    now = datetime.now(UTC)
    running = [deploy(DeployState.RUNNING, id=50, started_at=now - timedelta(seconds=30))]
    queued = [
        deploy(DeployState.QUEUED, id=52, started_at=None),
        deploy(DeployState.QUEUED, id=51, started_at=None),
        deploy(DeployState.QUEUED, id=53, env="staging", started_at=None),
    ]
    recent = [deploy(DeployState.FAILED, id=i, finished_at=T0) for i in range(40, 50)]
    locks = [Lock("acme/api", "staging", "U0LOCKER1", "db <migration>", T0)]
    text, blocks = status_blocks(running, queued, recent, locks, {50: "step 2/3 `make`"})
    check_shape(text, blocks)
    body = texts(blocks)
    assert "*Running*\n🚀 #50 *acme/api → production* `abc1234` · <@U012ABCDEF> · " in body
    assert "step 2/3 `make`" in body
    assert "⏳ #51 *acme/api → production* `abc1234` · <@U012ABCDEF> · 2nd in line" in body
    assert "#52 *acme/api → production* `abc1234` · <@U012ABCDEF> · 3rd in line" in body
    assert "#53 *acme/api → staging* `abc1234` · <@U012ABCDEF> · 1st in line" in body
    assert "❌ #49" in body and "#47" in body and "#46" not in body  # the last three per environment
    assert fmt_time(T0) in body
    assert "🔒 *acme/api → staging* · <@U0LOCKER1>" in body and "db &lt;migration&gt;" in body
    assert text == "1 running, 3 queued, 1 locked"


def test_status_with_thousands_of_entries_stays_in_limits() -> None:
    queued = [deploy(DeployState.QUEUED, id=i, env=f"e{i % 7}", requested_by="x" * 500) for i in range(5000)]
    locks = [Lock("acme/api", f"e{i}", "U0LOCKER1", "r" * 5000, T0) for i in range(2000)]
    text, blocks = status_blocks(queued[:2000], queued, queued, locks)
    check_shape(text, blocks)
    assert "more" in texts(blocks)


def test_status_says_which_parts_are_empty() -> None:
    _, blocks = status_blocks([], [], [], [Lock("acme/api", "production", "cli:root", "", T0)])
    body = texts(blocks)
    assert "Nothing running." in body and "Nothing queued." in body and "No recent deploys." in body


# --- help and errors ----------------------------------------------------------------------------


def test_help_and_error_text() -> None:
    text, blocks = help_blocks()
    check_shape(text, blocks)
    assert "/deploy cancel <id>" in texts(blocks)
    assert error_text("Unknown environment `prod`.\nEnvironments: <a>") == (
        "⚠️ Unknown environment `prod`. Environments: &lt;a&gt;"
    )
    assert len(error_text("x" * 10_000)) <= 3000


def test_where_blocks_show_lock_and_last_deploy() -> None:
    from datetime import UTC, datetime

    from bot.models import Deploy, DeployState, EnvironmentView, Lock, Source
    from bot.slack.blocks.replies import where_blocks

    when = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    last = Deploy(
        1,
        "acme/api",
        "staging",
        "main",
        "a" * 40,
        "U0123ABCD",
        Source.COMMAND,
        DeployState.SUCCEEDED,
        created_at=when,
        finished_at=when,
    )
    lock = Lock("acme/api", "production", "U7", "freeze <!channel>", when)
    text, blocks = where_blocks(
        [
            EnvironmentView("acme/api", "staging", True, None, last),
            EnvironmentView("acme/api", "production", False, lock, None),
        ]
    )
    body = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert text == "Environments of acme/api"
    assert "*staging* (default)" in body and "#1" in body and "<@U0123ABCD>" in body
    assert "*production*" in body and "Never deployed by the robot." in body
    assert "freeze &lt;!channel&gt;" in body and "<!channel>" not in body


def test_a_refusal_names_who_may_as_live_mentions_and_escapes_the_rest() -> None:
    refused = AccessDenied("You may not deploy `<!channel>`. Allowed: <@U1>, <!subteam^S2>.", ("U1", "S2"))
    text = error_text(refused)
    assert text.endswith("Allowed: <@U1>, <!subteam^S2>.")
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    # Only an AccessDenied's own list is kept live: the same markup elsewhere stays escaped.
    assert "<@U1>" not in error_text(BadCommand("`<@U1>` is not a repo"))
    assert "<@U1>" not in error_text(AccessDenied("You may not: <@U1>"))
