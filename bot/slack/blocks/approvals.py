"""What a deploy's root and `/deploy-status` show of approvals: who may approve, who did, buttons."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import ApprovalResult, ApprovalView, Deploy, DeployState
from bot.slack.blocks.primitives import Block, button, reject_confirm
from bot.slack.ids import APPROVE_ACTION, REJECT_ACTION
from bot.slack.text import fmt_time, mention
from bot.text import slack_mentions

_MAX_LISTED = 20  # approvers named on a root; a longer list ends in "and N more"


def who_may_approve(approvers: Sequence[str]) -> str:
    """`<@U1>, <!subteam^S1>`, or anyone when nobody is listed."""
    if not approvers:
        return "anyone but the requester"
    more = len(approvers) - _MAX_LISTED
    return slack_mentions(approvers[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def approval_lines(deploy: Deploy, view: ApprovalView) -> list[str]:
    """The root's approval lines: break glass in bold, or what it awaits and who approved when."""
    if view.break_glass:
        return [f"*break glass*: CI gate and approval skipped by {mention(deploy.requester)}"]
    lines = []
    count = f"{len(view.approvals)}/{view.required}"
    if deploy.state is DeployState.AWAITING_APPROVAL:
        lines.append(f"Awaiting approval ({count}) from {who_may_approve(view.approvers)}")
    if view.approvals:
        lines.append(f"Approved ({count}) by " + approved_by(view))
    return lines


def approved_by(view: ApprovalView) -> str:
    """`<@U1> 14:02 UTC, bob (terminal) 14:03 UTC`: each approver with when."""
    return ", ".join(f"{mention(a.actor)} {fmt_time(a.at)}" for a in view.approvals)


def approval_buttons(deploy_id: int) -> list[Block]:
    """Approve and Reject, for a deploy awaiting approval."""
    reject = button("Reject", REJECT_ACTION, str(deploy_id), "danger")
    reject["confirm"] = reject_confirm(deploy_id)
    return [button("Approve", APPROVE_ACTION, str(deploy_id), "primary"), reject]


def unrecorded_text(result: ApprovalResult) -> str:
    """Why an approval was not recorded: given already (counted once), or nothing awaits it now."""
    deploy = result.deploy
    if deploy.state is DeployState.AWAITING_APPROVAL:
        so_far = len(result.approvals)
        return f"You approved deploy #{deploy.id} already; approvals count once ({so_far} so far)."
    return f"Deploy #{deploy.id} is {deploy.state.value}; it awaits no approval."
