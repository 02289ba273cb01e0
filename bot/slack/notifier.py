"""Shows deploys in Slack: a root message updated in place and one progress message in its thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.models import (
    TAIL_LINES,
    Deploy,
    DeployState,
    GateResult,
    Source,
    StepResult,
    StepStatus,
    TaskEvent,
    TaskStatus,
)
from bot.ports import StorePort
from bot.slack.blocks.thread import StepState, StepView, progress_message, root_message
from bot.slack.outbox import MessageRef, SlackOutbox

log = logging.getLogger(__name__)

# While a long step runs, the progress message is refreshed this often so elapsed time moves;
# events refresh it sooner (the outbox still keeps each message to one write per 2 s).
HEARTBEAT_SECONDS = 10.0
# GitHub statuses wait this long at most for the root message to exist: a busy Slack outbox
# must not hold the deploy queue (a later status carries the link).
LOG_URL_WAIT_SECONDS = 0.5
# A failed deploy's log is uploaded to its thread; past this size only its head and tail are.
MAX_UPLOAD_CHARS = 4 * 1024 * 1024


@dataclass
class _LiveDeploy:
    """What the notifier knows of one live deploy."""

    root: MessageRef  # the message showing the deploy's state, updated in place
    parent: MessageRef  # the thread everything else goes to (the root, or a merge announcement)
    steps: list[StepView]
    started: float = field(default_factory=time.monotonic)
    progress: MessageRef | None = None
    task: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    show_tail: bool = False
    permalink: str | None = None


class SlackNotifier:
    """A DeployObserver that renders deploys into Slack through the outbox."""

    def __init__(
        self,
        outbox: SlackOutbox,
        client: WebClient,
        store: StorePort,
        commit_url: Callable[[str, str], str],
        step_labels: Callable[[Deploy], Sequence[str]],
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._store = store
        self._commit_url = commit_url
        self._step_labels = step_labels
        self._deploys: dict[int, _LiveDeploy] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        self._heartbeat = threading.Thread(target=self._beat, name="slack-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop(self) -> None:
        self._stopping.set()

    # --- DeployObserver -----------------------------------------------------------------

    def deploy_changed(self, deploy: Deploy) -> None:
        with self._lock:
            live = self._live(deploy)
            self._render_root(deploy, live)
            if deploy.state.is_final:
                self._finish(deploy, live)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        names = ", ".join(f"{c.name} ({c.state.value})" for c in gate.waiting)
        with self._lock:
            live = self._live(deploy)
            live.task = f"waiting for CI: {names}"
            self._render_progress(deploy, live)

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        with self._lock:
            live = self._live(deploy)
            if len(live.steps) != total:
                live.steps = [StepView(i, "", StepState.PENDING) for i in range(1, total + 1)]
            live.steps[index - 1] = StepView(index, label, StepState.RUNNING)
            live.task = None
            live.tail.clear()
            self._render_progress(deploy, live)

    def step_output(self, deploy: Deploy, line: str) -> None:
        # No Slack write per line: the tail is shown when a step fails, the whole log is kept.
        with self._lock:
            self._live(deploy).tail.append(line)

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        if event.status is not TaskStatus.STARTED:
            return
        with self._lock:
            live = self._live(deploy)
            live.task = event.task
            self._render_progress(deploy, live)

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        with self._lock:
            live = self._live(deploy)
            state = StepState.OK if result.ok else StepState.FAILED
            label = live.steps[index - 1].label
            live.steps[index - 1] = StepView(index, label, state, "" if result.ok else result.reason)
            live.show_tail = result.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
            live.task = None
            self._render_progress(deploy, live)

    def current_step(self, deploy_id: int) -> str | None:
        """`step 2/3 git pull · task: X` for a running deploy this robot is showing."""
        with self._lock:
            live = self._deploys.get(deploy_id)
            if live is None:
                return None
            running = [s for s in live.steps if s.state is StepState.RUNNING]
            step = f"step {running[0].index}/{len(live.steps)} {running[0].label}" if running else None
            parts = [p for p in (step, live.task and f"task: {live.task}") if p]
            return " · ".join(parts) or None

    # --- log url for GitHub -------------------------------------------------------------

    def log_url(self, deploy: Deploy) -> str | None:
        """The root message's permalink (GitHub's log_url); None if Slack has no message yet."""
        with self._lock:
            live = self._deploys.get(deploy.id)
        if live is None:
            return None
        if live.permalink is None and live.parent.wait(LOG_URL_WAIT_SECONDS):
            try:
                answer = self._client.chat_getPermalink(
                    channel=live.parent.channel, message_ts=live.parent.ts or ""
                )
                live.permalink = str(answer["permalink"])
            except SlackClientError as exc:
                log.warning("deploy #%s: no permalink: %s", deploy.id, exc)
        return live.permalink

    # --- rendering ----------------------------------------------------------------------

    def _live(self, deploy: Deploy) -> _LiveDeploy:
        live = self._deploys.get(deploy.id)
        if live is None:
            labels = self._step_labels(deploy)
            steps = [StepView(i, label, StepState.PENDING) for i, label in enumerate(labels, start=1)]
            text, blocks = self._root_blocks(deploy)
            if deploy.message_ts and deploy.channel and deploy.source is not Source.MERGE:
                # A deploy whose root an earlier robot process posted (found interrupted, or
                # queued, after a restart) is updated in place, not given a second root.
                root = parent = self._outbox.adopt(deploy.channel, deploy.message_ts)
            elif deploy.message_ts and deploy.channel:
                # A merge announcement started this deploy: it stays as it is (its buttons still
                # serve the other environments) and the deploy lives in its thread.
                parent = self._outbox.adopt(deploy.channel, deploy.message_ts)
                root = self._outbox.post(deploy.channel, text, blocks, thread=parent)
            else:
                root = self._outbox.post(
                    deploy.channel or "", text, blocks, on_posted=self._recorder(deploy.id)
                )
                parent = root
            live = _LiveDeploy(root, parent, steps)
            self._deploys[deploy.id] = live
        return live

    def _recorder(self, deploy_id: int) -> Callable[[MessageRef], None]:
        def record(ref: MessageRef) -> None:
            self._store.update_deploy(deploy_id, channel=ref.channel, message_ts=ref.ts)

        return record

    def _root_blocks(self, deploy: Deploy) -> tuple[str, list[dict[str, object]]]:
        return root_message(deploy, self._commit_url(deploy.repo, deploy.sha), deploy.duration_seconds)

    def _render_root(self, deploy: Deploy, live: _LiveDeploy) -> None:
        if live.root.ts is None and not live.root.posted.is_set() and deploy.state is DeployState.QUEUED:
            return  # the post carrying this very state is still queued
        text, blocks = self._root_blocks(deploy)
        self._outbox.update(live.root, text, blocks)

    def _render_progress(self, deploy: Deploy, live: _LiveDeploy) -> None:
        tail = list(live.tail) if live.show_tail else None
        text, blocks = progress_message(live.steps, live.task, time.monotonic() - live.started, tail)
        if live.progress is None:
            live.progress = self._outbox.post(live.root.channel, text, blocks, thread=live.parent)
        else:
            self._outbox.update(live.progress, text, blocks)

    def _finish(self, deploy: Deploy, live: _LiveDeploy) -> None:
        if live.progress is not None:
            self._render_progress(deploy, live)
        if deploy.state is DeployState.FAILED and live.progress is not None:
            self._outbox.upload(
                live.parent,
                f"deploy-{deploy.id}.log",
                _capped(self._store.read_log(deploy.id)),
                f"Deploy #{deploy.id} log",
            )
        del self._deploys[deploy.id]

    def _beat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            with self._lock:
                showing = list(self._deploys.items())
            for deploy_id, live in showing:
                deploy = self._store.get_deploy(deploy_id)
                if deploy is not None and deploy.state is DeployState.RUNNING and live.progress:
                    with self._lock:
                        self._render_progress(deploy, live)


def _capped(log: str, limit: int = MAX_UPLOAD_CHARS) -> str:
    """The log as uploaded: whole when small, else its first and last halves and what was cut."""
    if len(log) <= limit:
        return log
    half = limit // 2
    cut = f"[… {len(log) - 2 * half:,} characters cut from the upload: it keeps the first and last …]"
    return f"{log[:half]}\n{cut}\n{log[-half:]}"
