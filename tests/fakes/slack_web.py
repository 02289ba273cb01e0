"""The fake Slack's Web API side: methods, response_url posts, file uploads, injected faults."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

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
MANIFEST_BOT_SCOPES: tuple[str, ...] = tuple(
    json.loads((Path(__file__).resolve().parents[2] / "manifest.json").read_text())["oauth_config"]["scopes"][
        "bot"
    ]
)


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
class ResponsePost:
    """One POST the app made to a response_url."""

    response_id: str
    envelope_id: str | None
    body: JSON
    status: int
    at: float


@dataclass(frozen=True)
class PublishedView:
    """One views.publish: whose Home, the view, and when."""

    user: str
    view: JSON
    at: float


MAX_VIEW_BLOCKS = 100  # Slack refuses a Home or modal view with more


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


class WebApiSide:
    """FakeSlack's Web API methods and records (state is FakeSlack's)."""

    bot_token: str
    app_token: str
    bot_scopes: tuple[str, ...]
    _lock: threading.RLock
    _stopping: threading.Event
    _ids: itertools.count[int]
    _ts_counter: itertools.count[int]
    _ts_base: int
    _calls: list[Call]
    _messages: dict[str, list[Message]]
    _ephemerals: list[Ephemeral]
    _files: dict[str, UploadedFile]
    _usergroups: dict[str, list[str]]
    _views: list[JSON]
    _published: list[PublishedView]
    _response_ids: dict[str, str | None]
    _response_posts: list[ResponsePost]
    _rate_limits: dict[str, tuple[float, int]]
    _rate_limit_next: dict[str, tuple[int, int]]
    _faults: dict[str, _Fault]
    _delays: dict[str, tuple[float, int]]
    _write_interval: float | None
    _last_write: dict[str, float]
    _served_429: int

    if TYPE_CHECKING:

        @property
        def base_url(self) -> str: ...

    _notify: Callable[[], None]
    connection_refused: Callable[[], bool]
    _issue_ticket: Callable[[], str]

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

    def published(self, user: str | None = None) -> list[PublishedView]:
        """Every views.publish so far (optionally to one user's Home), in order."""
        with self._lock:
            return [p for p in self._published if user is None or p.user == user]

    def home(self, user: str) -> JSON:
        """The view last published to ``user``'s Home; KeyError when none was."""
        found = self.published(user)
        if not found:
            raise KeyError(f"no Home published for {user}")
        return found[-1].view

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
            scopes = {"x-oauth-scopes": ",".join(self.bot_scopes)} if token == self.bot_token else {}
            reply = _Reply(200, {"ok": True, **result}, scopes)
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
        view = _view(args, "modal")
        opened = {"id": f"V{next(self._ids):08d}", **view}
        self._views.append(opened)
        return {"view": opened}

    def _api_views_publish(self, args: JSON) -> JSON:
        user = _required(args, "user_id", "invalid_arguments")
        view = _view(args, "home")
        published = {"id": f"V{next(self._ids):08d}", **view}
        self._published.append(PublishedView(user, published, time.monotonic()))
        return {"view": published}


_ROUTES: dict[str, Callable[[WebApiSide, JSON], JSON]] = {
    "auth.test": WebApiSide._api_auth_test,
    "apps.connections.open": WebApiSide._api_connections_open,
    "chat.postMessage": WebApiSide._api_post_message,
    "chat.update": WebApiSide._api_update,
    "chat.postEphemeral": WebApiSide._api_post_ephemeral,
    "chat.getPermalink": WebApiSide._api_get_permalink,
    "conversations.join": WebApiSide._api_join,
    "usergroups.users.list": WebApiSide._api_usergroup_users,
    "files.getUploadURLExternal": WebApiSide._api_get_upload_url,
    "files.completeUploadExternal": WebApiSide._api_complete_upload,
    "views.open": WebApiSide._api_views_open,
    "views.publish": WebApiSide._api_views_publish,
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


def _view(args: JSON, kind: str) -> JSON:
    """A view argument as Slack checks it: an object of that type, blocks a list of at most 100."""
    view = args.get("view")
    try:
        view = json.loads(view) if isinstance(view, str) else view
    except ValueError as exc:
        raise _ApiError("invalid_arguments") from exc
    if not isinstance(view, dict) or view.get("type") != kind:
        raise _ApiError("invalid_arguments")
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > MAX_VIEW_BLOCKS:
        raise _ApiError("invalid_arguments")
    return view


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
