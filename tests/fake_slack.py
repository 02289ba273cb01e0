"""A fake Slack on 127.0.0.1: Web API, response_url, file uploads and a Socket Mode WebSocket."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import math
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackServer

JSON = dict[str, Any]

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
TEAM_ID = "T0FAKE"
APP_ID = "A0FAKE"
BOT_USER_ID = "U0ROBOT"
BOT_ID = "B0ROBOT"
WORKSPACE_URL = "https://acme.slack.test/"

# Slack documents that a response_url accepts up to 5 posts within 30 minutes.
RESPONSE_URL_MAX_USES = 5
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_FRAME_BYTES = 16 * 1024 * 1024
_MAX_FRAMES_PER_CONNECTION = 1_000_000
_WRITE_METHODS = ("chat.postMessage", "chat.update")


# ---- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One Web API call the fake answered: method, arguments (token removed), status and time."""

    method: str
    args: JSON
    token: str | None
    status: int
    ok: bool
    error: str | None
    at: float


@dataclass
class Message:
    """The current state of one channel message, with how often it was updated."""

    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    thread_ts: str | None
    user: str
    updates: int = 0
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ephemeral:
    """One ephemeral message shown to one user."""

    channel: str
    user: str
    text: str
    blocks: list[JSON]
    thread_ts: str | None
    message_ts: str


@dataclass
class UploadedFile:
    """A file going through files.getUploadURLExternal → upload POST → files.completeUploadExternal."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass(frozen=True)
class Envelope:
    """One Socket Mode envelope sent to the app."""

    envelope_id: str
    type: str
    payload: JSON
    connection_id: int
    sent_at: float


@dataclass(frozen=True)
class Ack:
    """The app's acknowledgement of an envelope; `latency` is seconds from send to ack."""

    envelope_id: str
    payload: JSON | None
    acked_at: float
    latency: float | None


@dataclass(frozen=True)
class ResponsePost:
    """One POST the app made to a response_url."""

    response_id: str
    envelope_id: str | None
    body: JSON
    status: int
    at: float


class _Reply(NamedTuple):
    status: int
    body: JSON
    headers: dict[str, str]


class _ApiError(Exception):
    """Raised by a Web API route to answer `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


@dataclass
class _Fault:
    """A pending injected failure for one method."""

    error: str
    status: int
    times: int


# ---- WebSocket (RFC 6455) -------------------------------------------------------------------


def _accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a client key."""
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()


def _encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size <= 125:
        head += bytes([size])
    elif size <= 0xFFFF:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def _read_exact(stream: io.BufferedIOBase, size: int) -> bytes | None:
    """Exactly `size` bytes, or None at end of stream."""
    data = stream.read(size) if size else b""
    return data if len(data) == size else None


def _read_frame(stream: io.BufferedIOBase) -> tuple[int, bytes] | None:
    """One frame from the client as (opcode, unmasked payload); None when the stream ends."""
    head = _read_exact(stream, 2)
    if head is None:
        return None
    opcode, masked, size = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if size in (126, 127):
        ext = _read_exact(stream, 2 if size == 126 else 8)
        if ext is None:
            return None
        size = struct.unpack("!H" if len(ext) == 2 else "!Q", ext)[0]
    if size > _MAX_FRAME_BYTES:
        return None
    mask = _read_exact(stream, 4) if masked else b"\0\0\0\0"
    data = _read_exact(stream, size)
    if mask is None or data is None:
        return None
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


class _WsConnection:
    """One accepted Socket Mode connection."""

    def __init__(self, conn_id: int, sock: socket.socket, rfile: io.BufferedIOBase) -> None:
        self.id = conn_id
        self.sock = sock
        self.rfile = rfile
        self.draining = False
        self.aborted = False
        self._send_lock = threading.Lock()

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one frame; frames from several threads never interleave."""
        with self._send_lock:
            self.sock.sendall(_encode_frame(opcode, payload))

    def send_json(self, message: JSON) -> None:
        """Send one JSON text frame."""
        self.send(_OP_TEXT, json.dumps(message).encode())

    def abort(self) -> None:
        """Drop the TCP connection with a reset, as a network failure would."""
        self.aborted = True
        with suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # Wakes the reader thread, which then closes the socket (the close sends the RST).
            self.sock.shutdown(socket.SHUT_RD)

    def shutdown(self) -> None:
        """Close both directions so the reader thread ends."""
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


# ---- the fake ------------------------------------------------------------------------------


class FakeSlack:
    """In-memory Slack: Web API, response_url and Socket Mode on 127.0.0.1, with fault injection."""

    def __init__(self, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
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

    def start(self) -> FakeSlack:
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

    def __enter__(self) -> FakeSlack:
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

    # ---- state views -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every Web API call so far, in order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """The Web API calls to one method, in order."""
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def messages(self, channel: str) -> list[Message]:
        """Snapshots of the messages of a channel (thread replies included), in posting order."""
        with self._lock:
            return [
                replace(m, blocks=list(m.blocks), history=list(m.history))
                for m in self._messages.get(channel, [])
            ]

    def message(self, channel: str, ts: str) -> Message:
        """A snapshot of one message; KeyError when it does not exist."""
        for msg in self.messages(channel):
            if msg.ts == ts:
                return msg
        raise KeyError(f"no message {ts} in {channel}")

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The replies in one thread, in order (the parent excluded)."""
        return [m for m in self.messages(channel) if m.thread_ts == thread_ts and m.ts != thread_ts]

    def ephemerals(self, channel: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages, optionally of one channel."""
        with self._lock:
            return [e for e in self._ephemerals if channel is None or e.channel == channel]

    @property
    def files(self) -> dict[str, UploadedFile]:
        """Files by id, completed or not."""
        with self._lock:
            return {k: replace(v) for k, v in self._files.items()}

    @property
    def views(self) -> list[JSON]:
        """Views opened with views.open."""
        with self._lock:
            return list(self._views)

    @property
    def served_429(self) -> int:
        """How many 429 answers the fake served (rate limits and the write limiter)."""
        with self._lock:
            return self._served_429

    def set_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        """Define a user group's members for usergroups.users.list."""
        with self._lock:
            self._usergroups[usergroup_id] = list(user_ids)

    # ---- faults ----------------------------------------------------------------------------

    def rate_limit(self, method: str, seconds: float, retry_after: int = 1) -> None:
        """Answer 429 + Retry-After to every call of `method` for the next `seconds`."""
        with self._lock:
            self._rate_limits[method] = (time.monotonic() + seconds, retry_after)

    def rate_limit_next(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer 429 + Retry-After to the next `times` calls of `method`."""
        with self._lock:
            self._rate_limit_next[method] = (times, retry_after)

    def enforce_write_limit(self, per_second: float = 1.0) -> None:
        """Answer 429 to chat.postMessage/chat.update on a channel written to less than 1/rate ago."""
        with self._lock:
            self._write_interval = 1.0 / per_second

    def fail_next(
        self, method: str, error: str = "internal_error", times: int = 1, status: int = 200
    ) -> None:
        """Answer `{"ok": false, "error": error}` (with `status`) to the next `times` calls of `method`."""
        with self._lock:
            self._faults[method] = _Fault(error, status, times)

    def delay_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Hold the answer to the next `times` calls of `method` for `seconds` (client timeouts)."""
        with self._lock:
            self._delays[method] = (seconds, times)

    def refuse_connections(self, seconds: float) -> None:
        """Refuse new Socket Mode connections for `seconds` (a Slack outage of the socket side).

        apps.connections.open answers 503 `service_unavailable` and a WebSocket upgrade answers
        503, so a client can neither get a URL nor use one it holds; live connections stay up
        (drop them with hard_close_all). The Web API keeps answering.
        """
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    @property
    def refusing(self) -> bool:
        """Whether new Socket Mode connections are refused right now."""
        with self._lock:
            return time.monotonic() < self._refuse_until

    @property
    def refused_connections(self) -> int:
        """How many connection attempts (connections.open or upgrade) were refused."""
        with self._lock:
            return self._refused_connections

    def connection_refused(self) -> bool:
        """Count and report a refused attempt while an outage lasts."""
        with self._lock:
            if time.monotonic() >= self._refuse_until:
                return False
            self._refused_connections += 1
        self._notify()
        return True

    # ---- Socket Mode: test side ------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """Open Socket Mode connections."""
        with self._lock:
            return len(self._connections)

    @property
    def total_connections(self) -> int:
        """Socket Mode connections accepted since start."""
        with self._lock:
            return self._total_connections

    def wait_connected(self, timeout: float = 5.0, total: int | None = None) -> None:
        """Wait for a live (not draining) connection and, if given, `total` accepted connections."""

        def ready() -> bool:
            live = any(not c.draining for c in self._connections.values())
            return live and (total is None or self._total_connections >= total)

        self.wait_for(ready, timeout, f"a Socket Mode connection (total={total})")

    def send_envelope(self, type_: str, payload: JSON, accepts_response_payload: bool = False) -> str:
        """Send one envelope on the newest live connection; returns its envelope_id."""
        envelope_id = f"env-{next(self._ids)}"
        with self._lock:
            conn = self._live_connection()
            envelope = Envelope(envelope_id, type_, payload, conn.id, time.monotonic())
            self._envelopes[envelope_id] = envelope
        conn.send_json(
            {
                "envelope_id": envelope_id,
                "payload": payload,
                "type": type_,
                "accepts_response_payload": accepts_response_payload,
            }
        )
        return envelope_id

    def send_slash_command(
        self,
        command: str = "/deploy",
        text: str = "",
        user_id: str = "U1",
        channel_id: str = "C1",
        user_name: str = "alice",
        channel_name: str = "deploys",
    ) -> str:
        """Send a slash command envelope as Slack does; returns its envelope_id."""
        response_id = self._new_response_id()
        payload = {
            "token": "verification-token",
            "team_id": TEAM_ID,
            "team_domain": "acme",
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/response/{response_id}",
            "trigger_id": f"trigger-{next(self._ids)}",
        }
        envelope_id = self.send_envelope("slash_commands", payload, accepts_response_payload=True)
        self._bind_response(response_id, envelope_id)
        return envelope_id

    def send_block_action(
        self,
        action_id: str,
        value: str,
        user_id: str = "U1",
        channel_id: str = "C1",
        message_ts: str | None = None,
        block_id: str = "actions",
        user_name: str = "alice",
    ) -> str:
        """Send a block_actions envelope for a button click; returns its envelope_id."""
        response_id = self._new_response_id()
        message: JSON | None = None
        if message_ts is not None:
            with suppress(KeyError):
                msg = self.message(channel_id, message_ts)
                message = {
                    "type": "message",
                    "user": msg.user,
                    "ts": msg.ts,
                    "text": msg.text,
                    "blocks": msg.blocks,
                    **({"thread_ts": msg.thread_ts} if msg.thread_ts else {}),
                }
        payload: JSON = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": f"trigger-{next(self._ids)}",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "channel": {"id": channel_id, "name": "deploys"},
            "response_url": f"{self.base_url}/response/{response_id}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": action_id},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if message is not None:
            payload["message"] = message
        envelope_id = self.send_envelope("interactive", payload)
        self._bind_response(response_id, envelope_id)
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        """Wait for the app's ack of an envelope (its `.payload` is what the app answered)."""
        self.wait_for(lambda: envelope_id in self._acks, timeout, f"the ack of {envelope_id}")
        with self._lock:
            return self._acks[envelope_id]

    def envelope(self, envelope_id: str) -> Envelope:
        """An envelope sent earlier."""
        with self._lock:
            return self._envelopes[envelope_id]

    def response_posts(self, envelope_id: str | None = None) -> list[ResponsePost]:
        """What the app posted to response_urls, optionally for one envelope."""
        with self._lock:
            return [p for p in self._response_posts if envelope_id is None or p.envelope_id == envelope_id]

    def wait_response(self, envelope_id: str, timeout: float = 5.0, index: int = 0) -> JSON:
        """Wait for the `index`-th post to an envelope's response_url and return its body."""
        self.wait_for(
            lambda: len(self.response_posts(envelope_id)) > index,
            timeout,
            f"response_url post #{index} of {envelope_id}",
        )
        return self.response_posts(envelope_id)[index].body

    def disconnect_all(self, reason: str = "refresh_requested") -> None:
        """Send Slack's `{"type": "disconnect"}` to every live connection; they get no new envelopes."""
        with self._lock:
            connections = [c for c in self._connections.values() if not c.draining]
            for conn in connections:
                conn.draining = True
        for conn in connections:
            with suppress(OSError):
                conn.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})
        self._notify()

    def hard_close_all(self) -> None:
        """Drop every connection's TCP with a reset, without any WebSocket close."""
        with self._lock:
            connections = list(self._connections.values())
            for conn in connections:
                conn.draining = True
        for conn in connections:
            conn.abort()
        self._notify()

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Send a WebSocket close frame on every connection (the client then drops the socket)."""
        with self._lock:
            connections = list(self._connections.values())
            for conn in connections:
                conn.draining = True
        for conn in connections:
            with suppress(OSError):
                conn.send(_OP_CLOSE, struct.pack("!H", code) + reason.encode())
        self._notify()

    def _live_connection(self) -> _WsConnection:
        live = [c for c in self._connections.values() if not c.draining]
        if not live:
            raise RuntimeError("FakeSlack: no live Socket Mode connection")
        return max(live, key=lambda c: c.id)

    def _new_response_id(self) -> str:
        return f"r{next(self._ids)}"

    def _bind_response(self, response_id: str, envelope_id: str) -> None:
        with self._lock:
            self._response_ids[response_id] = envelope_id

    # ---- Socket Mode: server side ----------------------------------------------------------

    def _issue_ticket(self) -> str:
        ticket = f"ticket-{next(self._ids)}"
        with self._lock:
            self._tickets.add(ticket)
        return ticket

    def _take_ticket(self, ticket: str) -> bool:
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return True
            return False

    def serve_websocket(self, sock: socket.socket, rfile: io.BufferedIOBase) -> None:
        """Run one accepted connection until it ends: hello, then frames."""
        with self._lock:
            conn = _WsConnection(next(self._ids), sock, rfile)
            self._connections[conn.id] = conn
            self._total_connections += 1
            count = len(self._connections)
        try:
            conn.send_json(
                {
                    "type": "hello",
                    "num_connections": count,
                    "debug_info": {
                        "host": "fake-slack",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
            self._notify()
            self._retire_draining(keep=conn.id)
            self._read_loop(conn)
        except OSError:
            pass  # the peer went away; nothing to answer
        finally:
            with self._lock:
                self._connections.pop(conn.id, None)
            if conn.aborted:
                with suppress(OSError):
                    rfile.close()
                    sock.close()
            self._notify()

    def _retire_draining(self, keep: int) -> None:
        """Close connections told to disconnect, now that a replacement is up, as Slack does."""
        with self._lock:
            old = [c for c in self._connections.values() if c.draining and c.id != keep]
        for conn in old:
            with suppress(OSError):
                conn.send(_OP_CLOSE, struct.pack("!H", 1000))

    def _read_loop(self, conn: _WsConnection) -> None:
        for _ in range(_MAX_FRAMES_PER_CONNECTION):
            frame = _read_frame(conn.rfile)
            if frame is None or conn.aborted or self._stopping.is_set():
                return
            opcode, data = frame
            if opcode == _OP_TEXT:
                self._on_text(data)
            elif opcode == _OP_PING:
                conn.send(_OP_PONG, data)
            elif opcode == _OP_CLOSE:
                conn.send(_OP_CLOSE, data[:2])
                return

    def _on_text(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.server_errors.append(f"non-JSON text frame from the app: {data[:200]!r}")
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not isinstance(envelope_id, str):
            self.server_errors.append(f"unexpected frame from the app: {data[:200]!r}")
            return
        now = time.monotonic()
        with self._lock:
            sent = self._envelopes.get(envelope_id)
            if envelope_id not in self._acks:
                payload = message.get("payload")
                self._acks[envelope_id] = Ack(
                    envelope_id,
                    payload if isinstance(payload, dict) else None,
                    now,
                    None if sent is None else now - sent.sent_at,
                )
        self._notify()

    # ---- HTTP entry points -----------------------------------------------------------------

    def handle_api(self, method: str, headers: dict[str, str], query: str, body: bytes) -> _Reply:
        """Answer one Web API call and record it."""
        args = _parse_args(headers, query, body)
        token = _bearer(headers) or _str_or_none(args.pop("token", None))
        args.pop("token", None)
        self._apply_delay(method)
        try:
            if method == "apps.connections.open" and self.connection_refused():
                raise _ApiError("service_unavailable", 503)
            self._apply_faults(method)
            self._check_token(method, token)
            route = _ROUTES.get(method)
            if route is None:
                raise _ApiError("unknown_method")
            with self._lock:
                result = route(self, args)
            reply = _Reply(200, {"ok": True, **result}, {})
        except _ApiError as exc:
            reply = _Reply(exc.status, {"ok": False, "error": exc.error}, exc.headers)
        with self._lock:
            if reply.status == 429:
                self._served_429 += 1
            self._calls.append(
                Call(
                    method,
                    args,
                    token,
                    reply.status,
                    bool(reply.body.get("ok")),
                    reply.body.get("error"),
                    time.monotonic(),
                )
            )
        self._notify()
        return reply

    def handle_response_url(self, response_id: str, body: bytes) -> tuple[int, str]:
        """Record a post to a response_url; answers like Slack's hooks (`ok` or an error)."""
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            return 400, "invalid_payload"
        with self._lock:
            if response_id not in self._response_ids:
                return 404, "no_such_url"
            envelope_id = self._response_ids[response_id]
            used = sum(1 for p in self._response_posts if p.response_id == response_id and p.status == 200)
            status = 200 if used < RESPONSE_URL_MAX_USES else 404
            self._response_posts.append(
                ResponsePost(
                    response_id,
                    envelope_id,
                    parsed if isinstance(parsed, dict) else {"value": parsed},
                    status,
                    time.monotonic(),
                )
            )
        self._notify()
        return (200, "ok") if status == 200 else (404, "used_url")

    def handle_upload(self, file_id: str, body: bytes) -> tuple[int, str]:
        """Store the bytes posted to an upload URL."""
        with self._lock:
            upload = self._files.get(file_id)
            if upload is None:
                return 404, "not_found"
            upload.content = body
        self._notify()
        return 200, f"OK - {len(body)}"

    def websocket_ticket_ok(self, ticket: str) -> bool:
        """Whether a /link/ ticket was issued and not used yet (it is used up now)."""
        return self._take_ticket(ticket)

    # ---- fault plumbing --------------------------------------------------------------------

    def _apply_delay(self, method: str) -> None:
        with self._lock:
            seconds, times = self._delays.get(method, (0.0, 0))
            if times > 0:
                self._delays[method] = (seconds, times - 1)
        if times > 0:
            self._stopping.wait(seconds)

    def _apply_faults(self, method: str) -> None:
        with self._lock:
            now = time.monotonic()
            until, retry_after = self._rate_limits.get(method, (0.0, 1))
            if now < until:
                raise _ratelimited(retry_after)
            times, retry_after = self._rate_limit_next.get(method, (0, 1))
            if times > 0:
                self._rate_limit_next[method] = (times - 1, retry_after)
                raise _ratelimited(retry_after)
            fault = self._faults.get(method)
            if fault is not None and fault.times > 0:
                fault.times -= 1
                raise _ApiError(fault.error, fault.status)

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise _ApiError("not_authed")
        if method == "apps.connections.open":
            if not token.startswith("xapp-"):
                raise _ApiError("not_allowed_token_type")
            if token != self.app_token:
                raise _ApiError("invalid_auth")
        elif token != self.bot_token:
            raise _ApiError("not_allowed_token_type" if token.startswith("xapp-") else "invalid_auth")

    def _check_write_limit(self, channel: str) -> None:
        if self._write_interval is None:
            return
        now = time.monotonic()
        last = self._last_write.get(channel)
        if last is not None and now - last < self._write_interval:
            raise _ratelimited(max(1, math.ceil(self._write_interval - (now - last))))
        self._last_write[channel] = now

    # ---- Web API methods (called with the lock held) ---------------------------------------

    def _next_ts(self) -> str:
        return f"{self._ts_base}.{next(self._ts_counter):06d}"

    def _find(self, channel: str, ts: str) -> Message:
        for msg in self._messages.get(channel, []):
            if msg.ts == ts:
                return msg
        raise _ApiError("message_not_found")

    def _api_auth_test(self, args: JSON) -> JSON:
        return {
            "url": WORKSPACE_URL,
            "team": "Acme",
            "user": "deploy-robot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_connections_open(self, args: JSON) -> JSON:
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_base}/link/?ticket={self._issue_ticket()}"}

    def _api_post_message(self, args: JSON) -> JSON:
        channel = _required(args, "channel", "channel_not_found")
        text, blocks = _text_and_blocks(args)
        self._check_write_limit(channel)
        thread_ts = _str_or_none(args.get("thread_ts"))
        msg = Message(channel, self._next_ts(), text, blocks, thread_ts, BOT_USER_ID)
        self._messages.setdefault(channel, []).append(msg)
        return {"channel": channel, "ts": msg.ts, "message": _message_json(msg)}

    def _api_update(self, args: JSON) -> JSON:
        channel = _required(args, "channel", "channel_not_found")
        ts = _required(args, "ts", "message_not_found")
        msg = self._find(channel, ts)
        text, blocks = _text_and_blocks(args)
        self._check_write_limit(channel)
        msg.history.append(msg.text)
        msg.text, msg.blocks = text, blocks
        msg.updates += 1
        return {"channel": channel, "ts": ts, "text": text, "message": _message_json(msg)}

    def _api_post_ephemeral(self, args: JSON) -> JSON:
        channel = _required(args, "channel", "channel_not_found")
        user = _required(args, "user", "user_not_in_channel")
        text, blocks = _text_and_blocks(args)
        ts = self._next_ts()
        thread_ts = _str_or_none(args.get("thread_ts"))
        self._ephemerals.append(Ephemeral(channel, user, text, blocks, thread_ts, ts))
        return {"message_ts": ts}

    def _api_get_permalink(self, args: JSON) -> JSON:
        channel = _required(args, "channel", "channel_not_found")
        msg = self._find(channel, _required(args, "message_ts", "message_not_found"))
        link = f"{WORKSPACE_URL}archives/{channel}/p{msg.ts.replace('.', '')}"
        if msg.thread_ts and msg.thread_ts != msg.ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _api_join(self, args: JSON) -> JSON:
        channel = _required(args, "channel", "channel_not_found")
        return {"channel": {"id": channel, "is_member": True}}

    def _api_usergroup_users(self, args: JSON) -> JSON:
        group = _required(args, "usergroup", "no_such_subteam")
        if group not in self._usergroups:
            raise _ApiError("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _api_get_upload_url(self, args: JSON) -> JSON:
        filename = _required(args, "filename", "invalid_arguments")
        try:
            length = int(args.get("length", ""))
        except ValueError as exc:
            raise _ApiError("invalid_arguments") from exc
        file_id = f"F{next(self._ids):08d}"
        self._files[file_id] = UploadedFile(file_id, filename, length)
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _api_complete_upload(self, args: JSON) -> JSON:
        raw = args.get("files")
        try:
            items = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise _ApiError("invalid_arguments") from exc
        if not isinstance(items, list) or not items:
            raise _ApiError("invalid_arguments")
        done: list[JSON] = []
        for item in items:
            upload = self._files.get(str(item.get("id"))) if isinstance(item, dict) else None
            if upload is None or upload.content is None:
                raise _ApiError("file_not_found")
            upload.title = _str_or_none(item.get("title")) or upload.filename
            upload.channel_id = _str_or_none(args.get("channel_id"))
            upload.thread_ts = _str_or_none(args.get("thread_ts"))
            upload.initial_comment = _str_or_none(args.get("initial_comment"))
            upload.completed = True
            done.append(
                {
                    "id": upload.file_id,
                    "name": upload.filename,
                    "title": upload.title,
                    "size": len(upload.content),
                }
            )
        return {"files": done}

    def _api_views_open(self, args: JSON) -> JSON:
        _required(args, "trigger_id", "invalid_trigger_id")
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not isinstance(view, dict):
            raise _ApiError("invalid_arguments")
        opened = {"id": f"V{next(self._ids):08d}", **view}
        self._views.append(opened)
        return {"view": opened}


_ROUTES: dict[str, Callable[[FakeSlack, JSON], JSON]] = {
    "auth.test": FakeSlack._api_auth_test,
    "apps.connections.open": FakeSlack._api_connections_open,
    "chat.postMessage": FakeSlack._api_post_message,
    "chat.update": FakeSlack._api_update,
    "chat.postEphemeral": FakeSlack._api_post_ephemeral,
    "chat.getPermalink": FakeSlack._api_get_permalink,
    "conversations.join": FakeSlack._api_join,
    "usergroups.users.list": FakeSlack._api_usergroup_users,
    "files.getUploadURLExternal": FakeSlack._api_get_upload_url,
    "files.completeUploadExternal": FakeSlack._api_complete_upload,
    "views.open": FakeSlack._api_views_open,
}


# ---- helpers -------------------------------------------------------------------------------


def _ratelimited(retry_after: int) -> _ApiError:
    return _ApiError("ratelimited", 429, {"Retry-After": str(retry_after)})


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _required(args: JSON, name: str, error: str) -> str:
    value = _str_or_none(args.get(name))
    if value is None:
        raise _ApiError(error)
    return value


def _text_and_blocks(args: JSON) -> tuple[str, list[JSON]]:
    """The text and blocks of a chat write; Slack refuses one with neither."""
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError as exc:
            raise _ApiError("invalid_blocks") from exc
    if blocks is not None and not isinstance(blocks, list):
        raise _ApiError("invalid_blocks")
    text = _str_or_none(args.get("text")) or ""
    if not text and not blocks and not args.get("attachments"):
        raise _ApiError("no_text")
    return text, list(blocks or [])


def _message_json(msg: Message) -> JSON:
    out: JSON = {
        "type": "message",
        "user": msg.user,
        "bot_id": BOT_ID,
        "text": msg.text,
        "blocks": msg.blocks,
        "ts": msg.ts,
    }
    if msg.thread_ts:
        out["thread_ts"] = msg.thread_ts
    return out


def _bearer(headers: dict[str, str]) -> str | None:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not auth.startswith("Bearer "):
        return None
    return auth[len("Bearer ") :].strip() or None


def _parse_args(headers: dict[str, str], query: str, body: bytes) -> JSON:
    """Arguments from the query string and a form or JSON body, as the Web API accepts them."""
    args: JSON = {k: v[-1] for k, v in parse_qs(query).items()}
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    if not body:
        return args
    if ctype.startswith("application/json"):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            args.update(parsed)
    elif ctype.startswith("application/x-www-form-urlencoded"):
        args.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
    return args


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
