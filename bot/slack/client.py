"""The robot's Slack Web API client: slack_sdk's WebClient, retrying briefly, every call counted."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.slack_response import SlackResponse

from bot.config import SlackSettings
from bot.ports import NO_METRICS, Metrics


def build_web_client(slack: SlackSettings, metrics: Metrics = NO_METRICS) -> WebClient:
    """A WebClient for ``slack``: two quick retries on 429 and dropped connections, calls reported."""
    return CountingWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[
            # First in line: it sees every 429, including those the next handler retries.
            _RateLimitCounter(metrics),
            RateLimitErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
        metrics=metrics,
    )


class CountingWebClient(WebClient):
    """WebClient that reports each API call's method and outcome (after the client's own retries)."""

    def __init__(self, *args: Any, metrics: Metrics = NO_METRICS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            self._metrics.slack_call(api_method, _outcome(exc.response))
            raise
        except Exception:
            self._metrics.slack_call(api_method, "unreachable")
            raise
        self._metrics.slack_call(api_method, "ok")
        return response


def _outcome(response: SlackResponse) -> str:
    if response.status_code == 429 or response.get("error") == "ratelimited":
        return "ratelimited"
    if response.status_code >= 500:
        return "server_error"
    return "error"


class _RateLimitCounter(RetryHandler):
    """Counts each 429 Slack answers and never asks for a retry itself."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self._metrics.slack_rate_limited(request.url.rsplit("/", 1)[-1].split("?", 1)[0])
        return False
