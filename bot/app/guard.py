"""Payloads no listener can take: malformed ones Bolt cannot read, and ones no route matches.

Each is acked (else Slack shows the user an error of its own) and answered where a
response_url allows; none reaches a listener or the error hook as a robot fault.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import BoltRequest, BoltResponse, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.middleware import Middleware
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

log = logging.getLogger(__name__)

# A drain ends once nothing was queued or in a listener at two looks this far apart.
DRAIN_QUIET_SECONDS = 0.05
UNHANDLED_TEXT = "⚠️ The robot does not know this command or button (it may be out of date); nothing was done."


def unhandled(body: Any, respond: Callable[..., Any] | None) -> BoltResponse:
    """Tell the user nothing was done and ack: a slash command hears it in the ack, a click by respond."""
    return BoltResponse(status=200, body=tell_unhandled(body, respond))


def tell_unhandled(body: Any, respond: Callable[..., Any] | None) -> dict[str, Any]:
    """Answer a click through ``respond``; the ack payload that answers a slash command."""
    command = isinstance(body, dict) and "command" in body
    log.warning("no listener takes this %s payload; answered and dropped", "command" if command else "other")
    if not command and respond is not None:
        with contextlib.suppress(Exception):  # no or a broken response_url: nobody left to tell
            respond(text=UNHANDLED_TEXT, response_type="ephemeral", replace_original=False)
    return {"text": UNHANDLED_TEXT, "response_type": "ephemeral"}


class PayloadGuard(Middleware):
    """Answers block_actions whose `actions` Bolt itself would crash on, before anything reads them.

    Bolt's argument injection evaluates ``body["actions"][0]`` for every middleware, listener and
    error handler, so `"actions": []` (or a string, or a dict) raises inside Bolt on each of them:
    no ack is sent and no error handler of ours runs. This class middleware needs no injection.
    """

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        body = req.body
        if isinstance(body, dict) and body.get("type") == "block_actions" and "actions" in body:
            actions = body["actions"]
            first = actions[0] if isinstance(actions, list) and actions else None
            if not (isinstance(first, dict) and isinstance(first.get("action_id"), str)):
                return unhandled(body, req.context.respond)
        return next()


class GuardedSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler, but an envelope Bolt cannot even parse is still acked and answered.

    Bolt reads `user`, `channel`, `team`… while building its request, before any middleware:
    `"user": false` raises there, and the stock handler would leave the envelope unacked. So the
    dispatch (public `App.dispatch`) is guarded alone, and the ack is sent outside the guard: a
    socket that drops while acking a handled click must not tell the user nothing was done.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handling = 0  # envelopes being dispatched or acked now
        self._idle = threading.Condition()

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until no envelope Slack sent this connection is still
        unacked: none queued, none in a listener. True if it got there; the socket stays open.

        Envelopes that arrive meanwhile are handled as usual: Slack sent them here, and it does
        not send a slash command or a click again, so dropping one would leave its user without
        an answer.
        """
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while True:
            now = time.monotonic()
            with self._idle:
                busy = self._handling > 0 or not self.client.message_queue.empty()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= DRAIN_QUIET_SECONDS:
                # Quiet twice in a row: nothing sat between the queue and a listener in between.
                return True
            if now >= deadline:
                return False
            with self._idle:
                self._idle.wait(min(DRAIN_QUIET_SECONDS, max(0.0, deadline - now)))

    def hang_up(self) -> None:
        """Shut the socket both ways at once, so Slack sends what comes next to other connections.

        The SDK's own close waits for its reader's lock, held through a blocking read of up to
        3 s, and the socket stays open (envelopes still arriving, never to be acked) meanwhile;
        a shutdown wakes that read. ``close`` still follows, to stop the SDK's threads.
        """
        session = getattr(self.client, "current_session", None)
        sock = getattr(session, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # Typed like Bolt's own SocketModeHandler.handle, which narrows the client the same way.
    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self._idle:
            self._handling += 1
        try:
            self._handle(client, req)
        finally:
            with self._idle:
                self._handling -= 1
                self._idle.notify_all()

    def _handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        try:
            response = self.app.dispatch(
                BoltRequest(mode="socket_mode", body=req.payload, headers=_retry(req))
            )
        except Exception as exc:  # Bolt itself failed on the payload: no listener ran, none can answer
            log.warning("unreadable %s envelope: %s", req.type, exc)
            url = req.payload.get("response_url") if isinstance(req.payload, dict) else None
            response = unhandled(req.payload, Respond(response_url=url if isinstance(url, str) else None))
        _ack(client, req, response)


def _retry(req: SocketModeRequest) -> dict[str, str | Sequence[str]] | None:
    """Slack's retry headers, as Bolt's HTTP adapters pass them (Events API retries)."""
    headers: dict[str, str | Sequence[str]] = {}
    if req.retry_attempt is not None:
        headers["x-slack-retry-num"] = str(req.retry_attempt)
    if req.retry_reason is not None:
        headers["x-slack-retry-reason"] = req.retry_reason
    return headers or None


def _ack(client: SocketModeClient, req: SocketModeRequest, response: BoltResponse) -> None:
    """The envelope's ack, carrying the response body (an ephemeral reply to a command)."""
    if response.status != 200:
        log.info("Bolt answered %s on a %s envelope; not acked", response.status, req.type)
        return
    payload: dict[str, Any] | None = None
    if response.body:
        content_type = response.headers.get("content-type", [""])[0]
        payload = (
            json.loads(response.body)
            if content_type.startswith("application/json")
            else {"text": response.body}
        )
    client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload=payload))
