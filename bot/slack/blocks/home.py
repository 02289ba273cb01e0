"""The App Home tab and its Lock… modal: pure functions from HomePage values to Slack views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.home import Awaiting, EnvCard, HomePage, PendingChanges, RepoCards
from bot.models import Actor, Deploy, Lock
from bot.slack.blocks.primitives import (
    Block,
    actions,
    button,
    confirm_dialog,
    context,
    link,
    reject_confirm,
    section,
)
from bot.slack.blocks.stats import dora_home_blocks
from bot.slack.ids import (
    HOME_ALL_REPOS,
    HOME_APPROVE_ACTION,
    HOME_CANCEL_ACTION,
    HOME_DEPLOY_ACTION,
    HOME_DURATION_BLOCK,
    HOME_FILTER_ACTION,
    HOME_LOCK_ACTION,
    HOME_LOCK_VIEW,
    HOME_REASON_BLOCK,
    HOME_REJECT_ACTION,
    HOME_ROLLBACK_ACTION,
    HOME_UNLOCK_ACTION,
    encode_rollback_value,
    encode_target,
    home_deploy_action_id,
)
from bot.slack.text import escape, fmt_duration, fmt_time, mention, truncate
from bot.text import fmt_remaining, one_line
from bot.validation import LOCK_DURATION_HELP

View = dict[str, Any]

MAX_VIEW_BLOCKS = 100
"""Slack refuses a Home or modal view with more blocks than this."""
MAX_OPTIONS = 100
"""A static_select holds at most this many options."""
MAX_OPTION_TEXT = 75
MAX_HEADER = 150
MAX_REASON = 500
MAX_DURATION_INPUT = 20
MAX_HINT = 150
APPROVALS_WITH_BUTTONS = 3
"""Deploys awaiting approval per environment that get Approve and Reject (the oldest first): an
actions block holds 25 elements; more wait their turn (or `/deploy approve <id>`)."""
# The page's own blocks (title, updated-at line, repo filter, "more repos" note), and each
# repo's: a header, then per environment a section and its buttons.
_PAGE_BLOCKS = 4
_BLOCKS_PER_REPO = 1
_BLOCKS_PER_ENV = 2
# A hint is plain text: the help's backticks would show as they are.
_DURATION_HINT = "Empty: until unlocked. Else " + LOCK_DURATION_HELP.replace("`", "") + "."


def repos_that_fit(env_counts: Sequence[int], budget: int = MAX_VIEW_BLOCKS) -> int:
    """How many of these repos (each with that many environments), in order, fit one Home view."""
    used = _PAGE_BLOCKS
    for shown, envs in enumerate(env_counts):
        used += _BLOCKS_PER_REPO + _BLOCKS_PER_ENV * envs
        if used > budget:
            return max(shown, 1)  # one repo at least: its environments are cut if they alone overflow
    return len(env_counts)


def home_view(page: HomePage, now: datetime) -> View:
    """The user's App Home: a repo filter, then per repo and environment what runs there and the
    buttons that user may use; never more than Slack's 100 blocks."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Deploys"}},
        context(f"Updated {fmt_time(now)} · newest activity first · `/deploy help` for commands"),
    ]
    if len(page.repos) > 1:
        blocks.append(_filter(page))
    if not page.shown:
        blocks.append(section("No repos are configured in robot.yaml."))
    for repo in page.shown:
        blocks += _repo_blocks(repo, now)
    if page.hidden:
        blocks.append(context(f"… {page.hidden} more repo(s): pick one in the filter above."))
    if page.dora is not None:
        blocks += dora_home_blocks(page.dora)
    return {"type": "home", "blocks": _cap(blocks)}


def _cap(blocks: list[Block]) -> list[Block]:
    if len(blocks) <= MAX_VIEW_BLOCKS:
        return blocks
    cut = len(blocks) - (MAX_VIEW_BLOCKS - 1)
    return [*blocks[: MAX_VIEW_BLOCKS - 1], context(f"… {cut} more blocks cut: pick one repo in the filter.")]


def _filter(page: HomePage) -> Block:
    everything = _option("All repos (most recently active first)", HOME_ALL_REPOS)
    options = [everything, *(_option(repo, repo) for repo in page.repos[: MAX_OPTIONS - 1])]
    chosen = next((o for o in options if o["value"] == page.repo_filter), everything)
    select = {
        "type": "static_select",
        "action_id": HOME_FILTER_ACTION,
        "placeholder": {"type": "plain_text", "text": "Repos"},
        "options": options,
        "initial_option": chosen,
    }
    return {"type": "actions", "block_id": "home_filter", "elements": [select]}


def _option(text: str, value: str) -> Block:
    return {"text": {"type": "plain_text", "text": truncate(text, MAX_OPTION_TEXT, "…")}, "value": value}


def _repo_blocks(repo: RepoCards, now: datetime) -> list[Block]:
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(repo.repo, MAX_HEADER, "…")}}
    ]
    for card in repo.envs:
        blocks.append(section(env_text(card, now)))
        elements = env_buttons(card)
        if elements:
            blocks.append({**actions(elements), "block_id": f"home:{card.repo}:{card.env}"})
    return blocks


def env_text(card: EnvCard, now: datetime) -> str:
    """One environment: lock, current SHA, running, waiting, queued, last failure."""
    lines = [f"*{escape(card.env)}*"]
    if card.lock is not None:
        lines.append(lock_line(card.lock, now))
    if card.current is not None:
        lines.append("Current: " + _done_line(card.current, card.current_url, now))
    else:
        lines.append("Current: never deployed by the robot")
    if card.running is not None:
        run = card.running
        elapsed = fmt_duration((now - run.started_at).total_seconds()) if run.started_at else "starting"
        step = f" · {escape(card.current_step)}" if card.current_step else ""
        lines.append(f"🚀 Running #{run.id} {_what(run)} by {mention(run.requester)}{step} · {elapsed}")
    for waiting in card.waiting:
        note = f": {escape(one_line(waiting.waiting_for))}" if waiting.waiting_for else ""
        lines.append(f"⏸️ Waiting #{waiting.id} {_what(waiting)} by {mention(waiting.requester)}{note}")
    lines += [_awaiting_line(awaiting) for awaiting in card.awaiting]
    if card.queued:
        lines.append(f"⏳ {card.queued} queued")
    if card.last_failure is not None:
        failed = card.last_failure
        why = f" · {escape(one_line(failed.error))}" if failed.error else ""
        lines.append(f"❌ Last failure: #{failed.id} {_what(failed)}{_when(failed, now)}{why}")
    return "\n".join(lines)


def lock_line(lock: Lock, now: datetime) -> str:
    """Who locked, since when, until when (an expiring lock: and how long is left), and why."""
    why = f": {escape(one_line(lock.reason))}" if lock.reason else ""
    left = lock.remaining_seconds(now)
    until = ""
    if lock.expires_at is not None and left is not None:
        until = f" until {fmt_time(lock.expires_at)} ({fmt_remaining(left)})"
    return f"🔒 Locked by {mention(lock.locker)} since {fmt_time(lock.locked_at)}{until}{why}"


def _awaiting_line(awaiting: Awaiting) -> str:
    deploy = awaiting.deploy
    given = f"{len(awaiting.approved_by)}/{awaiting.required} approved"
    if awaiting.approved_by:
        given += " by " + ", ".join(mention(Actor.parse(a)) for a in awaiting.approved_by)
    rollback = f", rolling back #{deploy.rollback_of}" if deploy.rollback_of else ""
    who = mention(deploy.requester)
    return f"✋ Awaiting approval #{deploy.id} {_what(deploy)}{rollback} by {who} · {given}"


def _what(deploy: Deploy) -> str:
    return f"`{escape(deploy.ref)}` ({deploy.short_sha})"


def _done_line(deploy: Deploy, url: str | None, now: datetime) -> str:
    sha = link(url, deploy.short_sha) if url else f"`{deploy.short_sha}`"
    return f"{sha} `{escape(deploy.ref)}` · #{deploy.id} by {mention(deploy.requester)}{_when(deploy, now)}"


def _when(deploy: Deploy, now: datetime) -> str:
    moment = deploy.finished_at or deploy.started_at or deploy.created_at
    if moment is None:
        return ""
    return f" · {fmt_time(moment)} ({fmt_duration((now - moment).total_seconds())} ago)"


def env_buttons(card: EnvCard) -> list[Block]:
    """Only the buttons this user may use: Deploy <branch> (with a confirm naming the SHA and the
    change count), Roll back to <sha> (a confirm naming it), Approve and Reject, Cancel, Lock… or
    Unlock."""
    elements: list[Block] = []
    if card.may_deploy and card.lock is None:
        ref = card.head_sha or card.branch
        deploy = button(f"Deploy {card.branch}", HOME_DEPLOY_ACTION, encode_target(card.repo, card.env, ref))
        deploy["style"] = "primary"
        deploy["confirm"] = _confirm_deploy(card)
        elements.append(deploy)
    rollback = _rollback_button(card)
    if rollback is not None:
        elements.append(rollback)
    for awaiting in card.awaiting[:APPROVALS_WITH_BUTTONS]:
        elements += _approval_buttons(card, awaiting.deploy)
    # One Cancel per card: the running deploy, else the next waiting one, else the oldest awaiting
    # approval that this user may cancel (their own, say: they may not approve it).
    own = (a.deploy for a in card.awaiting if a.deploy.id in card.cancellable)
    target = card.running or (card.waiting[0] if card.waiting else None) or next(own, None)
    if target is not None and target.id in card.cancellable:
        elements.append(button(f"Cancel #{target.id}", HOME_CANCEL_ACTION, str(target.id), "danger"))
    if card.may_lock:
        if card.lock is None:
            elements.append(button("Lock…", HOME_LOCK_ACTION, encode_target(card.repo, card.env)))
        else:
            elements.append(button("Unlock", HOME_UNLOCK_ACTION, encode_target(card.repo, card.env)))
    return elements


def _rollback_button(card: EnvCard) -> Block | None:
    """Roll back to the store's rollback choice, undoing the current deploy; not while locked (the
    service would refuse), none when the value cannot be encoded (better none than a broken one)."""
    target, current = card.rollback_to, card.current
    if not card.may_roll_back or card.lock is not None or target is None or current is None:
        return None
    try:
        value = encode_rollback_value(card.repo, card.env, target.sha, current.id)
    except ValueError:
        return None
    short = target.short_sha
    roll = button(f"Roll back to {short}", HOME_ROLLBACK_ACTION, value)
    text = (
        f"Deploys {short} (deploy #{target.id}) to {card.env} of {card.repo} again, undoing "
        f"deploy #{current.id} ({current.short_sha}). No CI gate: it succeeded there before."
    )
    roll["confirm"] = confirm_dialog(f"Roll back to {short}?", text, "Roll back")
    return roll


def _approval_buttons(card: EnvCard, deploy: Deploy) -> list[Block]:
    """Approve (where the user may and has not yet) and Reject (with a confirm) of one deploy."""
    elements: list[Block] = []
    if deploy.id in card.approvable:
        approve_id = home_deploy_action_id(HOME_APPROVE_ACTION, deploy.id)
        elements.append(button(f"Approve #{deploy.id}", approve_id, str(deploy.id), "primary"))
    if deploy.id in card.rejectable:
        reject_id = home_deploy_action_id(HOME_REJECT_ACTION, deploy.id)
        reject = button(f"Reject #{deploy.id}", reject_id, str(deploy.id), "danger")
        reject["confirm"] = reject_confirm(deploy.id)
        elements.append(reject)
    return elements


def _confirm_deploy(card: EnvCard) -> Block:
    head = card.head_sha
    what = f"`{card.branch}` at {head[:7]}" if head else f"the current head of `{card.branch}`"
    text = f"Deploy {what} to {card.env}?"
    if head and card.pending is not None:
        text += " " + change_count(card.pending)
    return confirm_dialog(f"Deploy {card.repo}?", escape(text), "Deploy", "Not now", mrkdwn=True)


def change_count(pending: PendingChanges) -> str:
    """`3 commits since 1a2b3c4.`: what the head has that the current SHA has not (and lacks)."""
    base = pending.base_sha[:7]
    if pending.ahead == 0 and pending.behind == 0:
        return f"Nothing new: {base} runs there already."
    if pending.ahead == 0:
        return f"{_commits(pending.behind)} behind {base}: this goes back."
    behind = f" ({pending.behind} behind it)" if pending.behind else ""
    return f"{_commits(pending.ahead)} since {base}{behind}."


def _commits(count: int) -> str:
    return f"{count} commit" if count == 1 else f"{count} commits"


def lock_form(repo: str, env: str, extra_inputs: Sequence[Block] = ()) -> View:
    """The Lock… modal: how long (optional; empty: until unlocked) and the reason (optional);
    ``extra_inputs`` are further input blocks, read back by their block ids."""
    return {
        "type": "modal",
        "callback_id": HOME_LOCK_VIEW,
        "private_metadata": encode_target(repo, env),
        "title": {"type": "plain_text", "text": "Lock"},
        "submit": {"type": "plain_text", "text": "Lock"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Lock *{escape(repo)}* {escape(env)}: deploys there wait until it is unlocked "
                "or its time is up."
            ),
            {
                "type": "input",
                "block_id": HOME_REASON_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": HOME_REASON_BLOCK,
                    "max_length": MAX_REASON,
                    "placeholder": {"type": "plain_text", "text": "e.g. release freeze until Monday"},
                },
            },
            {
                "type": "input",
                "block_id": HOME_DURATION_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "For how long"},
                "hint": {
                    "type": "plain_text",
                    "text": truncate(_DURATION_HINT, MAX_HINT, "…"),
                },
                "element": {
                    "type": "plain_text_input",
                    "action_id": HOME_DURATION_BLOCK,
                    "max_length": MAX_DURATION_INPUT,
                    "placeholder": {"type": "plain_text", "text": "e.g. 2h, 30m, 1d"},
                },
            },
            *extra_inputs,
        ],
    }
