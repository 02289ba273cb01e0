"""Shows deploys in Slack: a root message updated in place and one progress message in its thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.changes import ChangeLists, summarize
from bot.errors import StoreError
from bot.models import (
    TAIL_LINES,
    ApprovalView,
    ChangeList,
    Deploy,
    DeployState,
    GateResult,
    StepResult,
    StepStatus,
    TaskEvent,
    TaskStatus,
)
from bot.ports import StorePort
from bot.slack.blocks.changes import changes_text
from bot.slack.blocks.thread import (
    RollbackOffer,
    StepState,
    StepView,
    progress_message,
    rollback_offer,
    root_message,
)
from bot.slack.outbox import MessageRef, SlackOutbox

log = logging.getLogger(__name__)

# While a long step runs, the progress message is refreshed this often so elapsed time moves;
# events refresh it sooner (the outbox still keeps each message to one write per 2 s).
HEARTBEAT_SECONDS = 10.0
# A GitHub status of a deploy whose thread the store already names waits this long at most (once
# per deploy) for this process to see it too (another process's root is seen at its follower's
# next look); otherwise none waits: the pipeline already waited for the root, a busy Slack
# outbox must not hold the deploy, and a later status carries the link.
LOG_URL_WAIT_SECONDS = 0.25
# A failed deploy's log is uploaded to its thread; past this size only its head and tail are.
MAX_UPLOAD_CHARS = 4 * 1024 * 1024
# The robot process that claimed a deploy's root posts it; others update it once its ts is in
# the store, looking this often. A claim this old without a ts (its process died between claim
# and post) may be taken over: better a late second root than none.
ROOT_FOLLOW_SECONDS = 0.2
ROOT_CLAIM_STALE_SECONDS = 30.0
# A deploy another process finished is forgotten here this long after it ended.
FORGET_AFTER_SECONDS = 60.0


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
    posting: bool = False  # this process posts the root (the post carries the state it was made in)
    url_waited: bool = False  # a status already waited for the root to be known


class SlackNotifier:
    """A DeployObserver that renders deploys into Slack through the outbox."""

    def __init__(
        self,
        outbox: SlackOutbox,
        client: WebClient,
        store: StorePort,
        commit_url: Callable[[str, str], str],
        step_labels: Callable[[Deploy], Sequence[str]],
        approval_view: Callable[[Deploy], ApprovalView | None] = lambda deploy: None,
        changes: ChangeLists | None = None,
    ) -> None:
        """``approval_view``: what a root shows of the deploy's approvals (None: its env wants none);
        ``changes``: where the root finds what the deploy ships (None: roots list no changes)."""
        self._approval_view = approval_view
        self._outbox = outbox
        self._client = client
        self._store = store
        self._commit_url = commit_url
        self._step_labels = step_labels
        self._deploys: dict[int, _LiveDeploy] = {}
        self._change_lists = changes
        self._shown_changes: dict[int, ChangeList] = {}
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
        # The root says what a waiting deploy waits for (its note), so no progress message is
        # posted: the process that later runs the steps posts the deploy's one progress message.
        names = ", ".join(f"{c.name} ({c.state.value})" for c in gate.waiting)
        with self._lock:
            live = self._live(deploy)
            live.task = f"waiting for CI: {names}"
            if live.progress is not None:
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
        wait = 0.0 if live.url_waited or deploy.message_ts is None else LOG_URL_WAIT_SECONDS
        live.url_waited = live.url_waited or wait > 0
        if live.permalink is None and live.parent.wait(wait):
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
            live = self._show(deploy, steps)
            self._deploys[deploy.id] = live
        return live

    def _show(self, deploy: Deploy, steps: list[StepView]) -> _LiveDeploy:
        """Where this process shows the deploy: its one root, posted here only under a claim.

        Whichever robot process shows a deploy first claims its root in the store and posts
        it; every other one (a replica that runs it, cancels it, re-checks its CI, or finds it
        interrupted) updates that message in place. A merge deploy's root is a reply in its
        announcement's thread (the announcement keeps its buttons for the other environments).
        """
        channel = deploy.channel or ""
        thread = None
        if deploy.message_ts and deploy.channel and deploy.message_ts != deploy.root_ts:
            thread = self._outbox.adopt(deploy.channel, deploy.message_ts)
        if deploy.root_ts and deploy.channel:
            root = self._outbox.adopt(deploy.channel, deploy.root_ts)
            return _LiveDeploy(root, thread or root, steps)
        try:
            token = self._store.claim_root(deploy.id, ROOT_CLAIM_STALE_SECONDS)
            claimed = token is not None
        except StoreError as exc:
            log.warning("deploy #%s: root not claimed (store: %s); posting it anyway", deploy.id, exc)
            token, claimed = None, True
        if claimed:
            text, blocks = self._root_blocks(deploy)
            root = self._outbox.post(
                channel, text, blocks, thread=thread, on_posted=self._recorder(deploy.id, token), urgent=True
            )
            return _LiveDeploy(root, thread or root, steps, posting=True)
        root = MessageRef(channel)  # posted by another process: known once its ts is recorded
        threading.Thread(
            target=self._follow, args=(deploy.id, root), name=f"slack-root-{deploy.id}", daemon=True
        ).start()
        return _LiveDeploy(root, thread or root, steps)

    def _follow(self, deploy_id: int, root: MessageRef) -> None:
        """Wait for the root another process claimed; take the claim over once it is stale."""
        started = time.monotonic()
        while not self._stopping.wait(ROOT_FOLLOW_SECONDS):
            try:
                deploy = self._store.get_deploy(deploy_id)
                if deploy is None:
                    break
                if deploy.root_ts and deploy.channel:
                    self._outbox.resolve(root, deploy.channel, deploy.root_ts)
                    return
                if time.monotonic() - started < ROOT_CLAIM_STALE_SECONDS:
                    continue
                token = self._store.claim_root(deploy_id, ROOT_CLAIM_STALE_SECONDS)
            except StoreError as exc:
                log.warning("deploy #%s: root not followed yet: %s", deploy_id, exc)
                continue
            if token is not None:
                log.warning("deploy #%s: its root was claimed but never posted; posting it here", deploy_id)
                self._repost(deploy, root, token)
                return
        self._outbox.abandon(root)

    def _repost(self, deploy: Deploy, stale: MessageRef, token: str) -> None:
        with self._lock:
            live = self._deploys.get(deploy.id)
            self._outbox.abandon(stale)
            if live is None or live.root is not stale:
                return
            text, blocks = self._root_blocks(deploy)
            thread = None if live.parent is stale else live.parent
            live.root = self._outbox.post(
                stale.channel,
                text,
                blocks,
                thread=thread,
                on_posted=self._recorder(deploy.id, token),
                urgent=True,
            )
            live.posting = True
            if thread is None:
                live.parent = live.root
                live.progress = None  # its post went nowhere; the next step posts it again

    def _recorder(self, deploy_id: int, token: str | None) -> Callable[[MessageRef], None]:
        def record(ref: MessageRef) -> None:
            if token is None:
                return
            try:
                if not self._store.record_root(deploy_id, token, ref.channel, ref.ts or ""):
                    log.warning("deploy #%s: another robot took its root over; this post is extra", deploy_id)
            except StoreError as exc:
                log.warning("deploy #%s: root not recorded: %s", deploy_id, exc)

        return record

    def _root_blocks(self, deploy: Deploy) -> tuple[str, list[dict[str, object]]]:
        try:
            approval = self._approval_view(deploy)
        except StoreError as exc:
            log.warning("deploy #%s: approvals unreadable, root shown without them: %s", deploy.id, exc)
            approval = None
        url = self._commit_url(deploy.repo, deploy.sha)
        return root_message(
            deploy,
            url,
            deploy.duration_seconds,
            rollback=self._rollback_offer(deploy),
            changes=self._changes_text(deploy),
            approval=approval,
        )

    def _rollback_offer(self, deploy: Deploy) -> RollbackOffer | None:
        """A final root's Roll back button, read from the environment's history (one store read)."""
        if deploy.state not in (DeployState.SUCCEEDED, DeployState.FAILED):
            return None
        try:
            return rollback_offer(deploy, self._store.rollback_choice(deploy.repo, deploy.env))
        except StoreError as exc:
            log.warning("deploy #%s: no Roll back button (store: %s)", deploy.id, exc)
            return None

    def _changes_text(self, deploy: Deploy) -> str | None:
        """What the deploy ships, once some process worked it out (it is read from the store
        until then: the worker that claims the deploy may be another robot process)."""
        lists = self._change_lists
        if lists is None:
            return None
        changes = self._shown_changes.get(deploy.id)
        if changes is None:
            changes = lists.recorded(deploy.id)
            if changes is None:
                return None
            # Until claimed it is worked out again at the claim (the environment may move on
            # while approvers think): kept only from then on.
            if deploy.state not in (DeployState.AWAITING_APPROVAL, DeployState.QUEUED):
                self._shown_changes[deploy.id] = changes
        summary = summarize(changes, deploy.env)
        return changes_text(summary, lists.compare_url(deploy.repo, changes))

    def _render_root(self, deploy: Deploy, live: _LiveDeploy) -> None:
        unposted = live.root.ts is None and not live.root.posted.is_set()
        if live.posting and unposted and deploy.state is DeployState.QUEUED:
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
        self._deploys.pop(deploy.id, None)
        self._shown_changes.pop(deploy.id, None)

    def _beat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            with self._lock:
                showing = list(self._deploys.items())
            for deploy_id, live in showing:
                try:
                    deploy = self._store.get_deploy(deploy_id)
                except StoreError:
                    continue
                if deploy is not None and deploy.state is DeployState.RUNNING and live.progress:
                    with self._lock:
                        self._render_progress(deploy, live)
                elif deploy is None or _long_over(deploy):
                    # Another process ended it (this one only showed it for a while).
                    with self._lock:
                        self._deploys.pop(deploy_id, None)
                        self._shown_changes.pop(deploy_id, None)


def _long_over(deploy: Deploy) -> bool:
    if not deploy.state.is_final or deploy.finished_at is None:
        return False
    return (datetime.now(UTC) - deploy.finished_at).total_seconds() > FORGET_AFTER_SECONDS


def _capped(log: str, limit: int = MAX_UPLOAD_CHARS) -> str:
    """The log as uploaded: whole when small, else its first and last halves and what was cut."""
    if len(log) <= limit:
        return log
    half = limit // 2
    cut = f"[… {len(log) - 2 * half:,} characters cut from the upload: it keeps the first and last …]"
    return f"{log[:half]}\n{cut}\n{log[-half:]}"
