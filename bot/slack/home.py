"""App Home: each user's dashboard, published when they open it and kept current, and what its buttons do.

Every button goes through the same DeployService calls, and so the same rights, as the slash
commands; the view shows only the buttons the user may use, and the service checks again on the
click. A refusal is told in the robot's messages tab (a Home click has no response_url).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.deploys import DeployService
from bot.errors import AccessDenied, BotError, InvalidDuration, StoreError
from bot.home import Dashboard, HomePage
from bot.models import (
    Actor,
    ActorKind,
    Deploy,
    GateResult,
    HomeViewer,
    Source,
    StepResult,
    TaskEvent,
)
from bot.ports import StorePort
from bot.slack.blocks.approvals import unrecorded_text
from bot.slack.blocks.home import MAX_VIEW_BLOCKS, View, home_view, lock_form, repos_that_fit
from bot.slack.blocks.replies import error_text
from bot.slack.blocks.stats import DORA_HOME_BLOCKS
from bot.slack.ids import (
    HOME_ALL_REPOS,
    HOME_DURATION_BLOCK,
    HOME_REASON_BLOCK,
    decode_deploy_id,
    decode_rollback_value,
    decode_target,
)
from bot.slack.outbox import SlackOutbox
from bot.validation import parse_lock_duration

log = logging.getLogger(__name__)

VIEWER_WINDOW = timedelta(hours=24)
"""Views of users who opened Home this recently are kept current."""
SNAPSHOT_TTL_SECONDS = 5.0
"""A republish reuses the store's picture while nothing changed here, this long at most: a burst
of viewers costs one set of reads. A user's own open or click always reads afresh."""
VIEWERS_TTL_SECONDS = 5.0
"""How long the list of recent viewers read from the store is reused (other replicas' opens
show up within this)."""
_MAX_FIELD_ERROR = 150
AckFn = Callable[..., object]


class HomeRefresher:
    """A DeployObserver that republishes the Home of everyone who opened it in the last 24 h.

    Through the outbox: at most one ``views.publish`` per user per ``interval`` s, each rendered
    when it is sent (the latest state wins). The process that makes a change republishes, so with
    several replicas each paces its own publishes.
    """

    def __init__(
        self,
        store: StorePort,
        outbox: SlackOutbox,
        interval: float,
        window: timedelta = VIEWER_WINDOW,
        viewers_ttl: float = VIEWERS_TTL_SECONDS,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._interval = interval
        self._window = window
        self._ttl = viewers_ttl
        self._render: Callable[[str], View] | None = None
        self._viewers: dict[str, HomeViewer] = {}
        self._read_at = -float("inf")
        self._lock = threading.Lock()
        self.generation = 0
        """Bumped by every change: a picture of the store taken before it is out of date."""

    def attach(self, render: Callable[[str], View]) -> None:
        """What renders a user's view (HomeOps, built after the service this observer watches)."""
        self._render = render

    def seen(self, viewer: HomeViewer) -> None:
        """A viewer's open or filter as just recorded here (before the next read of the store)."""
        with self._lock:
            self._viewers[viewer.user] = viewer

    def repo_filter(self, user: str) -> str | None:
        """The repo ``user`` last chose in the filter (None: every repo)."""
        return self._recent().get(user, HomeViewer(user, datetime.now(UTC))).repo_filter

    def changed(self) -> None:
        """A deploy or lock changed: every recent viewer's Home is republished, paced."""
        with self._lock:
            self.generation += 1
        render = self._render
        if render is None:
            return
        for user in self._recent():
            self._outbox.publish_view(user, partial(render, user), self._interval)

    def _recent(self) -> dict[str, HomeViewer]:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < self._ttl:
                return dict(self._viewers)
        try:
            viewers = self._store.home_viewers(datetime.now(UTC) - self._window)
        except StoreError as exc:
            log.warning("App Home viewers unknown, republishing to the last known: %s", exc)
            viewers = None
        with self._lock:
            if viewers is not None:
                self._viewers = {v.user: v for v in viewers}
                self._read_at = now
            return dict(self._viewers)

    # --- DeployObserver: what changes a dashboard ------------------------------------------

    def deploy_changed(self, deploy: Deploy) -> None:
        self.changed()

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        self.changed()

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        self.changed()

    def step_output(self, deploy: Deploy, line: str) -> None:
        pass

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        pass

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        pass

    def log_url(self, deploy: Deploy) -> str | None:
        return None


class HomeOps:
    """Renders a user's Home and runs its buttons: the same service calls and rights as the commands."""

    def __init__(
        self,
        service: DeployService,
        dashboard: Dashboard,
        store: StorePort,
        client: WebClient,
        outbox: SlackOutbox,
        refresher: HomeRefresher,
        interval: float,
    ) -> None:
        self._service = service
        self._dashboard = dashboard
        self._store = store
        self._client = client
        self._outbox = outbox
        self._refresher = refresher
        self._interval = interval
        self._snapshots: dict[str | None, tuple[float, int, HomePage]] = {}
        self._snapshots_lock = threading.Lock()
        refresher.attach(partial(self.render, fresh=False))

    def render(self, user: str, fresh: bool = True) -> View:
        """``user``'s Home as of now (``fresh``: False reuses a snapshot up to SNAPSHOT_TTL_SECONDS old)."""
        page = self._snapshot(self._refresher.repo_filter(user), fresh)
        return home_view(self._dashboard.for_user(page, user), datetime.now(UTC))

    def _snapshot(self, repo_filter: str | None, fresh: bool) -> HomePage:
        now, generation = time.monotonic(), self._refresher.generation
        with self._snapshots_lock:
            cached = self._snapshots.get(repo_filter)
        if not fresh and cached is not None:
            taken, seen, page = cached
            if seen == generation and now - taken < SNAPSHOT_TTL_SECONDS:
                return page
        # The generation is read before the store: a change made meanwhile outdates this picture.
        fits = repos_that_fit
        if self._dashboard.shows_dora:  # its section takes room from the repos
            fits = partial(repos_that_fit, budget=MAX_VIEW_BLOCKS - DORA_HOME_BLOCKS)
        page = self._dashboard.snapshot(repo_filter, fits)
        with self._snapshots_lock:
            self._snapshots[repo_filter] = (now, generation, page)
        return page

    def publish(self, user: str) -> None:
        """Publish ``user``'s Home now (their own open or click); paced publishes wait after it."""
        try:
            view = self.render(user)
            self._client.views_publish(user_id=user, view=view)
        except (SlackApiError, SlackClientError, StoreError) as exc:
            log.warning("App Home of %s not published: %s", user, exc)
        finally:
            self._outbox.view_published(user, self._interval)

    # --- what the user did -----------------------------------------------------------------

    def opened(self, user: str) -> None:
        """``user`` opened the Home tab: recorded (so changes republish it for a day), then published."""
        if not user:
            return
        self._refresher.seen(self._store.open_home(user))
        self.publish(user)

    def choose_repo(self, user: str, value: str) -> None:
        """The repo filter: one repo, or every repo (remembered per user)."""
        repo = value if value != HOME_ALL_REPOS and self._dashboard.configured(value) else None
        self._act(user, lambda actor: self._refresher.seen(self._store.set_home_filter(user, repo)))

    def deploy(self, user: str, value: str) -> None:
        """**Deploy <branch>**: the SHA its confirm dialog named (the branch when none was known)."""

        def work(actor: Actor) -> None:
            repo, env, ref = decode_target(value)
            self._service.request(repo, ref=ref, env=env, user=actor, source=Source.BUTTON)

        self._act(user, work)

    def cancel(self, user: str, value: str) -> None:
        """**Cancel** on a running or waiting deploy."""
        self._act(user, lambda actor: self._service.cancel(decode_deploy_id(value, "cancel"), actor))

    def approve(self, user: str, value: str) -> None:
        """**Approve #N** on a deploy awaiting approval (an approver's right, never the requester's)."""

        def work(actor: Actor) -> None:
            result = self._service.approve(decode_deploy_id(value, "approve"), actor)
            if not result.recorded:  # a second click, or another approval got there first
                self._outbox.post(user, unrecorded_text(result))

        self._act(user, work)

    def reject(self, user: str, value: str) -> None:
        """**Reject #N** (after its confirm): the deploy ends rejected."""
        self._act(user, lambda actor: self._service.reject(decode_deploy_id(value, "reject"), actor))

    def roll_back(self, user: str, value: str) -> None:
        """**Roll back to <sha>** (after its confirm): exactly the SHA and undone deploy it names."""

        def work(actor: Actor) -> None:
            repo, env, sha, undo = decode_rollback_value(value)
            self._service.rollback_to(repo, env, sha, undo, user=actor, source=Source.BUTTON)

        self._act(user, work)

    def unlock(self, user: str, value: str) -> None:
        """**Unlock**."""

        def work(actor: Actor) -> None:
            repo, env, _ = decode_target(value)
            self._service.unlock(repo, env, actor)
            self._refresher.changed()

        self._act(user, work)

    def open_lock_form(self, user: str, value: str, trigger_id: str) -> None:
        """**Lock…**: the modal asking why (opened only for whoever may lock; the submit checks again)."""

        def work(actor: Actor) -> None:
            repo, env, _ = decode_target(value)
            target = self._service.target(repo, env)
            if not self._service.may_lock(actor, target.repo):
                raise AccessDenied(f"You may not lock {target.env} of {target.repo}.")
            self._client.views_open(trigger_id=trigger_id, view=lock_form(target.repo, target.env))

        self._act(user, work, publish=False)

    def submit_lock(self, user: str, metadata: str, values: Mapping[str, Any], ack: AckFn) -> None:
        """The Lock… modal's submit: lock, or keep the modal open with the refusal under the field
        it concerns (a duration that does not parse: under the duration; else under the reason)."""
        if not user:
            ack(response_action="errors", errors={HOME_REASON_BLOCK: "Slack did not say who you are."})
            return
        try:
            written = _field(values, HOME_DURATION_BLOCK)
            duration = parse_lock_duration(written) if written else None
        except InvalidDuration as exc:
            ack(response_action="errors", errors={HOME_DURATION_BLOCK: _field_error(exc)})
            return
        try:
            repo, env, _ = decode_target(metadata)
            self._service.lock(repo, env, _actor(user), read_reason(values), duration)
        except BotError as exc:
            ack(response_action="errors", errors={HOME_REASON_BLOCK: _field_error(exc)})
            return
        ack()
        self._refresher.changed()
        self.publish(user)

    def _act(self, user: str, work: Callable[[Actor], object], publish: bool = True) -> None:
        """Run a click's work as ``user``; a refusal is told in the messages tab; then their Home
        is published at once (they acted: they should see it)."""
        if not user:
            log.warning("an App Home click named no user; nothing done")
            return
        try:
            work(_actor(user))
        except BotError as exc:
            self._outbox.post(user, error_text(exc))
        except (SlackApiError, SlackClientError) as exc:
            log.warning("App Home action of %s failed at Slack: %s", user, exc)
        if publish:
            self.publish(user)


def read_reason(values: Mapping[str, Any]) -> str:
    """The reason typed in the Lock… modal ("" when left empty); ``values`` is the view's state."""
    return _field(values, HOME_REASON_BLOCK)


def _field(values: Mapping[str, Any], block_id: str) -> str:
    """A text input of a modal's state (its block and action ids alike), stripped; "" when empty."""
    block = values.get(block_id)
    field = block.get(block_id) if isinstance(block, Mapping) else None
    value = field.get("value") if isinstance(field, Mapping) else None
    return value.strip() if isinstance(value, str) else ""


def _field_error(exc: BotError) -> str:
    """A refusal shown under a modal field (Slack shows at most this much there)."""
    return error_text(exc)[:_MAX_FIELD_ERROR]


def _actor(user: str) -> Actor:
    return Actor(ActorKind.SLACK, user)
