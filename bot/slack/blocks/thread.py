"""A deploy's Slack messages: the root message updated in place and the progress message in its thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.models import ROLLBACK_MARK, TAIL_LINES, ApprovalView, Deploy, DeployState, RollbackChoice, Source
from bot.slack.blocks.approvals import approval_buttons, approval_lines
from bot.slack.blocks.primitives import (
    MAX_SECTION,
    Block,
    Message,
    actions,
    button,
    confirm_dialog,
    context,
    finish,
    link,
    section,
    window,
)
from bot.slack.ids import CANCEL_ACTION, ROLLBACK_ACTION, encode_rollback_value
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


@dataclass(frozen=True)
class RollbackOffer:
    """A Roll back button: the SHA it deploys in repo + env, and the deploy it undoes."""

    repo: str
    env: str
    sha: str
    undo: int


def rollback_offer(deploy: Deploy, choice: RollbackChoice) -> RollbackOffer | None:
    """The Roll back button a final root shows, if any.

    A succeeded deploy that is still current there offers its rollback target; a failed one
    (its hosts may be half-updated) offers the environment's current good SHA, while nothing
    has succeeded there since. None when there is nothing to go back to.
    """
    current = choice.current
    if current is None or (choice.repo, choice.env) != (deploy.repo, deploy.env):
        return None
    if deploy.state is DeployState.SUCCEEDED and current.id == deploy.id and choice.target is not None:
        return RollbackOffer(deploy.repo, deploy.env, choice.target.sha, deploy.id)
    if deploy.state is DeployState.FAILED and current.id < deploy.id and current.sha != deploy.sha:
        return RollbackOffer(deploy.repo, deploy.env, current.sha, deploy.id)
    return None


def root_message(
    deploy: Deploy,
    commit_url: str,
    duration: float | None,
    *,
    rollback: RollbackOffer | None = None,
    changes: str | None = None,
    approval: ApprovalView | None = None,
) -> Message:
    """The deploy's root message: what, who, state, duration, error, approvals (Approve / Reject
    while it awaits them), what it ships (``changes``, mrkdwn), and Cancel while it can be
    cancelled; ``rollback`` adds a Roll back button (see ``rollback_offer``)."""
    icon = deploy.state.icon
    title = f"🚀 Deploy #{deploy.id} · {escape(deploy.repo)} → {escape(deploy.env)}"
    sha = link(commit_url, deploy.short_sha)
    ref = sha if deploy.ref == deploy.sha else f"`{escape(truncate(deploy.ref, 200))}` ({sha})"
    who = f"Requested by {mention(deploy.requester)} via {_SOURCES.get(deploy.source, deploy.source)}"
    if deploy.force and approval is None:
        who += " · forced (CI gate skipped)"
    if deploy.rollback_of is not None:
        who += f" · {ROLLBACK_MARK} of #{deploy.rollback_of} (no CI gate: it succeeded here before)"
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
    if changes:
        blocks.append(section(changes))
    if deploy.state is DeployState.AWAITING_APPROVAL:
        blocks.append(actions([*approval_buttons(deploy.id), _cancel_button(deploy.id)]))
    elif not deploy.state.is_final and not deploy.cancel_requested:
        blocks.append(actions([_cancel_button(deploy.id)]))
    elif deploy.state.is_final and rollback is not None:
        blocks.extend(rollback_actions(rollback))
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
    what = "Queued: it will not run. Running: its step is stopped."
    cancel["confirm"] = confirm_dialog(f"Cancel deploy #{deploy_id}?", what, "Cancel deploy")
    return cancel


def rollback_actions(offer: RollbackOffer) -> list[Block]:
    """The Roll back button (in an actions block) with a confirm dialog naming what it deploys and
    undoes; no block when the offer cannot be encoded (better none than a broken button)."""
    try:
        value = encode_rollback_value(offer.repo, offer.env, offer.sha, offer.undo)
    except ValueError:
        return []
    short = offer.sha[:7]
    roll = button(f"Roll back to {short}", ROLLBACK_ACTION, value)
    text = (
        f"Deploys {short} to {offer.env} of {offer.repo} again, undoing deploy #{offer.undo}. "
        "No CI gate: it succeeded there before."
    )
    roll["confirm"] = confirm_dialog(f"Roll back to {short}?", text, "Roll back")
    return [actions([roll])]
