"""The StepRunner the pipeline uses: sends each step to the runner of its kind."""

from __future__ import annotations

from bot.models import AnsibleStep, CommandStep, Step, StepResult
from bot.ports import StepContext, StepRunner
from bot.steps.ansible import AnsibleStepRunner
from bot.steps.commands import CommandStepRunner


class StepDispatcher:
    """CommandStep → command runner, AnsibleStep → Ansible runner (both replaceable)."""

    def __init__(self, commands: StepRunner | None = None, ansible: StepRunner | None = None) -> None:
        self._commands: StepRunner = commands or CommandStepRunner()
        self._ansible: StepRunner = ansible or AnsibleStepRunner()

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        """Run one step with the runner for its kind."""
        if isinstance(step, CommandStep):
            return self._commands.run(step, ctx)
        if isinstance(step, AnsibleStep):
            return self._ansible.run(step, ctx)
        raise TypeError(f"no runner for step {step!r}")
