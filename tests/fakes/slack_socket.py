"""The fake Slack's Socket Mode side: the WebSocket (RFC 6455), envelopes the test sends, acks."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.slack_web import Message, ResponsePost

JSON = dict[str, Any]

TEAM_ID = "T0FAKE"
APP_ID = "A0FAKE"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_FRAME_BYTES = 16 * 1024 * 1024
_MAX_FRAMES_PER_CONNECTION = 1_000_000


# ---- records ------------------------------------------------------------------------------


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


class SocketModeSide:
    """FakeSlack's Socket Mode methods: connections, envelopes, acks, outages (state is FakeSlack's)."""

    server_errors: list[str]
    _lock: threading.RLock
    _stopping: threading.Event
    _ids: itertools.count[int]
    _tickets: set[str]
    _connections: dict[int, _WsConnection]
    _total_connections: int
    _envelopes: dict[str, Envelope]
    _acks: dict[str, Ack]
    _response_ids: dict[str, str | None]
    _response_posts: list[ResponsePost]
    _refuse_until: float
    _refused_connections: int

    if TYPE_CHECKING:

        @property
        def base_url(self) -> str: ...

    _notify: Callable[[], None]
    wait_for: Callable[..., None]
    message: Callable[[str, str], Message]

    # ---- outages ---------------------------------------------------------------------------

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

    def send_envelope(
        self,
        type_: str,
        payload: JSON,
        accepts_response_payload: bool = False,
        response_id: str | None = None,
    ) -> str:
        """Send one envelope on the newest live connection; returns its envelope_id.

        ``response_id``, the one in the payload's response_url, is bound to the envelope before
        it leaves: the app may post there before this thread runs again.
        """
        envelope_id = f"env-{next(self._ids)}"
        with self._lock:
            conn = self._live_connection()
            envelope = Envelope(envelope_id, type_, payload, conn.id, time.monotonic())
            self._envelopes[envelope_id] = envelope
            if response_id is not None:
                self._response_ids[response_id] = envelope_id
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
        return self.send_envelope(
            "slash_commands", payload, accepts_response_payload=True, response_id=response_id
        )

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
        return self.send_envelope("interactive", payload, response_id=response_id)

    def send_app_home_opened(self, user_id: str = "U1", tab: str = "home") -> str:
        """Send an `app_home_opened` event (the user opened the Home tab); returns its envelope_id."""
        event_ts = f"{time.time():.6f}"
        payload: JSON = {
            "token": "verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {
                "type": "app_home_opened",
                "user": user_id,
                "channel": f"D{user_id[1:]}",
                "tab": tab,
                "event_ts": event_ts,
            },
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "U0ROBOT", "is_bot": True}],
        }
        return self.send_envelope("events_api", payload)

    def send_view_action(
        self,
        action_id: str,
        value: str = "",
        user_id: str = "U1",
        view: JSON | None = None,
        selected: str | None = None,
        block_id: str = "actions",
    ) -> str:
        """A click in a view (the Home tab, or a modal): container type `view`, no response_url,
        a trigger_id; ``selected`` makes it a static_select choice. Returns the envelope_id."""
        shown: JSON = dict(view or {"id": "V0HOME", "type": "home", "blocks": []})
        shown.setdefault("id", "V0HOME")
        action: JSON = {"action_id": action_id, "block_id": block_id, "action_ts": f"{time.time():.6f}"}
        if selected is None:
            action.update(
                {"type": "button", "value": value, "text": {"type": "plain_text", "text": action_id}}
            )
        else:
            option = {"text": {"type": "plain_text", "text": selected}, "value": selected}
            action.update({"type": "static_select", "selected_option": option})
        payload: JSON = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id, "name": user_id, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {"type": "view", "view_id": shown["id"]},
            "trigger_id": f"trigger-{next(self._ids)}",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "view": shown,
            "actions": [action],
        }
        return self.send_envelope("interactive", payload)

    def send_view_submission(self, view: JSON, values: JSON, user_id: str = "U1") -> str:
        """Submit a modal the app opened: ``values`` is `{block_id: {action_id: {"type", "value"}}}`.
        The ack's payload is the app's answer (empty: closed; `response_action: errors`)."""
        payload: JSON = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user_id, "username": user_id, "name": user_id, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "trigger_id": f"trigger-{next(self._ids)}",
            "view": {**view, "state": {"values": values}, "team_id": TEAM_ID, "app_id": APP_ID},
            "response_urls": [],
        }
        return self.send_envelope("interactive", payload, accepts_response_payload=True)

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

    def websocket_ticket_ok(self, ticket: str) -> bool:
        """Whether a /link/ ticket was issued and not used yet (it is used up now)."""
        return self._take_ticket(ticket)
