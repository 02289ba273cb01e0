"""Ephemeral answers to commands: `/deploy-status`, `/deploy where`, `/deploy help`, and errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bot.errors import AccessDenied, BotError
from bot.models import ROLLBACK_MARK, ApprovalView, Deploy, EnvironmentView, Lock
from bot.slack.blocks.approvals import approved_by, who_may_approve
from bot.slack.blocks.primitives import MAX_SECTION, Block, Message, finish, section
from bot.slack.text import escape, fmt_duration, fmt_time, mention, truncate
from bot.text import fmt_remaining, one_line, slack_mentions

HELP_TEXT = "\n".join(
    (
        "*Deploy robot*",
        "`/deploy <repo>[@<ref>] [to <env>][!]` deploy; <repo> is owner/name, or name when unique;"
        " <ref> defaults to the repo's branch, <env> to its default environment; `!` (the repo's force"
        " list) skips the CI gate and any approval: break glass",
        "`/deploy cancel <id>` stop a deploy awaiting approval, queued, waiting for CI or running",
        "`/deploy lock <repo> [to <env>] [for <duration>] [: reason]` block deploys until unlocked,"
        " or for a while: `for 30m`, `2h`, `1d`, `1h30m`, `90s` (at most 30 days)",
        "`/deploy unlock <repo> [to <env>]` lift a lock",
        "`/deploy where <repo>` environments, their locks and last deploy",
        "`/deploy rollback <repo> [to <env>]` redeploy the SHA that ran before the current one"
        " (no CI gate: it succeeded there before; a second rollback goes further back)",
        "`/deploy changes <repo> [to <env>]` what deploying the branch head now would ship",
        "`/deploy approve <id>` approve a deploy to an environment that wants approvals",
        "`/deploy reject <id> [: reason]` reject it: it will not run",
        "`/deploy stats [<repo>] [<env>]` DORA figures of the last 30 days: deploy frequency, lead time,"
        " change failure rate, recovery time, each with its level and a 12-week trend",
        "`/deploy help` this text",
        "`/deploy-status [<repo>] [<env>]` running, queued, awaiting approval and recent deploys; locks",
    )
)
_RECENT_PER_ENV = 3
_SECTIONS_PER_PART = 6


def status_blocks(
    running: Sequence[Deploy],
    queued: Sequence[Deploy],
    recent: Sequence[Deploy],
    locks: Sequence[Lock],
    current_steps: Mapping[int, str] | None = None,
    awaiting: Sequence[tuple[Deploy, ApprovalView | None]] = (),
) -> Message:
    """`/deploy-status`: running (elapsed, current step), queued (position), awaiting approval
    (who may approve, who did; only when some do), recent per environment, locks."""
    if not (running or queued or recent or locks or awaiting):
        return finish(
            "Nothing running, nothing queued, no recent deploys, no locks.",
            [section("Nothing running, nothing queued, no recent deploys, no locks.")],
        )
    steps = current_steps or {}
    blocks: list[Block] = []
    blocks += _part("Running", [_running_line(d, steps.get(d.id)) for d in running], "Nothing running.")
    blocks += _part("Queued", _queued_lines(queued, running), "Nothing queued.")
    if awaiting:
        blocks += _part("Awaiting approval", [_awaiting_line(d, view) for d, view in awaiting], "")
    blocks += _part("Recent", _recent_lines(recent), "No recent deploys.")
    blocks += _part("Locks", [_lock_line(lock) for lock in locks], "No locks.")
    fallback = f"{len(running)} running, {len(queued)} queued, {len(locks)} locked"
    return finish(fallback, blocks)


def where_blocks(views: Sequence[EnvironmentView]) -> Message:
    """`/deploy where <repo>`: each environment, its lock and its last deploy."""
    lines = []
    for view in views:
        line = f"*{escape(view.env)}*" + (" (default)" if view.is_default else "")
        if view.lock is not None:
            line += "\n" + _lock_line(view.lock)
        if view.last is not None:
            when = view.last.finished_at or view.last.started_at or view.last.created_at
            line += "\nLast: " + _deploy_head(view.last) + f" · {mention(view.last.requester)}"
            line += f" · {fmt_time(when)}" if when else ""
        else:
            line += "\nNever deployed by the robot."
        lines.append(line)
    # The fallback is mrkdwn too (notifications show it): escaped like the blocks.
    repo = escape(views[0].repo) if views else ""
    return finish(f"Environments of {repo}", _part(f"Environments of {repo}", lines, "None."))


def help_blocks() -> Message:
    """The `/deploy help` reply."""
    return finish("Deploy robot commands", [section(HELP_TEXT)])


def error_text(message: str | BotError) -> str:
    """An ephemeral one-line error reply, escaped, within a section's limit.

    An AccessDenied keeps the mentions of who may (ids from the config, never user input) live.
    """
    text = escape(one_line(str(message)))
    if isinstance(message, AccessDenied):
        for mention in slack_mentions(message.allowed).split(", ") if message.allowed else ():
            text = text.replace(escape(mention), mention)
    # Escaping can make text five times longer (`&` → `&amp;`), so the cut comes after it.
    return "⚠️ " + truncate(text, MAX_SECTION - 10)


def _running_line(deploy: Deploy, step: str | None) -> str:
    """One running deploy: what, who, elapsed, current step."""
    line = _deploy_head(deploy) + f" · {mention(deploy.requester)}"
    if deploy.duration_seconds is not None:
        line += f" · {fmt_duration(deploy.duration_seconds)}"
    if step:
        line += f" · {escape(truncate(one_line(step), 200))}"
    return line


def _awaiting_line(deploy: Deploy, view: ApprovalView | None) -> str:
    """One deploy awaiting approval: what, who asked, its approvals and who may give them."""
    line = _deploy_head(deploy) + f" · {mention(deploy.requester)}"
    if view is not None:
        line += f" · {len(view.approvals)}/{view.required} from {who_may_approve(view.approvers)}"
        if view.approvals:
            line += f" · approved by {approved_by(view)}"
    return line


def _queued_lines(queued: Sequence[Deploy], running: Sequence[Deploy]) -> list[str]:
    """Queued deploys with their place in their repo + environment's line."""
    busy = {(d.repo, d.env) for d in running}
    seen: dict[tuple[str, str], int] = {}
    lines = []
    for deploy in sorted(queued, key=lambda d: d.id):
        key = (deploy.repo, deploy.env)
        seen[key] = seen.get(key, 0) + 1
        place = seen[key] + (1 if key in busy else 0)
        lines.append(_deploy_head(deploy) + f" · {mention(deploy.requester)} · {_ordinal(place)} in line")
    return lines


def _recent_lines(recent: Sequence[Deploy]) -> list[str]:
    """The last few deploys of each repo + environment: result, who, when."""
    per_env: dict[tuple[str, str], list[Deploy]] = {}
    for deploy in sorted(recent, key=lambda d: d.id, reverse=True):
        group = per_env.setdefault((deploy.repo, deploy.env), [])
        if len(group) < _RECENT_PER_ENV:
            group.append(deploy)
    lines = []
    for group in per_env.values():
        for deploy in group:
            line = _deploy_head(deploy) + f" · {mention(deploy.requester)}"
            when = deploy.finished_at or deploy.started_at or deploy.created_at
            if when is not None:
                line += f" · {fmt_time(when)}"
            lines.append(line)
    return lines


def _lock_line(lock: Lock, now: datetime | None = None) -> str:
    """🔒 repo → env, who, when, for how much longer, why."""
    line = f"🔒 *{escape(lock.repo)} → {escape(lock.env)}* · {mention(lock.locker)}"
    line += f" · {fmt_time(lock.locked_at)}"
    left = lock.remaining_seconds(now or datetime.now(UTC))
    if left is not None:
        line += f" · {fmt_remaining(left)}"
    if lock.reason:
        line += f" · {escape(truncate(one_line(lock.reason), 200))}"
    return line


def _deploy_head(deploy: Deploy) -> str:
    """`✅ #42 acme/api → production `abc1234``."""
    icon = deploy.state.icon
    head = f"{icon} #{deploy.id} *{escape(deploy.repo)} → {escape(deploy.env)}* `{escape(deploy.short_sha)}`"
    return head + (f" {ROLLBACK_MARK}" if deploy.rollback_of is not None else "")


def _part(title: str, lines: Sequence[str], empty: str) -> list[Block]:
    """A titled list packed into as few sections as fit, with a marker when some were left out."""
    if not lines:
        return [section(f"*{title}*\n{empty}")]
    sections: list[list[str]] = [[f"*{title}*"]]
    size = len(title) + 2
    shown = 0
    for line in lines:
        line = truncate(line, MAX_SECTION - 200)
        if size + len(line) + 1 > MAX_SECTION - 100:
            if len(sections) == _SECTIONS_PER_PART:
                break
            sections.append([])
            size = 0
        sections[-1].append(line)
        size += len(line) + 1
        shown += 1
    if shown < len(lines):
        sections[-1].append(f"… {len(lines) - shown} more")
    return [section("\n".join(s)) for s in sections]


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th…"""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
