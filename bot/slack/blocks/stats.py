"""The DORA figures in Slack: `/deploy stats` and the section App Home shows (pure functions)."""

from __future__ import annotations

from bot.dora import SPARK_WEEKS, DoraReport, Figure, Scope, scope_title
from bot.slack.blocks.primitives import MAX_BLOCKS, Block, Message, context, finish, section
from bot.slack.text import escape

_ICONS = {
    "deployment_frequency": "🚀",
    "lead_time": "⏱️",
    "change_failure_rate": "💥",
    "recovery_time": "🩹",
}


def figure_line(figure: Figure) -> str:
    """One figure as mrkdwn: icon, name, level, 12-week sparkline, the numbers in words."""
    level = f"*{figure.level.value}*" if figure.level is not None else "no level"
    trend = figure.trend.replace(" ", "\u2007")  # a week without data keeps its place
    return f"{_ICONS.get(figure.key, '•')} *{figure.name}*: {level} `{trend}`\n      {escape(figure.text)}"


def scope_text(scope: Scope) -> str:
    """One repo's (or every repo's) four figures as mrkdwn lines, under its name."""
    return "\n".join([f"*{escape(scope_title(scope))}*", *(figure_line(f) for f in scope.figures)])


def scope_section(scope: Scope) -> Block:
    """One repo's (or every repo's) four figures in one section."""
    return section(scope_text(scope))


def dora_section(report: DoraReport, max_blocks: int = MAX_BLOCKS) -> list[Block]:
    """The DORA figures as blocks, at most ``max_blocks``: what it covers, every repo together, then
    each repo (the most deploys first) until the room runs out, saying how many were left out."""
    covers = (
        f"DORA figures, last {report.days} days to {report.until:%Y-%m-%d %H:%M} UTC · "
        f"trends: {SPARK_WEEKS} weeks, oldest first · levels: DORA 2023 report"
    )
    blocks = [context(covers)]
    if not report.repos:
        blocks.append(section("No environment is counted: mark one `dora: true` in robot.yaml."))
        return blocks[:max_blocks]
    scopes = list(report.repos)
    if len(scopes) > 1:
        scopes.sort(key=lambda s: -(s.frequency.numbers.get("deploys") or 0))
        scopes.insert(0, report.overall)
    room = max_blocks - len(blocks) - (1 if report.uncounted else 0)
    shown = scopes if len(scopes) <= room else scopes[: max(room - 1, 0)]
    blocks.extend(scope_section(scope) for scope in shown)
    if len(shown) < len(scopes):
        blocks.append(context(f"{len(scopes) - len(shown)} more repos: `/deploy stats <repo>` shows one."))
    if report.uncounted:
        blocks.append(
            context("Not counted (no `production`, no `dora: true`): " + escape(", ".join(report.uncounted)))
        )
    return blocks[:max_blocks]


DORA_HOME_BLOCKS = 3
"""What the App Home's DORA section takes of its 100 blocks: a divider, the figures, a note."""


def dora_home_blocks(report: DoraReport) -> list[Block]:
    """The App Home's DORA section: the one repo it reports on, else every repo together (no
    header block: on the Home, headers are the repos)."""
    title = f"*📊 DORA figures · last {report.days} days*"
    if not report.repos:
        figures = section(f"{title}\nNo environment is counted: mark one `dora: true` in robot.yaml.")
    else:
        scope = report.repos[0] if len(report.repos) == 1 else report.overall
        figures = section(f"{title}\n{scope_text(scope)}")
    note = (
        f"Up to {report.until:%Y-%m-%d %H:%M} UTC · trends: {SPARK_WEEKS} weeks, oldest first · "
        "levels: DORA 2023 report · `/deploy stats <repo>` for one repo"
    )
    return [{"type": "divider"}, figures, context(note)]


def stats_reply(report: DoraReport) -> Message:
    """The `/deploy stats` answer."""
    scope = report.repos[0] if len(report.repos) == 1 else report.overall
    fallback = f"DORA figures, last {report.days} days: " + "; ".join(
        f"{f.name} {f.level.value if f.level else '–'}" for f in scope.figures
    )
    return finish(escape(fallback), dora_section(report))
