"""`robot check --online` for Slack: do both tokens work, and does the bot hold the manifest's scopes."""

from __future__ import annotations

from collections.abc import Iterator

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import SlackSettings
from bot.models import CheckResult

BOT_SCOPES = ("commands", "chat:write", "chat:write.public", "files:write", "usergroups:read")
"""What manifest.json asks for (a test keeps the two equal)."""
TIMEOUT_SECONDS = 10


def check_slack(slack: SlackSettings) -> Iterator[CheckResult]:
    """One line for the bot token (who, which workspace, missing scopes) and one for the app token."""
    if slack.bot_token:
        yield _check_bot(WebClient(token=slack.bot_token, base_url=slack.api_url, timeout=TIMEOUT_SECONDS))
    else:
        yield CheckResult("slack bot token", False, "slack.bot_token is not set (`robot run` needs it)")
    if slack.app_token:
        yield _check_app(WebClient(base_url=slack.api_url, timeout=TIMEOUT_SECONDS), slack.app_token)
    else:
        yield CheckResult("slack app token", False, "slack.app_token is not set (`robot run` needs it)")


def _check_bot(client: WebClient) -> CheckResult:
    what = "slack bot token"
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        return CheckResult(what, False, f"Slack refused it: {exc.response.get('error')}")
    except SlackClientError as exc:
        return CheckResult(what, False, f"cannot reach Slack: {type(exc).__name__}")
    granted = {s.strip() for s in str(answer.headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    missing = [scope for scope in BOT_SCOPES if scope not in granted]
    who = f"{answer.get('user')} in {answer.get('team')}"
    if missing:
        return CheckResult(
            what,
            False,
            f"{who}, but the bot lacks the scopes {', '.join(missing)}: add them under OAuth & Permissions "
            "(or re-create the app from manifest.json) and reinstall it",
        )
    return CheckResult(what, True, f"{who}; scopes {', '.join(BOT_SCOPES)} granted")


def _check_app(client: WebClient, app_token: str) -> CheckResult:
    what = "slack app token"
    try:
        # Opening a Socket Mode URL is what the app token is for; nothing connects to it.
        client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = (
            " (an app-level token, xapp-, with connections:write)"
            if error == "not_allowed_token_type"
            else ""
        )
        return CheckResult(what, False, f"Slack refused it: {error}{hint}")
    except SlackClientError as exc:
        return CheckResult(what, False, f"cannot reach Slack: {type(exc).__name__}")
    return CheckResult(what, True, "Socket Mode connections allowed")
