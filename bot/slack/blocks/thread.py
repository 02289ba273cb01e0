"""A deploy's Slack messages: the root message updated in place and the progress message in its thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.models import TAIL_LINES, ApprovalView, Deploy, DeployState, Source
from bot.slack.blocks.approvals import approval_buttons, approval_lines
from bot.slack.blocks.primitives import (
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
from bot.slack.ids import CANCEL_ACTION
from bot.slack.text import code_block, escape, fmt_duration, mention, truncate
from bot.text import one_line

_SOURCES = {
    Source.COMMAND: "/deploy",
    Source.BUTTON: "Deploy button",
    Source.MERGE: "merge",
    Source.CLI: "terminal",
}


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


def root_message(
    deploy: Deploy, commit_url: str, duration: float | None, approval: ApprovalView | None = None
) -> Message:
    """The deploy's root message: what, who, state, duration, error, approvals (Approve / Reject
    while it awaits them), and Cancel while it can be cancelled."""
    icon = deploy.state.icon
    title = f"🚀 Deploy #{deploy.id} · {escape(deploy.repo)} → {escape(deploy.env)}"
    sha = link(commit_url, deploy.short_sha)
    ref = sha if deploy.ref == deploy.sha else f"`{escape(truncate(deploy.ref, 200))}` ({sha})"
    who = f"Requested by {mention(deploy.requester)} via {_SOURCES.get(deploy.source, deploy.source)}"
    if deploy.force and approval is None:
        who += " · forced (CI gate skipped)"
    state = f"{icon} {deploy.state.value}"
    if deploy.cancel_requested and not deploy.state.is_final:
        state += " · cancel requested"
    if duration is not None:
        state += f" · {fmt_duration(duration)}"
    lines = [f"*{title}*", f"Ref: {ref}", who, f"State: {state}"]
    if approval is not None:
        lines += approval_lines(deploy, approval)
    note = deploy.waiting_for or deploy.error
    if note and deploy.state is not DeployState.SUCCEEDED:
        lines.append("> " + escape(truncate(one_line(note), 1500)))
    blocks: list[Block] = [section("\n".join(lines))]
    if deploy.state is DeployState.AWAITING_APPROVAL:
        blocks.append(actions([*approval_buttons(deploy.id), _cancel_button(deploy.id)]))
    elif not deploy.state.is_final and not deploy.cancel_requested:
        blocks.append(actions([_cancel_button(deploy.id)]))
    fallback = f"{icon} Deploy #{deploy.id} {deploy.repo} → {deploy.env} ({deploy.short_sha}): {deploy.state}"
    return finish(escape(fallback), blocks)


def progress_message(
    steps: Sequence[StepView], current_task: str | None, elapsed: float, failure_tail: Sequence[str] | None
) -> Message:
    """The thread's progress message: step lines, the current Ansible task, elapsed, a failure's output."""
    total = len(steps)
    lines = [_step_line(step, total) for step in steps]
    shown = "\n".join(window(lines, _focus(steps), MAX_SECTION - 100))
    blocks: list[Block] = [section(shown or "No steps.")]
    status = [f"Elapsed: {fmt_duration(elapsed)}"]
    if current_task:
        status.insert(0, f"Task: *{escape(truncate(one_line(current_task), 300))}*")
    blocks.append(context(" · ".join(status)))
    if failure_tail is not None:
        blocks.append(section("Last lines of output:\n" + code_block(failure_tail, 2900, TAIL_LINES)))
    done = sum(1 for s in steps if s.state is StepState.OK)
    failed = [s for s in steps if s.state is StepState.FAILED]
    if failed:
        fallback = f"Step {failed[0].index}/{total} failed: {one_line(failed[0].label)}"
    else:
        fallback = f"{done}/{total} steps done · {fmt_duration(elapsed)}"
    return finish(escape(fallback), blocks)


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


def _cancel_button(deploy_id: int) -> Block:
    """Cancel, with a confirmation so a stray tap on a phone cancels nothing."""
    cancel = button("Cancel", CANCEL_ACTION, str(deploy_id), "danger")
    cancel["confirm"] = {
        "title": {"type": "plain_text", "text": f"Cancel deploy #{deploy_id}?"},
        "text": {"type": "plain_text", "text": "Queued: it will not run. Running: its step is stopped."},
        "confirm": {"type": "plain_text", "text": "Cancel deploy"},
        "deny": {"type": "plain_text", "text": "Keep it"},
    }
    return cancel
