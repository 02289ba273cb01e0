"""The ack-latency baseline: a bare Bolt app in Socket Mode whose slash commands and buttons only ack.

Built like `robot run` builds its app (same WebClient retries, same SocketModeHandler and
ping_interval), so the only difference the bench sees is the robot's own work.
Usage: SLACK_BOT_TOKEN=… SLACK_APP_TOKEN=… python bench/lib/bare_app.py API_URL PING_INTERVAL
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading

from slack_bolt import Ack, App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

# Nothing may keep the baseline alive if the bench dies without stopping it.
MAX_LIFETIME_SECONDS = 600.0


def main(argv: list[str]) -> int:
    """Connect, ack every /deploy and /deploy-status with "ok" and every click empty; stop on
    SIGTERM/SIGINT."""
    api_url, ping_interval = argv[0], float(argv[1])
    client = WebClient(
        token=os.environ["SLACK_BOT_TOKEN"],
        base_url=api_url,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )
    app = App(client=client, name="bare-bench-app")

    def only_ack(ack: Ack) -> None:
        ack("ok")

    def only_ack_click(ack: Ack) -> None:
        ack()

    app.command("/deploy")(only_ack)
    app.command("/deploy-status")(only_ack)
    app.action(re.compile(".*"))(only_ack_click)
    handler = SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"], ping_interval=ping_interval)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, f: stop.set())
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        stop.wait(MAX_LIFETIME_SECONDS)
    finally:
        handler.client.auto_reconnect_enabled = False
        handler.close()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
