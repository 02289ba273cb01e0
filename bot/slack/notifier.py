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

from bot.models import Deploy, DeployState, GateResult, Source, StepResult, StepStatus, TaskEvent, TaskStatus
from bot.ports import StorePort
from bot.slack.blocks import TAIL_LINES, StepState, StepView, progress_message, root_message
from bot.slack.outbox import MessageRef, SlackOutbox

log = logging.getLogger(__name__)

# While a long step runs, the progress message is refreshed this often so elapsed time moves;
# events refresh it sooner (the outbox still keeps each message to one write per 2 s).
HEARTBEAT_SECONDS = 10.0
# GitHub statuses wait this long at most for the root message to exist: a busy Slack outbox
# must not hold the deploy queue (a later status carries the link).
LOG_URL_WAIT_SECONDS = 0.5


@dataclass
class _Thread:
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
        self._threads: dict[int, _Thread] = {}
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
            thread = self._thread(deploy)
            self._render_root(deploy, thread)
            if deploy.state.is_final:
                self._finish(deploy, thread)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        names = ", ".join(f"{c.name} ({c.state.value})" for c in gate.waiting)
        with self._lock:
            thread = self._thread(deploy)
            thread.task = f"waiting for CI: {names}"
            self._render_progress(deploy, thread)

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        with self._lock:
            thread = self._thread(deploy)
            if len(thread.steps) != total:
                thread.steps = [StepView(i, "", StepState.PENDING) for i in range(1, total + 1)]
            thread.steps[index - 1] = StepView(index, label, StepState.RUNNING)
            thread.task = None
            thread.tail.clear()
            self._render_progress(deploy, thread)

    def step_output(self, deploy: Deploy, line: str) -> None:
        # No Slack write per line: the tail is shown when a step fails, the whole log is kept.
        with self._lock:
            self._thread(deploy).tail.append(line)

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        if event.status is not TaskStatus.STARTED:
            return
        with self._lock:
            thread = self._thread(deploy)
            thread.task = event.task
            self._render_progress(deploy, thread)

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        with self._lock:
            thread = self._thread(deploy)
            state = StepState.OK if result.ok else StepState.FAILED
            label = thread.steps[index - 1].label
            thread.steps[index - 1] = StepView(index, label, state, "" if result.ok else result.reason)
            thread.show_tail = result.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
            thread.task = None
            self._render_progress(deploy, thread)

    def current_step(self, deploy_id: int) -> str | None:
        """`step 2/3 git pull · task: X` for a running deploy this robot is showing."""
        with self._lock:
            thread = self._threads.get(deploy_id)
            if thread is None:
                return None
            running = [s for s in thread.steps if s.state is StepState.RUNNING]
            step = f"step {running[0].index}/{len(thread.steps)} {running[0].label}" if running else None
            parts = [p for p in (step, thread.task and f"task: {thread.task}") if p]
            return " · ".join(parts) or None

    # --- log url for GitHub -------------------------------------------------------------

    def log_url(self, deploy: Deploy) -> str | None:
        """The root message's permalink (GitHub's log_url); None if Slack has no message yet."""
        with self._lock:
            thread = self._threads.get(deploy.id)
        if thread is None:
            return None
        if thread.permalink is None and thread.parent.wait(LOG_URL_WAIT_SECONDS):
            try:
                answer = self._client.chat_getPermalink(
                    channel=thread.parent.channel, message_ts=thread.parent.ts or ""
                )
                thread.permalink = str(answer["permalink"])
            except SlackClientError as exc:
                log.warning("deploy #%s: no permalink: %s", deploy.id, exc)
        return thread.permalink

    # --- rendering ----------------------------------------------------------------------

    def _thread(self, deploy: Deploy) -> _Thread:
        thread = self._threads.get(deploy.id)
        if thread is None:
            labels = self._step_labels(deploy)
            steps = [StepView(i, label, StepState.PENDING) for i, label in enumerate(labels, start=1)]
            text, blocks = self._root_blocks(deploy)
            if deploy.message_ts and deploy.channel and deploy.source is not Source.MERGE:
                # Fault fix: a deploy whose root an earlier robot process posted (found interrupted,
                # or queued, after a restart) is updated in place, not given a second root.
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
            thread = _Thread(root, parent, steps)
            self._threads[deploy.id] = thread
        return thread

    def _recorder(self, deploy_id: int) -> Callable[[MessageRef], None]:
        def record(ref: MessageRef) -> None:
            self._store.update_deploy(deploy_id, channel=ref.channel, message_ts=ref.ts)

        return record

    def _root_blocks(self, deploy: Deploy) -> tuple[str, list[dict[str, object]]]:
        return root_message(deploy, self._commit_url(deploy.repo, deploy.sha), deploy.duration_seconds)

    def _render_root(self, deploy: Deploy, thread: _Thread) -> None:
        if thread.root.ts is None and not thread.root.posted.is_set() and deploy.state is DeployState.QUEUED:
            return  # the post carrying this very state is still queued
        text, blocks = self._root_blocks(deploy)
        self._outbox.update(thread.root, text, blocks)

    def _render_progress(self, deploy: Deploy, thread: _Thread) -> None:
        tail = list(thread.tail) if thread.show_tail else None
        text, blocks = progress_message(thread.steps, thread.task, time.monotonic() - thread.started, tail)
        if thread.progress is None:
            thread.progress = self._outbox.post(thread.root.channel, text, blocks, thread=thread.parent)
        else:
            self._outbox.update(thread.progress, text, blocks)

    def _finish(self, deploy: Deploy, thread: _Thread) -> None:
        if thread.progress is not None:
            self._render_progress(deploy, thread)
        if deploy.state is DeployState.FAILED and thread.progress is not None:
            self._outbox.upload(
                thread.parent,
                f"deploy-{deploy.id}.log",
                self._store.read_log(deploy.id),
                f"Deploy #{deploy.id} full log",
            )
        del self._threads[deploy.id]

    def _beat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            with self._lock:
                live = list(self._threads.items())
            for deploy_id, thread in live:
                deploy = self._store.get_deploy(deploy_id)
                if deploy is not None and deploy.state is DeployState.RUNNING and thread.progress:
                    with self._lock:
                        self._render_progress(deploy, thread)
