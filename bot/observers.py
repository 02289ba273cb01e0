"""Several DeployObservers as one: the Slack notifier and the metrics observer see the same deploys."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import Deploy, GateResult, StepResult, TaskEvent
from bot.ports import DeployObserver


class FanOutObserver:
    """Tells every observer, in order; the first log URL any of them knows is the deploy's."""

    def __init__(self, observers: Sequence[DeployObserver]) -> None:
        self._observers = tuple(observers)

    def deploy_changed(self, deploy: Deploy) -> None:
        for observer in self._observers:
            observer.deploy_changed(deploy)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        for observer in self._observers:
            observer.gate_waiting(deploy, gate)

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        for observer in self._observers:
            observer.step_started(deploy, index, total, label)

    def step_output(self, deploy: Deploy, line: str) -> None:
        for observer in self._observers:
            observer.step_output(deploy, line)

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        for observer in self._observers:
            observer.task_event(deploy, event)

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        for observer in self._observers:
            observer.step_finished(deploy, index, result)

    def log_url(self, deploy: Deploy) -> str | None:
        for observer in self._observers:
            url = observer.log_url(deploy)
            if url is not None:
                return url
        return None
