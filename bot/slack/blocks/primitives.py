"""Block Kit pieces every builder shares: the block types, Slack's limits, sections, buttons, links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.slack.text import escape, truncate
from bot.text import one_line

Block = dict[str, Any]
Message = tuple[str, list[Block]]

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FALLBACK = 3000
MAX_BUTTON_TEXT = 75
MAX_ACTIONS = 25
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300


def section(text: str) -> Block:
    """A mrkdwn section within Slack's 3000-character limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION) or " "}}


def context(text: str) -> Block:
    """A small grey mrkdwn line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION) or " "}]}


def actions(elements: list[Block]) -> Block:
    """An actions block (at most 25 elements)."""
    return {"type": "actions", "elements": elements[:MAX_ACTIONS]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    """A button; its value is never cut (a cut value would act on the wrong thing); callers keep it small."""
    found: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, MAX_BUTTON_TEXT, "…")},
        "action_id": action_id,
        "value": value,
    }
    if style:
        found["style"] = style
    return found


def confirm_dialog(title: str, text: str, yes: str, no: str = "Keep it", mrkdwn: bool = False) -> Block:
    """A button's ``confirm`` dialog within Slack's limits (``text`` as mrkdwn only when asked)."""
    kind = "mrkdwn" if mrkdwn else "plain_text"
    return {
        "title": {"type": "plain_text", "text": truncate(title, MAX_CONFIRM_TITLE, "…")},
        "text": {"type": kind, "text": truncate(text, MAX_CONFIRM_TEXT, "…")},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": no},
    }


def reject_confirm(deploy_id: int) -> Block:
    """The confirm of every Reject button: the deploy will not run; where to give a reason."""
    text = f"It will not run. To give a reason: /deploy reject {deploy_id} : reason"
    return confirm_dialog(f"Reject deploy #{deploy_id}?", text, "Reject")


def link(url: str, label: str) -> str:
    """`<url|label>` when the URL is plainly http(s), else the label as code."""
    plain = not any(c in url for c in "|<> \n\t`")
    safe = url.startswith(("https://", "http://")) and plain and len(url) < 1000
    return f"<{escape(url)}|{escape(label)}>" if safe else f"`{escape(label)}`"


def window(lines: Sequence[str], focus: int, budget: int) -> list[str]:
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


def finish(fallback: str, blocks: list[Block]) -> Message:
    """Fallback text and blocks held to Slack's limits, with a visible marker when blocks were cut."""
    if len(blocks) > MAX_BLOCKS:
        cut = len(blocks) - (MAX_BLOCKS - 1)
        blocks = [*blocks[: MAX_BLOCKS - 1], context(f"… {cut} more blocks cut")]
    return truncate(one_line(fallback), MAX_FALLBACK), blocks
