"""Pipeline on in-memory ports: CI gate, GitHub deployment and statuses, scripted steps, cancel."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bot.errors import GitHubError
from bot.models import ContextState, DeployState, StepResult, StepStatus, TaskEvent, TaskStatus
from tests.fakes.memory import Scripted, blocks, exits, ok
from tests.support.harness import TOKEN
from tests.unit.conftest import API, World, WorldFactory, commands_env

PENDING = {"ci/test": ContextState.PENDING}
GREEN = {"ci/test": ContextState.SUCCESS}


def gated(folder: Path, *commands: list[str], **repo: Any) -> dict[str, Any]:
    env = commands_env(folder, *commands)
    return {API: {"environments": {"production": env}, "required_contexts": ["ci/test"], **repo}}


def head(world: World) -> str:
    return world.github.refs[API]["main"]


def test_green_gate_deploys_and_reports_queued_in_progress_success(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated(tmp_path / "checkout", ["make", "deploy"]))
    world.github.green(API, head(world), "ci/test")
    world.runner.script(ok("built", "shipped"))
    final = world.run(world.request().id)
    assert final.state is DeployState.SUCCEEDED, final.error
    (deployment,) = world.github.deployments
    assert deployment.states == ["queued", "in_progress", "success"]
    assert deployment.required_contexts == ("ci/test",)
    assert {url for _, _, url in deployment.statuses} == {f"https://example.test/deploys/{final.id}"}
    assert final.github_deployment_id == deployment.id
    assert world.observer.lines[final.id] == ["built", "shipped"]
    assert "==> step 1/1: make deploy" in world.store.read_log(final.id)


def test_failing_ci_blocks_without_a_deployment(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout"))
    world.github.script_ci(API, head(world), {"ci/test": ContextState.FAILURE})
    final = world.run(world.request().id)
    assert (final.state, final.error) == (DeployState.BLOCKED, "CI failed: ci/test")
    assert world.github.deployments == [] and world.runner.ran == []


def test_pending_ci_times_out_blocked(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout", ci_timeout=0.05))
    world.github.script_ci(API, head(world), PENDING)
    final = world.run(world.request().id)
    assert final.state is DeployState.BLOCKED
    assert final.error == "CI still pending after 0.05 s: ci/test pending"
    assert world.observer.of_kind("gate", final.id) == [("ci/test",)]  # told once, not every poll


def test_pending_then_green_deploys(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout"))
    world.github.script_ci(API, head(world), PENDING, PENDING, GREEN)
    final = world.run(world.request().id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert world.github.ci_calls == 3


def test_github_errors_at_the_gate_keep_waiting(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout"))
    down = GitHubError("GitHub answered 502")
    world.github.script_ci(API, head(world), down, down, GREEN)
    assert world.run(world.request().id).state is DeployState.SUCCEEDED


def test_forced_deploy_skips_the_gate(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout", force=["U9"]))
    world.github.script_ci(API, head(world), {"ci/test": ContextState.FAILURE})
    final = world.run(world.request(user="U9", force=True).id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert world.github.ci_calls == 0
    assert world.github.deployments[0].required_contexts == ()


def test_refused_deployment_is_blocked_with_the_reason(world_for: WorldFactory) -> None:
    world = world_for()
    world.github.refuse_deployments = "Conflict: Commit status checks failed for main."
    final = world.run(world.request().id)
    assert final.state is DeployState.BLOCKED
    assert final.error is not None and "Commit status checks failed for main" in final.error
    assert world.runner.ran == []


def test_a_failing_step_stops_the_deploy_and_says_where(world_for: WorldFactory, tmp_path: Path) -> None:
    folder = tmp_path / "checkout"
    world = world_for({API: {"environments": {"production": commands_env(folder, ["a"], ["b", "x"], ["c"])}}})
    world.runner.script(ok(), exits(3, "boom"))
    final = world.run(world.request().id)
    assert final.state is DeployState.FAILED
    assert final.error == "step 2/3 `b x` exited 3"
    assert world.runner.labels == ["a", "b x"]
    (deployment,) = world.github.deployments
    assert deployment.states == ["queued", "in_progress", "failure"]
    assert "boom" in world.store.read_log(final.id)


def test_status_descriptions_fit_githubs_140(world_for: WorldFactory, tmp_path: Path) -> None:
    long = ["x" * 300]
    world = world_for({API: {"environments": {"production": commands_env(tmp_path / "checkout", long)}}})
    world.runner.script(exits(1))
    final = world.run(world.request(user="U" + "1" * 200).id)
    (deployment,) = world.github.deployments
    descriptions = [deployment.description, *(d for _, d, _ in deployment.statuses)]
    assert all(len(d) <= 140 for d in descriptions), [len(d) for d in descriptions]
    assert descriptions[-1].endswith("…") and final.error is not None and len(final.error) > 140


def test_cancel_while_waiting_for_ci(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated(tmp_path / "checkout"))
    world.github.script_ci(API, head(world), PENDING)
    cancel = threading.Event()
    deploy = world.request()
    threading.Timer(0.05, cancel.set).start()
    final = world.run(deploy.id, cancel)
    assert (final.state, final.error) == (DeployState.CANCELLED, "cancelled while waiting for CI")


def test_cancel_during_a_step_reports_error_to_github(world_for: WorldFactory) -> None:
    world = world_for()
    world.runner.script(blocks("started"))
    cancel = threading.Event()
    deploy = world.request()
    threading.Timer(0.05, cancel.set).start()
    final = world.run(deploy.id, cancel)
    assert final.state is DeployState.CANCELLED
    assert world.github.deployments[0].states == ["queued", "in_progress", "error"]


def test_step_env_has_deploy_vars_and_no_robot_token(world_for: WorldFactory) -> None:
    world = world_for()
    first = world.run(world.request().id)
    world.github.push(API)
    world.run(world.request().id)
    (_, ctx1), (_, ctx2) = world.runner.ran
    assert ctx1.deploy_vars["DEPLOY_PREVIOUS_SHA"] == ""
    assert ctx2.deploy_vars["DEPLOY_PREVIOUS_SHA"] == first.sha
    assert ctx2.env["DEPLOY_SHA"] == head(world) and TOKEN not in ctx2.env.values()


def test_secret_output_is_masked_in_log_and_observer(world_for: WorldFactory) -> None:
    world = world_for()
    world.runner.script(ok(f"token {TOKEN}"))
    final = world.run(world.request().id)
    assert TOKEN not in world.store.read_log(final.id)
    assert TOKEN not in " ".join(world.observer.lines[final.id])


def test_a_secret_in_an_ansible_reason_task_or_host_reaches_nothing(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    # ansible-runner reports a failing task by its templated name, e.g. `Upload with {{ api_secret }}`.
    world = world_for()
    leak = f"Upload with {TOKEN}"
    world.runner.script(
        Scripted(
            StepResult(StepStatus.FAILED, f"task `{leak}` failed on host {TOKEN}.example", 2, (leak,)),
            lines=(f"fatal: [{TOKEN}.example]: FAILED! => {leak}",),
            tasks=(TaskEvent(leak, TaskStatus.FAILED, f"{TOKEN}.example"),),
        )
    )
    final = world.run(world.request().id)
    assert final.state is DeployState.FAILED
    (deployment,) = world.github.deployments
    written = [
        final.error or "",
        world.store.read_log(final.id),
        *(description for _, description, _ in deployment.statuses),
        repr(world.observer.events),
        repr(world.observer.lines),
    ]
    assert all(TOKEN not in text for text in written), [t for t in written if TOKEN in t]
    assert final.error is not None and "task `Upload with ••••••` failed" in final.error
