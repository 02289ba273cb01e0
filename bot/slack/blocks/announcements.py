"""The merge announcement: a new branch head, the pull requests behind it, and its Deploy buttons."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import MergedPull
from bot.slack.blocks.primitives import (
    MAX_ACTIONS,
    MAX_SECTION,
    Block,
    Message,
    actions,
    button,
    context,
    finish,
    link,
    section,
    window,
)
from bot.slack.ids import deploy_action_id, encode_deploy_value
from bot.slack.text import escape, truncate
from bot.text import one_line

_CI_ICONS = {"success": "✅", "failure": "❌", "pending": "⏳", "missing": "❔"}


def merge_announcement(
    repo: str,
    pulls: Sequence[MergedPull],
    sha: str,
    branch: str,
    ci: str,
    environments: Sequence[str],
    commit_url: str,
    notes: Sequence[str] = (),
) -> Message:
    """A new branch head: the pull request(s) behind it, CI state, and one Deploy button per environment.

    ``notes`` are extra plain-text lines (force push, direct pushes, auto-deploy), shown escaped.
    """
    newest = sorted(pulls, key=lambda p: p.number, reverse=True)
    ci_text = _CI_ICONS.get(ci.lower(), escape(truncate(one_line(ci), 40)))
    where = f"into {escape(branch)} ({link(commit_url, sha[:7])}) · CI: {ci_text}"
    if newest:
        head = newest[0]
        merger = _login(head.merged_by or head.author)
        headline = f"🔀 {escape(repo)} {_pull(head)} merged by {merger} {where}"
    else:
        headline = f"🔀 {escape(repo)}: direct push (no pull request) {where}"
    text = headline
    if len(newest) > 1:
        others = [f"• {_pull(p)} by {_login(p.author)}" for p in newest[1:]]
        text += "\nAlso merged:\n" + "\n".join(window(others, 0, MAX_SECTION - len(headline) - 50))
    blocks: list[Block] = [section(text)]
    if notes:
        blocks.append(context(escape(truncate("\n".join(one_line(n) for n in notes), MAX_SECTION - 100))))
    buttons: list[Block] = []
    for env in dict.fromkeys(environments):
        try:
            value = encode_deploy_value(repo, env, sha)
        except ValueError:
            continue  # an unencodable env or sha gets no button rather than a broken one
        buttons.append(button(f"Deploy to {env}", deploy_action_id(env), value))
    for start in range(0, min(len(buttons), MAX_ACTIONS * 10), MAX_ACTIONS):
        blocks.append(actions(buttons[start : start + MAX_ACTIONS]))
    # The short SHA goes back in escaped, like everything else in the headline: a SHA is hex from
    # GitHub, but a builder must not be the one place where raw text reaches Slack.
    fallback = headline.replace(link(commit_url, sha[:7]), escape(sha[:7]))
    return finish(fallback, blocks)


def _pull(pull: MergedPull) -> str:
    """`#123 "Fix login"`."""
    return f'#{pull.number} "{escape(truncate(one_line(pull.title), 200))}"'


def _login(login: str) -> str:
    """A GitHub login shown as text (never a Slack mention)."""
    return "@" + escape(truncate(login, 60))
