"""Block Kit builders: pure functions from bot.models values to (fallback text, blocks), within limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.models import Deploy, DeployState, EnvironmentView, Lock, Source
from bot.slack.commands import HELP_TEXT
from bot.slack.ids import CANCEL_ACTION, deploy_action_id, encode_deploy_value
from bot.slack.text import code_block, escape, fmt_duration, fmt_time, mention, one_line, truncate

Block = dict[str, Any]
Message = tuple[str, list[Block]]

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FALLBACK = 3000
MAX_BUTTON_TEXT = 75
MAX_ACTIONS = 25
TAIL_LINES = 40
_SOURCES = {
    Source.COMMAND: "/deploy",
    Source.BUTTON: "Deploy button",
    Source.MERGE: "merge",
    Source.CLI: "terminal",
}
_CI_ICONS = {"success": "✅", "failure": "❌", "pending": "⏳", "missing": "❔"}
_RECENT_PER_ENV = 3
_SECTIONS_PER_PART = 6


class StepState(StrEnum):
    """A step's state as the progress message shows it."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


_STEP_ICONS = {StepState.PENDING: "○", StepState.RUNNING: "…", StepState.OK: "✓", StepState.FAILED: "✗"}


@dataclass(frozen=True)
class StepView:
    """One step line of the progress message (index is 1-based)."""

    index: int
    label: str
    state: StepState
    reason: str = ""


@dataclass(frozen=True)
class PullView:
    """A merged pull request as the announcement shows it (logins are GitHub's, not Slack's)."""

    number: int
    title: str
    author: str
    merged_by: str | None = None


def root_message(deploy: Deploy, commit_url: str, duration: float | None) -> Message:
    """The deploy's root message: what, who, state, duration, error, and Cancel while it can be cancelled."""
    icon = deploy.state.icon
    title = f"🚀 Deploy #{deploy.id} · {escape(deploy.repo)} → {escape(deploy.env)}"
    sha = _link(commit_url, deploy.short_sha)
    ref = sha if deploy.ref == deploy.sha else f"`{escape(truncate(deploy.ref, 200))}` ({sha})"
    who = f"Requested by {mention(deploy.requested_by)} via {_SOURCES.get(deploy.source, deploy.source)}"
    if deploy.force:
        who += " · forced (CI gate skipped)"
    state = f"{icon} {deploy.state.value}"
    if deploy.cancel_requested and not deploy.state.is_final:
        state += " · cancel requested"
    if duration is not None:
        state += f" · {fmt_duration(duration)}"
    lines = [f"*{title}*", f"Ref: {ref}", who, f"State: {state}"]
    if deploy.error and deploy.state is not DeployState.SUCCEEDED:
        lines.append("> " + escape(truncate(one_line(deploy.error), 1500)))
    blocks: list[Block] = [_section("\n".join(lines))]
    if deploy.state in (DeployState.QUEUED, DeployState.RUNNING) and not deploy.cancel_requested:
        blocks.append(_actions([_cancel_button(deploy.id)]))
    fallback = f"{icon} Deploy #{deploy.id} {deploy.repo} → {deploy.env} ({deploy.short_sha}): {deploy.state}"
    return _finish(escape(fallback), blocks)


def progress_message(
    steps: Sequence[StepView], current_task: str | None, elapsed: float, failure_tail: Sequence[str] | None
) -> Message:
    """The thread's progress message: step lines, the current Ansible task, elapsed, a failure's output."""
    total = len(steps)
    lines = [_step_line(step, total) for step in steps]
    shown = "\n".join(_window(lines, _focus(steps), MAX_SECTION - 100))
    blocks: list[Block] = [_section(shown or "No steps.")]
    status = [f"Elapsed: {fmt_duration(elapsed)}"]
    if current_task:
        status.insert(0, f"Task: *{escape(truncate(one_line(current_task), 300))}*")
    blocks.append(_context(" · ".join(status)))
    if failure_tail is not None:
        blocks.append(_section("Last lines of output:\n" + code_block(failure_tail, 2900, TAIL_LINES)))
    done = sum(1 for s in steps if s.state is StepState.OK)
    failed = [s for s in steps if s.state is StepState.FAILED]
    if failed:
        fallback = f"Step {failed[0].index}/{total} failed: {one_line(failed[0].label)}"
    else:
        fallback = f"{done}/{total} steps done · {fmt_duration(elapsed)}"
    return _finish(escape(fallback), blocks)


def merge_announcement(
    repo: str,
    pulls: Sequence[PullView],
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
    where = f"into {escape(branch)} ({_link(commit_url, sha[:7])}) · CI: {ci_text}"
    if newest:
        head = newest[0]
        merger = _login(head.merged_by or head.author)
        headline = f"🔀 {escape(repo)} {_pull(head)} merged by {merger} {where}"
    else:
        headline = f"🔀 {escape(repo)}: direct push (no pull request) {where}"
    text = headline
    if len(newest) > 1:
        others = [f"• {_pull(p)} by {_login(p.author)}" for p in newest[1:]]
        text += "\nAlso merged:\n" + "\n".join(_window(others, 0, MAX_SECTION - len(headline) - 50))
    blocks: list[Block] = [_section(text)]
    if notes:
        blocks.append(_context(escape(truncate("\n".join(one_line(n) for n in notes), MAX_SECTION - 100))))
    buttons: list[Block] = []
    for env in dict.fromkeys(environments):
        try:
            value = encode_deploy_value(repo, env, sha)
        except ValueError:
            continue  # an unencodable env or sha gets no button rather than a broken one
        buttons.append(_button(f"Deploy to {env}", deploy_action_id(env), value))
    for start in range(0, min(len(buttons), MAX_ACTIONS * 10), MAX_ACTIONS):
        blocks.append(_actions(buttons[start : start + MAX_ACTIONS]))
    # The short SHA goes back in escaped, like everything else in the headline: a SHA is hex from
    # GitHub, but a builder must not be the one place where raw text reaches Slack.
    fallback = headline.replace(_link(commit_url, sha[:7]), escape(sha[:7]))
    return _finish(fallback, blocks)


def status_blocks(
    running: Sequence[Deploy],
    queued: Sequence[Deploy],
    recent: Sequence[Deploy],
    locks: Sequence[Lock],
    current_steps: Mapping[int, str] | None = None,
) -> Message:
    """`/deploy-status`: running (elapsed, current step), queued (position), recent per environment, locks."""
    if not (running or queued or recent or locks):
        return _finish(
            "Nothing running, nothing queued, no recent deploys, no locks.",
            [_section("Nothing running, nothing queued, no recent deploys, no locks.")],
        )
    steps = current_steps or {}
    blocks: list[Block] = []
    blocks += _part("Running", [_running_line(d, steps.get(d.id)) for d in running], "Nothing running.")
    blocks += _part("Queued", _queued_lines(queued, running), "Nothing queued.")
    blocks += _part("Recent", _recent_lines(recent), "No recent deploys.")
    blocks += _part("Locks", [_lock_line(lock) for lock in locks], "No locks.")
    fallback = f"{len(running)} running, {len(queued)} queued, {len(locks)} locked"
    return _finish(fallback, blocks)


def where_blocks(views: Sequence[EnvironmentView]) -> Message:
    """`/deploy where <repo>`: each environment, its lock and its last deploy."""
    lines = []
    for view in views:
        line = f"*{escape(view.env)}*" + (" (default)" if view.is_default else "")
        if view.lock is not None:
            line += "\n" + _lock_line(view.lock)
        if view.last is not None:
            when = view.last.finished_at or view.last.started_at or view.last.created_at
            line += "\nLast: " + _deploy_head(view.last) + f" · {mention(view.last.requested_by)}"
            line += f" · {fmt_time(when)}" if when else ""
        else:
            line += "\nNever deployed by the robot."
        lines.append(line)
    # The fallback is mrkdwn too (notifications show it): escaped like the blocks.
    repo = escape(views[0].repo) if views else ""
    return _finish(f"Environments of {repo}", _part(f"Environments of {repo}", lines, "None."))


def help_blocks() -> Message:
    """The `/deploy help` reply."""
    return _finish("Deploy robot commands", [_section(HELP_TEXT)])


def error_text(message: str) -> str:
    """An ephemeral one-line error reply, escaped, within a section's limit."""
    # Escaping can make text five times longer (`&` → `&amp;`), so the cut comes after it.
    return "⚠️ " + truncate(escape(one_line(message)), MAX_SECTION - 10)


def _step_line(step: StepView, total: int) -> str:
    """`✓ 1/3 `git fetch`` with the reason of a failed step."""
    label = escape(truncate(one_line(step.label), 200))
    line = f"{_STEP_ICONS.get(step.state, '•')} {step.index}/{total} `{label}`"
    if step.reason:
        line += " — " + escape(truncate(one_line(step.reason), 200))
    return line


def _focus(steps: Sequence[StepView]) -> int:
    """Index of the step worth seeing: the failed one, else the running one, else the last done."""
    for wanted in (StepState.FAILED, StepState.RUNNING):
        for i, step in enumerate(steps):
            if step.state is wanted:
                return i
    done = [i for i, s in enumerate(steps) if s.state is StepState.OK]
    return done[-1] if done else 0


def _window(lines: Sequence[str], focus: int, budget: int) -> list[str]:
    """The lines around ``focus`` that fit ``budget`` characters, with markers for what was left out."""
    if sum(len(line) + 1 for line in lines) <= budget:
        return list(lines)
    budget -= 60  # room for the two markers
    lo = hi = min(max(focus, 0), max(len(lines) - 1, 0))
    used = len(lines[lo]) + 1 if lines else 0
    grew = True
    while grew:
        grew = False
        for cand in (hi + 1, lo - 1):
            if 0 <= cand < len(lines) and used + len(lines[cand]) + 1 <= budget:
                used += len(lines[cand]) + 1
                lo, hi = min(lo, cand), max(hi, cand)
                grew = True
    out = [truncate(line, budget) for line in lines[lo : hi + 1]]
    if lo:
        out.insert(0, f"… {lo} earlier")
    if hi < len(lines) - 1:
        out.append(f"… {len(lines) - 1 - hi} more")
    return out


def _running_line(deploy: Deploy, step: str | None) -> str:
    """One running deploy: what, who, elapsed, current step."""
    line = _deploy_head(deploy) + f" · {mention(deploy.requested_by)}"
    if deploy.duration_seconds is not None:
        line += f" · {fmt_duration(deploy.duration_seconds)}"
    if step:
        line += f" · {escape(truncate(one_line(step), 200))}"
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
        lines.append(_deploy_head(deploy) + f" · {mention(deploy.requested_by)} · {_ordinal(place)} in line")
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
            line = _deploy_head(deploy) + f" · {mention(deploy.requested_by)}"
            when = deploy.finished_at or deploy.started_at or deploy.created_at
            if when is not None:
                line += f" · {fmt_time(when)}"
            lines.append(line)
    return lines


def _lock_line(lock: Lock) -> str:
    """🔒 repo → env, who, when, why."""
    line = f"🔒 *{escape(lock.repo)} → {escape(lock.env)}* · {mention(lock.locked_by)}"
    line += f" · {fmt_time(lock.locked_at)}"
    if lock.reason:
        line += f" · {escape(truncate(one_line(lock.reason), 200))}"
    return line


def _deploy_head(deploy: Deploy) -> str:
    """`✅ #42 acme/api → production `abc1234``."""
    icon = deploy.state.icon
    return f"{icon} #{deploy.id} *{escape(deploy.repo)} → {escape(deploy.env)}* `{escape(deploy.short_sha)}`"


def _part(title: str, lines: Sequence[str], empty: str) -> list[Block]:
    """A titled list packed into as few sections as fit, with a marker when some were left out."""
    if not lines:
        return [_section(f"*{title}*\n{empty}")]
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
    return [_section("\n".join(s)) for s in sections]


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th…"""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _pull(pull: PullView) -> str:
    """`#123 "Fix login"`."""
    return f'#{pull.number} "{escape(truncate(one_line(pull.title), 200))}"'


def _login(login: str) -> str:
    """A GitHub login shown as text (never a Slack mention)."""
    return "@" + escape(truncate(login, 60))


def _link(url: str, label: str) -> str:
    """`<url|label>` when the URL is plainly http(s), else the label as code."""
    plain = not any(c in url for c in "|<> \n\t`")
    safe = url.startswith(("https://", "http://")) and plain and len(url) < 1000
    return f"<{escape(url)}|{escape(label)}>" if safe else f"`{escape(label)}`"


def _section(text: str) -> Block:
    """A mrkdwn section within Slack's 3000-character limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION) or " "}}


def _context(text: str) -> Block:
    """A small grey mrkdwn line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION) or " "}]}


def _actions(elements: list[Block]) -> Block:
    """An actions block (at most 25 elements)."""
    return {"type": "actions", "elements": elements[:MAX_ACTIONS]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    """A button; its value is never cut (a cut value would act on the wrong thing); callers keep it small."""
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, MAX_BUTTON_TEXT, "…")},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _cancel_button(deploy_id: int) -> Block:
    """Cancel, with a confirmation so a stray tap on a phone cancels nothing."""
    button = _button("Cancel", CANCEL_ACTION, str(deploy_id), "danger")
    button["confirm"] = {
        "title": {"type": "plain_text", "text": f"Cancel deploy #{deploy_id}?"},
        "text": {"type": "plain_text", "text": "Queued: it will not run. Running: its step is stopped."},
        "confirm": {"type": "plain_text", "text": "Cancel deploy"},
        "deny": {"type": "plain_text", "text": "Keep it"},
    }
    return button


def _finish(fallback: str, blocks: list[Block]) -> Message:
    """Fallback text and blocks held to Slack's limits, with a visible marker when blocks were cut."""
    if len(blocks) > MAX_BLOCKS:
        cut = len(blocks) - (MAX_BLOCKS - 1)
        blocks = [*blocks[: MAX_BLOCKS - 1], _context(f"… {cut} more blocks cut")]
    return truncate(one_line(fallback), MAX_FALLBACK), blocks
