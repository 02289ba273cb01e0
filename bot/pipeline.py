"""One deploy from claim to final state: CI gate → GitHub Deployment → steps → statuses."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from bot.changes import ChangeLists
from bot.config import EnvironmentSettings, RepoSettings, Settings
from bot.errors import BotError, DeploymentRefused, GitHubError, StepSetupError, StoreError
from bot.logs import deploy_fields
from bot.logsink import LogSink
from bot.models import (
    ContextResult,
    Deploy,
    DeployState,
    GateResult,
    StepResult,
    StepStatus,
    TaskEvent,
)
from bot.ports import DeployObserver, GitHubPort, StepContext, StepRunner, StorePort
from bot.preflight import blocked
from bot.redact import Redactor
from bot.text import cut_description

log = logging.getLogger(__name__)

# A final GitHub status GitHub refused (after the gateway's own retries) is tried again for
# this long, starting this soon and backing off, so an outage of minutes still ends agreeing.
STATUS_RETRY_SECONDS = 900.0
STATUS_RETRY_FIRST_SECONDS = 2.0
# A final store transition the store refused is tried again for this long, backing off from
# this soon: a locked or briefly unreachable database must not leave the deploy running.
STORE_RETRY_SECONDS = 300.0
STORE_RETRY_FIRST_SECONDS = 0.2
STORE_RETRY_MAX_SECONDS = 10.0
STOPPED_SUMMARY = "cancelled: the robot stopped"
# Said first of a deploy its own robot cancelled because it was stopped (SIGTERM), not a person.
STOPPED_REASON = "the robot stopped"

T = TypeVar("T")

# Before its GitHub deployment is created, a deploy waits this long at most for the Slack root
# some process claimed to be posted (the payload names the thread), looking this often. Roots go
# ahead of every other Slack write, so one is late only behind other posts to its channel (Slack
# takes about one a second): the deploy then goes on, its payload names the channel alone, and
# its deployment statuses link the thread (log_url) from the first one sent once it is posted.
ROOT_WAIT_SECONDS = 0.5
ROOT_POLL_SECONDS = 0.05


def step_labels(settings: Settings, redact: Callable[[str], str], deploy: Deploy) -> list[str]:
    """The deploy's steps as they are shown (secrets masked), before any has run."""
    env = settings.repos[deploy.repo].environments[deploy.env]
    return [redact(step.label) for step in env.steps()]


@dataclass(frozen=True)
class Outcome:
    """How a deploy ended: our state, GitHub's deployment state, and one line saying why."""

    state: DeployState
    github_state: str
    summary: str


@dataclass(frozen=True)
class _Gate:
    """One look at a deploy's CI gate: green (all None), stopped (``outcome``), or ``pending``."""

    outcome: Outcome | None = None
    pending: str | None = None  # the waiting note: what it waits for
    result: GateResult | None = None  # what GitHub said, when it answered


class Pipeline:
    """Runs one claimed deploy to a final state (or parks it waiting for CI); never raises for
    anything a deploy can hit."""

    def __init__(
        self,
        settings: Settings,
        github: GitHubPort,
        store: StorePort,
        runner: StepRunner,
        redactor: Redactor,
        environ: Mapping[str, str],
    ) -> None:
        self._settings = settings
        self._github = github
        self._store = store
        self._runner = runner
        self._redact = redactor
        self._environ = environ
        self._stop_by: float | None = None
        self._stopping = threading.Event()
        self.changes: ChangeLists | None = None
        """Works out what each claimed deploy ships (None: no change lists)."""

    def stop_by(self, deadline: float) -> None:
        """The robot stops: GitHub calls and store retries end by ``deadline`` (time.monotonic)."""
        self._stop_by = deadline
        self._stopping.set()

    def abandon(self, deploy_id: int, observer: DeployObserver) -> Deploy | None:
        """At shutdown, record as cancelled a deploy whose worker is stuck (say in a GitHub call)
        and runs no step; None when it is already final or unknown."""
        deploy = self._store.get_deploy(deploy_id)
        if deploy is None or deploy.state.is_final:
            return None
        return self._finish(deploy, Outcome(DeployState.CANCELLED, "error", STOPPED_SUMMARY), observer)

    def run(
        self, deploy: Deploy, observer: DeployObserver, cancel: threading.Event, gated: bool = False
    ) -> Deploy:
        """Gate (unless ``gated``: it just went green), record, run and report a claimed deploy.

        Returns it in its final state, or ``waiting`` when its CI is pending: then it is parked
        in the store and no thread waits on it (``recheck`` moves it on).
        """
        repo = self._settings.repos[deploy.repo]
        env = repo.environments[deploy.env]
        sink = LogSink(self._store, deploy.id, self._settings.deploys.max_log_lines)
        if not gated and self.changes is not None:
            # Before the gate, so a waiting or blocked root shows it too; every way on from
            # here tells the observer, which then shows it. A change list never fails a deploy.
            try:
                self.changes.for_deploy(deploy)
            except Exception:
                log.exception("deploy #%s: no change list", deploy.id, extra=deploy_fields(deploy))
        try:
            outcome = None if gated else self._claim_gate(deploy, repo, observer, cancel, sink)
            if isinstance(outcome, Deploy):
                sink.close()
                return outcome
            if outcome is None:
                observer.deploy_changed(deploy)
                deploy, outcome = self._deploy(deploy, repo, env, observer, cancel, sink)
        except BotError as exc:
            outcome = Outcome(DeployState.FAILED, "error", str(exc))
        except Exception:
            log.exception("deploy #%s: robot fault", deploy.id, extra=deploy_fields(deploy))
            outcome = Outcome(DeployState.FAILED, "error", "robot fault (see the robot's log)")
        # The summary goes to the store, GitHub, Slack and the terminal: it may quote a step's
        # reason or a GitHub answer, so it is masked like output.
        outcome = replace(outcome, summary=self._redact(outcome.summary))
        sink.write(f"==> {outcome.state.value}: {outcome.summary}")
        sink.close()
        return self._finish(deploy, outcome, observer)

    def list_awaiting(self, deploy_id: int, observer: DeployObserver) -> Deploy | None:
        """Work out what a deploy awaiting approval ships, so its approvers see it; never raises.

        The claim works it out again against what the environment runs then: the same SHA pair
        is the store's cached compare (no GitHub call). Returns the deploy as it is now.
        """
        try:
            deploy = self._store.get_deploy(deploy_id)
            if deploy is None or deploy.state is not DeployState.AWAITING_APPROVAL or self.changes is None:
                return deploy
            self.changes.for_deploy(deploy)
            current = self._store.get_deploy(deploy_id)
        except Exception:
            log.exception("deploy #%s: no change list while it awaits approval", deploy_id)
            return None
        # Once decided (approved, rejected, cancelled), whoever decided redraws the root.
        if current is not None and current.state is DeployState.AWAITING_APPROVAL:
            observer.deploy_changed(current)
        return current

    def recheck(self, deploy: Deploy, observer: DeployObserver, owner: int | None) -> Deploy | None:
        """One re-check of a waiting deploy whose re-check this process claimed.

        Green: the deploy, now running for ``owner`` (the caller runs it, ``gated=True``).
        Failed or past ``ci_timeout``: it ends blocked. Still pending: it keeps waiting (the
        note is rewritten only when what it waits for changed). None unless it is to run.
        """
        repo = self._settings.repos.get(deploy.repo)
        if repo is None or deploy.env not in repo.environments:
            gate = _Gate(Outcome(DeployState.BLOCKED, "error", "no longer in the robot's config"))
        else:
            gate = self._check_gate(deploy, repo)
        if gate.outcome is None and gate.pending is None:
            return self._store.resume(deploy.id, owner)
        if gate.outcome is not None:
            summary = self._redact(gate.outcome.summary)
            final = self._store.finish_waiting(deploy.id, gate.outcome.state, summary)
            if final is not None:
                self._store.append_log(deploy.id, [f"==> {final.state.value}: {summary}"])
                observer.deploy_changed(final)
            return None
        if gate.pending is not None and gate.pending != deploy.waiting_for:
            updated = self._store.update_waiting(deploy.id, gate.pending)
            if updated is not None:
                observer.deploy_changed(updated)
                if gate.result is not None:
                    observer.gate_waiting(updated, gate.result)
        return None

    def report_interrupted(self, deploy: Deploy) -> None:
        """Tell GitHub that a deploy taken over from a robot that stopped will not finish."""
        summary = "interrupted: the robot stopped during the deploy"
        outcome = Outcome(DeployState.INTERRUPTED, "error", summary)
        if self._status(deploy, outcome.github_state, outcome.summary, None):
            # GitHub may be down at start-up too: retry off this thread, as any final status.
            self._retry_in_background(deploy, outcome)

    def _claim_gate(
        self,
        deploy: Deploy,
        repo: RepoSettings,
        observer: DeployObserver,
        cancel: threading.Event,
        sink: LogSink,
    ) -> Outcome | Deploy | None:
        """The gate at claim time: None (go), the outcome that stops it, or the parked deploy."""
        gate = self._check_gate(deploy, repo)
        if cancel.is_set():
            return Outcome(DeployState.CANCELLED, "error", "cancelled while waiting for CI")
        if gate.pending is None:
            return gate.outcome
        interval = self._settings.deploys.ci_poll_interval
        parked = self._store.park(deploy.id, deploy.owner_id, gate.pending, interval)
        if parked is None:
            # A cancel was asked during the check (or the deploy was taken over: _finish sees it).
            return Outcome(DeployState.CANCELLED, "error", "cancelled while waiting for CI")
        sink.write(f"==> {gate.pending}")
        observer.deploy_changed(parked)
        if gate.result is not None:
            observer.gate_waiting(parked, gate.result)
        return parked

    def _check_gate(self, deploy: Deploy, repo: RepoSettings) -> _Gate:
        """One look at CI for the deploy's SHA; its ``ci_timeout`` counts from its claim."""
        # A rollback's SHA succeeded here before: it is not gated again.
        if deploy.force or deploy.rollback_of is not None or not repo.gate:
            return _Gate()
        result = None
        try:
            gate = self._github.ci_state(deploy.repo, deploy.sha, repo.gate)
        except GitHubError as exc:
            # GitHub down is not CI failed: keep waiting, as for a pending context.
            unread = "deploy #%s: CI state unreadable, will re-check: %s"
            log.warning(unread, deploy.id, exc, extra=deploy_fields(deploy))
            pending = f"GitHub did not answer ({exc})"
        else:
            if gate.failing:
                return _Gate(Outcome(DeployState.BLOCKED, "error", "CI failed: " + _contexts(gate.failing)))
            if gate.green:
                return _Gate()
            pending, result = _names(gate), gate
        since = deploy.started_at or datetime.now(UTC)
        if (datetime.now(UTC) - since).total_seconds() >= repo.ci_timeout:
            why = f"CI still pending after {repo.ci_timeout:g} s: {pending}"
            return _Gate(Outcome(DeployState.BLOCKED, "error", why))
        return _Gate(pending=self._redact(f"waiting for CI: {pending}"), result=result)

    def _deploy(
        self,
        deploy: Deploy,
        repo: RepoSettings,
        env: EnvironmentSettings,
        observer: DeployObserver,
        cancel: threading.Event,
        sink: LogSink,
    ) -> tuple[Deploy, Outcome]:
        deploy = self._with_thread(deploy)
        try:
            deployment_id = self._github.create_deployment(
                deploy.repo,
                deploy.sha,
                deploy.env,
                [] if deploy.force or deploy.rollback_of is not None else repo.context_names,
                self._payload(deploy),
                cut_description(f"Deploy #{deploy.id} of {deploy.ref} by {deploy.requester.name}"),
            )
        except DeploymentRefused as exc:
            return deploy, Outcome(DeployState.BLOCKED, "error", str(exc))
        # Unrecorded, the deployment would never get its final status: retried like a final state.
        deploy = self._store_write(
            deploy,
            "GitHub deployment id",
            lambda: self._store.update_deploy(deploy.id, github_deployment_id=deployment_id),
        )
        self._status(deploy, "queued", f"Deploy #{deploy.id} recorded; preparing steps", observer)
        return deploy, self._steps(deploy, env, observer, cancel, sink)

    def _with_thread(self, deploy: Deploy) -> Deploy:
        """The deploy as the store has it once its Slack thread is known, so the GitHub
        deployment's payload names it: a root claimed (by this process or another) but not
        posted yet is waited for, at most ROOT_WAIT_SECONDS (a busy Slack never stalls deploys)."""
        deadline = time.monotonic() + ROOT_WAIT_SECONDS
        current = deploy
        while True:
            try:
                current = self._store.get_deploy(deploy.id) or current
            except StoreError:
                return current
            if current.message_ts is not None or current.root_claimed_at is None:
                return current
            if time.monotonic() >= deadline:
                log.info("deploy #%s: its Slack root is not posted yet; deploying without it", deploy.id)
                return current
            time.sleep(ROOT_POLL_SECONDS)

    def _steps(
        self,
        deploy: Deploy,
        env: EnvironmentSettings,
        observer: DeployObserver,
        cancel: threading.Event,
        sink: LogSink,
    ) -> Outcome:
        steps = env.steps()
        folder = self._settings.folder(env)
        deploy_vars = self._deploy_vars(deploy)
        started = time.monotonic()
        self._status(deploy, "in_progress", f"Deploying {deploy.short_sha} to {deploy.env}", observer)

        def on_output(line: str) -> None:
            clean = self._redact(line)
            sink.write(clean)
            observer.step_output(deploy, clean)

        def on_task(event: TaskEvent) -> None:
            task, host = self._redact(event.task), self._redact(event.host)
            observer.task_event(deploy, TaskEvent(task, event.status, host))

        def on_process(pgid: int) -> None:
            # Recorded so that, should this robot die, whoever takes the deploy over can end it.
            try:
                if not self._store.record_step(deploy.id, pgid):
                    log.warning("deploy #%s was taken over by another robot; stopping its step", deploy.id)
                    cancel.set()
            except StoreError as exc:
                log.warning("deploy #%s: step process group not recorded: %s", deploy.id, exc)

        labels = step_labels(self._settings, self._redact, deploy)
        for index, step in enumerate(steps, start=1):
            if cancel.is_set():
                # The robot may be stopping: a step started now could outlive it.
                return Outcome(DeployState.CANCELLED, "error", f"cancelled before step {index}/{len(steps)}")
            remaining = env.deploy_timeout - (time.monotonic() - started)
            if remaining <= 0:
                return Outcome(
                    DeployState.FAILED,
                    "error",
                    f"deploy timed out after {env.deploy_timeout:g} s before step {index}/{len(steps)}",
                )
            label = labels[index - 1]
            sink.write(f"==> step {index}/{len(steps)}: {label}")
            observer.step_started(deploy, index, len(steps), label)
            ctx = StepContext(
                folder=folder,
                env=self._step_env(env, deploy_vars),
                deploy_vars=deploy_vars,
                timeout=min(env.timeout, remaining),
                cancel=cancel,
                on_output=on_output,
                on_task=on_task,
                kill_grace=self._settings.deploys.kill_grace,
                on_process=on_process,
            )
            try:
                result = self._runner.run(step, ctx)
            except StepSetupError as exc:
                # The runner knows only the folder; say which deploy it stops, as a refused request does.
                raise blocked(deploy.repo, deploy.env, str(exc)) from None
            finally:
                self._forget_step(deploy)
            sink.flush()
            # An Ansible task name or reason may hold a templated secret: mask what leaves the step.
            tail = tuple(map(self._redact, result.tail))
            result = replace(result, reason=self._redact(result.reason), tail=tail)
            observer.step_finished(deploy, index, result)
            if not result.ok:
                return _step_outcome(index, len(steps), label, result)
        took = time.monotonic() - started
        return Outcome(
            DeployState.SUCCEEDED,
            "success",
            f"Deployed {deploy.short_sha} to {deploy.env} in {took:.1f} s",
        )

    def _forget_step(self, deploy: Deploy) -> None:
        """The step is over: no process group of this deploy may be killed on its behalf now."""
        try:
            self._store.record_step(deploy.id, None)
        except StoreError as exc:
            # A stale group id is only ever signalled on this machine and boot, and only after
            # this robot's lease ran out; a vanished group is harmless.
            log.warning("deploy #%s: step process group not cleared: %s", deploy.id, exc)

    def _deploy_vars(self, deploy: Deploy) -> dict[str, str]:
        previous = self._store.last_succeeded(deploy.repo, deploy.env)
        return {
            "DEPLOY_ID": str(deploy.id),
            "DEPLOY_REPO": deploy.repo,
            "DEPLOY_REF": deploy.ref,
            "DEPLOY_SHA": deploy.sha,
            "DEPLOY_ENV": deploy.env,
            # The name as its kind spells it (a Slack id, a GitHub login, a terminal's user):
            # what a step compares against; the kind says which.
            "DEPLOY_USER": deploy.requester.name,
            "DEPLOY_USER_KIND": deploy.requester.kind.value,
            "DEPLOY_PREVIOUS_SHA": previous.sha if previous else "",
        }

    def _step_env(self, env: EnvironmentSettings, deploy_vars: Mapping[str, str]) -> dict[str, str]:
        """The robot's environment without its own tokens, plus DEPLOY_* and the env's `env:`."""
        tokens = self._settings.tokens
        inherited = {k: v for k, v in self._environ.items() if v not in tokens}
        return {**inherited, **deploy_vars, **env.env}

    def _payload(self, deploy: Deploy) -> dict[str, object]:
        payload: dict[str, object] = {
            "robot_deploy_id": deploy.id,
            "requested_by": deploy.requested_by,
            "source": deploy.source.value,
            "slack_channel": deploy.channel,
            "slack_thread_ts": deploy.message_ts,
            **self._approved_by(deploy),
        }
        if deploy.rollback_of is not None:
            payload["rollback_of"] = deploy.rollback_of
        return payload

    def _approved_by(self, deploy: Deploy) -> dict[str, object]:
        """`approved_by` (the approvers' names, as each kind spells them) of an approved deploy."""
        given = self._store.list_approvals([deploy.id]).get(deploy.id, ())
        return {"approved_by": [approval.actor.name for approval in given]} if given else {}

    def _status(
        self, deploy: Deploy, state: str, description: str, observer: DeployObserver | None
    ) -> str | None:
        """Post a deployment status, linking to where ``observer`` shows the deploy; a GitHub
        failure is returned as text, not raised."""
        deployment_id = deploy.github_deployment_id
        if deployment_id is None:
            return None
        url = observer.log_url(deploy) if observer is not None else None
        try:
            self._within_shutdown(
                lambda: self._github.set_deployment_status(
                    deploy.repo, deployment_id, state, cut_description(description), url
                )
            )
        except GitHubError as exc:
            log.warning(
                "deploy #%s: GitHub status %s not recorded: %s",
                deploy.id,
                state,
                exc,
                extra=deploy_fields(deploy),
            )
            return str(exc)
        return None

    def _within_shutdown(self, call: Callable[[], None]) -> None:
        """Make ``call`` (to GitHub); once the robot stops, wait for it only until the deadline."""
        stop_by = self._stop_by
        if stop_by is None:
            call()
            return
        failed: list[GitHubError] = []
        done = threading.Event()

        def attempt() -> None:
            try:
                call()
            except GitHubError as exc:
                failed.append(exc)
            finally:
                done.set()

        # A daemon thread: a call still waiting when the deadline comes is abandoned with the process.
        threading.Thread(target=attempt, name="github-at-shutdown", daemon=True).start()
        if not done.wait(max(0.0, stop_by - time.monotonic())):
            raise GitHubError("GitHub did not answer before the robot stopped")
        if failed:
            raise failed[0]

    def _store_write(self, deploy: Deploy, what: str, write: Callable[[], T]) -> T:
        """``write`` to the store, retried with backoff while it raises StoreError (bounded, and
        by the shutdown deadline once the robot stops); the last StoreError is raised."""
        delay = STORE_RETRY_FIRST_SECONDS
        give_up = time.monotonic() + STORE_RETRY_SECONDS
        while True:
            try:
                return write()
            except StoreError as exc:
                end = give_up if self._stop_by is None else min(give_up, self._stop_by)
                if time.monotonic() >= end:
                    log.error("deploy #%s: %s not recorded, giving up: %s", deploy.id, what, exc)
                    raise
                log.warning(
                    "deploy #%s: %s not recorded, retrying in %.1f s: %s", deploy.id, what, delay, exc
                )
                pause = min(delay, end - time.monotonic())
            if self._stop_by is None:
                self._stopping.wait(pause)  # wakes when the robot starts stopping: a nearer deadline
            else:
                time.sleep(max(0.0, pause))
            delay = min(delay * 2, STORE_RETRY_MAX_SECONDS)

    def _finish(self, deploy: Deploy, outcome: Outcome, observer: DeployObserver) -> Deploy:
        read = self._store_write(deploy, "final state", lambda: self._store.get_deploy(deploy.id))
        current = read or deploy
        if current.state.is_final:
            # Another robot took it over (this one's lease ran out): it has told GitHub already.
            log.warning("deploy #%s was taken over by another robot: %s", deploy.id, current.error)
            observer.deploy_changed(current)
            return current
        if self._stopping.is_set() and not current.cancel_requested:
            outcome = _said_stopped(outcome)
        error = None if outcome.state is DeployState.SUCCEEDED else outcome.summary
        final = self._store_write(
            deploy,
            f"final state {outcome.state.value}",
            lambda: self._store.finish_deploy(deploy.id, outcome.state, error),
        )
        if final.state is not outcome.state:
            log.warning("deploy #%s was finished elsewhere: %s", deploy.id, final.state.value)
            observer.deploy_changed(final)
            return final
        # GitHub hears the outcome only once the store holds it, so the two never disagree.
        problem = self._status(final, outcome.github_state, outcome.summary, observer)
        if problem:
            pending = f"{error or outcome.summary}; GitHub status pending: {problem}"
            try:
                final = self._store.update_deploy(deploy.id, error=pending)
            except StoreError as exc:
                log.warning("deploy #%s: pending GitHub status not noted: %s", deploy.id, exc)
        log.info(
            "deploy #%s %s: %s", final.id, final.state.value, outcome.summary, extra=deploy_fields(final)
        )
        observer.deploy_changed(final)
        if problem:
            # The queue must not wait on GitHub: the final status is retried off this thread
            # until GitHub takes it, so GitHub ends up agreeing with the store.
            self._retry_in_background(final, outcome, observer)
        return final

    def _retry_in_background(
        self, deploy: Deploy, outcome: Outcome, observer: DeployObserver | None = None
    ) -> None:
        threading.Thread(
            target=self._retry_final_status,
            args=(deploy, outcome, observer),
            name=f"github-status-{deploy.id}",
            daemon=True,
        ).start()

    def _retry_final_status(self, deploy: Deploy, outcome: Outcome, observer: DeployObserver | None) -> None:
        """Retry until GitHub takes the status; with ``observer``, clear the "pending" note and
        show the deploy again (its error said the status was pending)."""
        delay = STATUS_RETRY_FIRST_SECONDS
        deadline = time.monotonic() + STATUS_RETRY_SECONDS
        while time.monotonic() + delay < deadline:
            time.sleep(delay)
            if self._status(deploy, outcome.github_state, outcome.summary, observer) is None:
                if observer is not None:
                    error = None if outcome.state is DeployState.SUCCEEDED else outcome.summary
                    observer.deploy_changed(self._store.update_deploy(deploy.id, error=error))
                log.info(
                    "deploy #%s: GitHub status %s recorded late",
                    deploy.id,
                    outcome.github_state,
                    extra=deploy_fields(deploy),
                )
                return
            delay = min(delay * 2, 60.0)
        log.error(
            "deploy #%s: GitHub status %s never recorded",
            deploy.id,
            outcome.github_state,
            extra=deploy_fields(deploy),
        )


def _said_stopped(outcome: Outcome) -> Outcome:
    """A cancel that the robot's own stop caused says so first (a person's cancel stays as is)."""
    if outcome.state is not DeployState.CANCELLED or outcome.summary.startswith(
        (STOPPED_REASON, STOPPED_SUMMARY)
    ):
        return outcome
    return replace(outcome, summary=f"{STOPPED_REASON}: {outcome.summary}")


def _step_outcome(index: int, total: int, label: str, result: StepResult) -> Outcome:
    where = f"step {index}/{total} `{label}`"
    if result.status is StepStatus.CANCELLED:
        return Outcome(DeployState.CANCELLED, "error", f"cancelled during {where}")
    if result.status is StepStatus.TIMED_OUT:
        return Outcome(DeployState.FAILED, "error", f"{where} {result.reason}")
    return Outcome(DeployState.FAILED, "failure", f"{where} {result.reason}")


def _contexts(results: tuple[ContextResult, ...]) -> str:
    return ", ".join(f"{c.name} ({c.url})" if c.url else c.name for c in results)


def _names(gate: GateResult) -> str:
    return ", ".join(f"{c.name} {c.state.value}" for c in gate.waiting)
