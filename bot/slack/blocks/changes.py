"""A change list in Slack: the lines under a deploy's root, and the `/deploy changes` reply."""

from __future__ import annotations

from bot.changes import Summary
from bot.slack.blocks.primitives import MAX_SECTION, Message, finish, link, section
from bot.slack.text import escape, truncate

# Characters mrkdwn pairs into formatting (bold, italic, strike, code).
_FORMATTING = frozenset("*_~`")


def literal(text: str) -> str:
    """GitHub text shown as written: escaped, and inside a code span when mrkdwn would format it."""
    safe = escape(text)
    if not _FORMATTING.intersection(safe):
        return safe
    return "`" + safe.replace("`", "'") + "`"


def changes_text(summary: Summary, compare_url: str | None) -> str:
    """The change list as mrkdwn: headline, commit lines (newest first), `+N more`, compare link."""
    lines = [escape(summary.headline)]
    for commit in summary.commits:
        line = f"• {escape(commit.short_sha)} {literal(commit.title)}"
        if commit.author:
            line += f" · {literal(commit.author)}"
        lines.append(line)
    if summary.more:
        lines.append(f"+{summary.more} more")
    if compare_url:
        lines.append(link(compare_url, "Compare on GitHub"))
    return truncate("\n".join(lines), MAX_SECTION)


def changes_reply(
    repo: str, env: str, branch: str, head_sha: str, summary: Summary, compare_url: str | None
) -> Message:
    """The `/deploy changes` answer: what deploying the branch head now would ship."""
    what = f"{repo}@{branch} ({head_sha[:7]}) → {env}"
    title = f"*If you deployed {escape(what)} now*"
    blocks = [section(title + "\n" + changes_text(summary, compare_url))]
    return finish(escape(f"{what}: {summary.headline}"), blocks)
