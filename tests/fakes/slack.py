"""A fake Slack on 127.0.0.1: Web API, response_url, file uploads and a Socket Mode WebSocket.

FakeSlack is the one entry point; its Socket Mode side lives in slack_socket, its Web API side
in slack_web, and this module holds the shared state, the lifecycle and the HTTP routing.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer
from tests.fakes.slack_socket import (
    APP_ID,
    TEAM_ID,
    Ack,
    Envelope,
    SocketModeSide,
    _accept_key,
    _WsConnection,
)
from tests.fakes.slack_web import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    JSON,
    MANIFEST_BOT_SCOPES,
    RESPONSE_URL_MAX_USES,
    WORKSPACE_URL,
    Call,
    Ephemeral,
    Message,
    PublishedView,
    ResponsePost,
    UploadedFile,
    WebApiSide,
    _Fault,
)

__all__ = [
    "APP_ID",
    "APP_TOKEN",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "RESPONSE_URL_MAX_USES",
    "TEAM_ID",
    "WORKSPACE_URL",
    "Ack",
    "Call",
    "Envelope",
    "Ephemeral",
    "FakeSlack",
    "Message",
    "PublishedView",
    "ResponsePost",
    "SpreadingSlack",
    "UploadedFile",
]


class FakeSlack(WebApiSide, SocketModeSide):
    """In-memory Slack: Web API, response_url and Socket Mode on 127.0.0.1, with fault injection."""

    def __init__(
        self,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        bot_scopes: tuple[str, ...] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        # What the bot token was granted, sent back as Slack does (`x-oauth-scopes`); default: the manifest's.
        self.bot_scopes = MANIFEST_BOT_SCOPES if bot_scopes is None else bot_scopes
        self.server_errors: list[str] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._ts_counter = itertools.count(1)
        self._ts_base = int(time.time())
        self._calls: list[Call] = []
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: list[Ephemeral] = []
        self._files: dict[str, UploadedFile] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._views: list[JSON] = []
        self._published: list[PublishedView] = []
        self._tickets: set[str] = set()
        self._connections: dict[int, _WsConnection] = {}
        self._total_connections = 0
        self._envelopes: dict[str, Envelope] = {}
        self._acks: dict[str, Ack] = {}
        self._response_ids: dict[str, str | None] = {}
        self._response_posts: list[ResponsePost] = []
        self._rate_limits: dict[str, tuple[float, int]] = {}
        self._rate_limit_next: dict[str, tuple[int, int]] = {}
        self._faults: dict[str, _Fault] = {}
        self._delays: dict[str, tuple[float, int]] = {}
        self._write_interval: float | None = None
        self._last_write: dict[str, float] = {}
        self._served_429 = 0
        self._refuse_until = 0.0
        self._refused_connections = 0
        self._loopback: LoopbackServer | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` of the running fake."""
        if self._loopback is None:
            raise RuntimeError("FakeSlack is not started")
        return self._loopback.url

    @property
    def api_url(self) -> str:
        """The Web API base, usable as `WebClient(base_url=...)`."""
        return f"{self.base_url}/api/"

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        self._loopback = LoopbackServer(type("Handler", (_Handler,), {"fake": self}))
        return self

    def stop(self) -> None:
        """Stop serving and close every Socket Mode connection."""
        self._stopping.set()
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            conn.shutdown()
        if self._loopback is not None:
            self._loopback.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- waiting ---------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Block until `predicate()` holds (checked on every change in the fake), else TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout=timeout):
                raise TimeoutError(f"FakeSlack: timed out after {timeout} s waiting for {what}")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


class SpreadingSlack(FakeSlack):
    """The fake Slack sending each envelope to a live connection picked at random (seeded), as
    Slack spreads an app's envelopes over its connections: each replica gets its share."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._random = random.Random(seed)

    def _live_connection(self) -> _WsConnection:
        live = sorted((c for c in self._connections.values() if not c.draining), key=lambda c: c.id)
        if not live:
            raise RuntimeError("FakeSlack: no live Socket Mode connection")
        return self._random.choice(live)

    def connection_ids(self) -> set[int]:
        """The ids of the open connections (a new one is the newest process's)."""
        with self._lock:
            return set(self._connections)


class _Handler(BaseHTTPRequestHandler):
    """Routes HTTP requests and WebSocket upgrades to the owning FakeSlack."""

    fake: FakeSlack
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms each.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test)
        except Exception:  # a bug in the fake: answer 500 and keep it for the test to see
            self.fake.server_errors.append(traceback.format_exc())
            with suppress(OSError):
                self._send(500, "text/plain", b"fake Slack crashed", {})

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/link") and self.headers.get("Upgrade", "").lower() == "websocket":
            self._upgrade(parts.query)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path.startswith("/api/"):
            reply = self.fake.handle_api(path[len("/api/") :], dict(self.headers.items()), parts.query, body)
            self._send(
                reply.status,
                "application/json; charset=utf-8",
                json.dumps(reply.body).encode(),
                reply.headers,
            )
        elif path.startswith("/response/") and self.command == "POST":
            status, text = self.fake.handle_response_url(path[len("/response/") :], body)
            self._send(status, "text/plain; charset=utf-8", text.encode(), {})
        elif path.startswith("/upload/v1/") and self.command == "POST":
            status, text = self.fake.handle_upload(path[len("/upload/v1/") :], body)
            self._send(status, "text/plain; charset=utf-8", text.encode(), {})
        else:
            self._send(404, "text/plain", b"not found", {})

    def _upgrade(self, query: str) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "").strip()
        ticket = (parse_qs(query).get("ticket") or [""])[-1]
        if not key or not self.fake.websocket_ticket_ok(ticket):
            self._send(401, "text/plain", b"invalid ticket", {})
            self.close_connection = True
            return
        if self.fake.connection_refused():
            self._send(503, "text/plain", b"service unavailable", {})
            self.close_connection = True
            return
        self.connection.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n".encode()
        )
        self.close_connection = True
        self.fake.serve_websocket(self.connection, self.rfile)

    def _send(self, status: int, ctype: str, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the call log on the fake is what tests read."""
