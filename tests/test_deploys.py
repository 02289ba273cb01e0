"""The deploy service end to end: real store, real PyGithub against the fake, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import (
    AccessDenied,
    EnvironmentLocked,
    InvalidRef,
    InvalidRepoName,
    StepSetupError,
    UnknownEnvironment,
    UnknownRepo,
)
from bot.models import DeployState, ProcessKind, Source, TaskStatus
from bot.processes import this_process
from bot.redact import MASK
from bot.wiring import Core
from tests.fakes.github import FakeGitHub
from tests.fakes.memory import RecordingObserver
from tests.support.harness import (
    TOKEN,
    environ,
    git,
    make_git_repo,
    slack_user,
    start_core,
    wait_final,
    write_config,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real step processes against the fake GitHub on loopback

PY = sys.executable


def status_states(deployment: Any) -> list[str]:
    """The states the robot posted for one fake deployment, oldest first."""
    return [s["body"]["state"] for s in deployment.statuses]


def py(code: str) -> list[str]:
    """An argv that runs ``code`` in a fresh Python."""
    return [PY, "-c", code]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_git_repo(tmp_path / "checkout")


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


class Robot:
    """A started core plus what the tests look at."""

    def __init__(self, core: Core, observer: RecordingObserver, github: FakeGitHub) -> None:
        self.core = core
        self.service = core.service
        self.observer = observer
        self.github = github

    def deploy(self, repo: str = "acme/api", **kwargs: Any) -> Any:
        kwargs.setdefault("user", "U1")
        if isinstance(kwargs["user"], str):
            kwargs["user"] = slack_user(kwargs["user"])
        kwargs.setdefault("source", Source.COMMAND)
        deploy, created = self.service.request(repo, **kwargs)
        assert created
        return deploy


@pytest.fixture
def robot_for(tmp_path: Path, github: FakeGitHub, observer: RecordingObserver) -> Iterator[Any]:
    cores: list[Core] = []
    known: set[str] = set()

    def make(repos: dict[str, Any], env: dict[str, str] | None = None, start: bool = True) -> Robot:
        for name in repos.keys() - known:
            github.add_repo(name)
            known.add(name)
        config = write_config(tmp_path, github.url, repos)
        core = start_core(config, observer, env)
        cores.append(core)
        if start:
            core.service.start()
        return Robot(core, observer, github)

    yield make
    for core in cores:
        core.service.stop(timeout=10)
        core.close()


def commands_repo(folder: Path, commands: list[list[str]], **extra: Any) -> dict[str, Any]:
    envs = extra.pop("environments", None) or {
        "production": {"folder": str(folder), "commands": commands, **extra.pop("env_extra", {})}
    }
    return {"environments": envs, **extra}


def test_happy_path_with_commands(robot_for: Any, checkout: Path) -> None:
    out = checkout / "seen.txt"
    robot = robot_for(
        {
            "acme/api": commands_repo(
                checkout,
                [
                    ["git", "rev-parse", "--is-inside-work-tree"],
                    [
                        *py(
                            "import os,sys; open(sys.argv[1],'w').write("
                            "os.environ['DEPLOY_SHA']+' '+os.environ['DEPLOY_ENV']+' '+sys.argv[2]+' '"
                            "+os.environ['APP_ENV']+' '+os.environ.get('GITHUB_TOKEN','absent')"
                            "+' '+os.environ['DEPLOY_USER']+' '+os.environ['DEPLOY_USER_KIND'])"
                        ),
                        str(out),
                        "{repo}@{sha}",
                    ],
                ],
                env_extra={"env": {"APP_ENV": "prod"}},
            )
        }
    )
    sha = robot.github.head("acme/api", "main")
    deploy = robot.deploy()
    assert deploy.sha == sha and deploy.state is DeployState.QUEUED
    final = wait_final(robot.core, deploy.id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert out.read_text() == f"{sha} production acme/api@{sha} prod absent U1 slack"
    assert robot.observer.lines[deploy.id] == ["true"]
    assert robot.observer.states(deploy.id)[-1] is DeployState.SUCCEEDED

    (created,) = robot.github.deployments("acme/api")
    assert created.ref == sha
    assert created.environment == "production"
    assert created.auto_merge is False
    assert created.required_contexts == []
    assert created.task == "deploy"
    assert created.payload["robot_deploy_id"] == deploy.id
    assert status_states(created) == ["queued", "in_progress", "success"]
    assert {s["body"]["log_url"] for s in created.statuses} == {f"https://example.test/deploys/{deploy.id}"}
    assert final.github_deployment_id == created.id
    log = robot.core.store.read_log(deploy.id)
    assert "==> step 1/2: git rev-parse --is-inside-work-tree" in log
    assert "true" in log


def test_ansible_step_runs_playbook_with_deploy_vars(robot_for: Any, tmp_path: Path) -> None:
    folder = tmp_path / "infra"
    folder.mkdir()
    (folder / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={PY}\n")
    out = tmp_path / "deployed.txt"
    (folder / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Write the deployed sha\n"
        f"      copy: {{content: '{{{{ deploy.sha }}}} {{{{ tier }}}}', dest: '{out}'}}\n"
    )
    robot = robot_for(
        {
            "acme/infra": {
                "environments": {
                    "staging": {
                        "folder": str(folder),
                        "ansible": {
                            "playbook": "site.yml",
                            "inventory": "hosts",
                            "extravars": {"tier": "t1"},
                        },
                        "timeout": 120,
                    }
                }
            }
        }
    )
    deploy = robot.deploy("infra")
    final = wait_final(robot.core, deploy.id, timeout=120)
    assert final.state is DeployState.SUCCEEDED, robot.core.store.read_log(deploy.id)
    assert out.read_text() == f"{deploy.sha} t1"
    tasks = [d for k, i, d in robot.observer.events if k == "task" and i == deploy.id]
    assert ("Write the deployed sha", TaskStatus.STARTED) in [(t.task, t.status) for t in tasks]
    assert any(t.status is TaskStatus.CHANGED and t.host == "localhost" for t in tasks)


def test_failing_step_stops_the_deploy(robot_for: Any, checkout: Path) -> None:
    never = checkout / "never"
    robot = robot_for(
        {
            "acme/api": commands_repo(
                checkout, [py("print('boom'); raise SystemExit(3)"), ["touch", str(never)]]
            )
        }
    )
    deploy = robot.deploy()
    final = wait_final(robot.core, deploy.id)
    assert final.state is DeployState.FAILED
    assert final.error is not None and "step 1/2" in final.error and "exited 3" in final.error
    assert not never.exists()
    statuses = robot.github.deployments("acme/api")[0].statuses
    assert statuses[-1]["body"]["state"] == "failure"
    assert (
        "exited 3" in statuses[-1]["body"]["description"] and len(statuses[-1]["body"]["description"]) <= 140
    )
    assert "boom" in robot.core.store.read_log(deploy.id)


def test_gate_waits_for_pending_ci_then_deploys(robot_for: Any, checkout: Path) -> None:
    robot = robot_for(
        {"acme/api": commands_repo(checkout, [["true"]], required_contexts=["ci/test", "build"])}
    )
    sha = robot.github.head("acme/api", "main")
    robot.github.set_status("acme/api", sha, "ci/test", "pending")
    robot.github.set_check_run("acme/api", sha, "build", "in_progress", None)
    deploy = robot.deploy()
    wait_for(lambda: any(k == "gate" for k, i, _ in robot.observer.events), what="gate wait")
    assert robot.github.deployments("acme/api") == []
    robot.github.set_status("acme/api", sha, "ci/test", "success")
    robot.github.set_check_run("acme/api", sha, "build", "completed", "success")
    final = wait_final(robot.core, deploy.id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert robot.github.deployments("acme/api")[0].required_contexts == ["ci/test", "build"]


def test_gate_failure_blocks_and_names_contexts(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [["true"]], required_contexts=["ci/test"])})
    sha = robot.github.head("acme/api", "main")
    robot.github.set_status("acme/api", sha, "ci/test", "failure", target_url="https://ci.example/1")
    final = wait_final(robot.core, robot.deploy().id)
    assert final.state is DeployState.BLOCKED
    assert final.error == "CI failed: ci/test (https://ci.example/1)"
    assert robot.github.deployments("acme/api") == []


def test_gate_times_out_while_pending(robot_for: Any, checkout: Path) -> None:
    robot = robot_for(
        {"acme/api": commands_repo(checkout, [["true"]], required_contexts=["ci/test"], ci_timeout=0.5)}
    )
    final = wait_final(robot.core, robot.deploy().id)
    assert final.state is DeployState.BLOCKED
    assert final.error is not None and "CI still pending after 0.5 s: ci/test missing" in final.error


def test_forced_deploy_skips_gate(robot_for: Any, checkout: Path) -> None:
    robot = robot_for(
        {"acme/api": commands_repo(checkout, [["true"]], required_contexts=["ci/test"], force=["U9"])}
    )
    sha = robot.github.head("acme/api", "main")
    robot.github.set_status("acme/api", sha, "ci/test", "failure")
    with pytest.raises(AccessDenied, match="may not force a deploy of acme/api"):
        robot.service.request("acme/api", user=slack_user("U1"), source=Source.COMMAND, force=True)
    final = wait_final(robot.core, robot.deploy(user="U9", force=True).id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert robot.github.deployments("acme/api")[0].required_contexts == []


def test_github_409_is_reported_with_its_reason(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [["true"]])})
    robot.github.create_deployment_answer(409, "Conflict: Commit status checks failed for main.")
    final = wait_final(robot.core, robot.deploy().id)
    assert final.state is DeployState.BLOCKED
    assert final.error is not None and "Commit status checks failed for main" in final.error


def test_timeout_kills_the_process_tree(robot_for: Any, checkout: Path) -> None:
    pids = checkout / "pids"
    spawn = (
        "import subprocess,sys,time;"
        f"c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        f"open({str(pids)!r},'w').write(str(c.pid));time.sleep(60)"
    )
    robot = robot_for({"acme/api": commands_repo(checkout, [py(spawn)], env_extra={"timeout": 1})})
    final = wait_final(robot.core, robot.deploy().id)
    assert final.state is DeployState.FAILED
    assert final.error is not None and "timed out after 1 s" in final.error
    grandchild = int(pids.read_text())
    wait_for(lambda: not _alive(grandchild), timeout=10, what="grandchild to die")
    assert robot.github.deployments("acme/api")[0].statuses[-1]["body"]["state"] == "error"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_cancel_queued_and_running(robot_for: Any, checkout: Path) -> None:
    started = checkout / "started"
    robot = robot_for(
        {"acme/api": commands_repo(checkout, [["touch", str(started)], py("import time; time.sleep(60)")])}
    )
    first = robot.deploy()
    wait_for(started.exists, what="first deploy to start")
    robot.github.push("acme/api", "main")
    second = robot.deploy()
    assert robot.service.get(second.id).state is DeployState.QUEUED
    cancelled = robot.service.cancel(second.id, slack_user("U2"))
    assert cancelled.state is DeployState.CANCELLED
    robot.service.cancel(first.id, slack_user("U2"))
    final = wait_final(robot.core, first.id, timeout=20)
    assert final.state is DeployState.CANCELLED
    assert robot.service.get(second.id).started_at is None
    assert [status_states(d)[-1] for d in robot.github.deployments("acme/api")] == ["error"]
    assert "cancel requested by slack:U2" in robot.core.store.read_log(first.id)


def test_identical_request_returns_the_existing_deploy(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [py("import time; time.sleep(1)")])})
    first = robot.deploy()
    again, created = robot.service.request("api", user=slack_user("U2"), source=Source.BUTTON)
    assert (again.id, created) == (first.id, False)
    wait_final(robot.core, first.id)
    third, created = robot.service.request("api", user=slack_user("U2"), source=Source.BUTTON)
    assert created and third.id != first.id


def test_envs_run_in_parallel_and_one_env_queues(robot_for: Any, checkout: Path) -> None:
    step = [py("import time; time.sleep(1)")]
    robot = robot_for(
        {
            "acme/api": {
                "environments": {
                    "staging": {"folder": str(checkout), "commands": step},
                    "production": {"folder": str(checkout), "commands": step},
                }
            }
        }
    )
    staging = robot.deploy(env="staging")
    production = robot.deploy(env="production")
    robot.github.push("acme/api", "main")
    staging2 = robot.deploy(env="staging")
    finals = [wait_final(robot.core, d.id) for d in (staging, production, staging2)]
    assert all(f.state is DeployState.SUCCEEDED for f in finals)
    s1, p1, s2 = finals
    assert s1.started_at and s1.finished_at and p1.started_at and p1.finished_at and s2.started_at
    assert p1.started_at < s1.finished_at and s1.started_at < p1.finished_at  # overlapped
    assert s2.started_at >= s1.finished_at  # same env waited its turn


STEP_WRITES_ITS_PID = (
    "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(30)"
)


def test_a_second_robot_leaves_a_live_owner_alone_and_takes_over_from_a_stopped_one(
    robot_for: Any, checkout: Path, github: FakeGitHub
) -> None:
    pid_file = checkout / "step.pid"
    repos = {"acme/api": commands_repo(checkout, [[*py(STEP_WRITES_ITS_PID), str(pid_file)]])}
    first = robot_for(repos)
    deploy = first.deploy()
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="deploy to start")
    step_pid = int(pid_file.read_text())
    wait_for(lambda: first.service.get(deploy.id).step_pgid == step_pid, what="the step's group recorded")
    # A second robot on the same store while the first is alive: nothing of the first's is touched.
    second = robot_for(repos, start=False)
    assert second.service.recover() == []
    assert second.service.get(deploy.id).state is DeployState.RUNNING and _alive(step_pid)
    first.service.cancel(deploy.id, slack_user("U1"))
    assert wait_final(first.core, deploy.id).state is DeployState.CANCELLED
    first.service.stop(timeout=10)
    first.core.close()

    # A robot that stopped while its step kept running in its own session, on this machine.
    store = second.core.store
    github.push("acme/api", "main")
    orphaned = second.deploy()
    owner = store.register_process(this_process(ProcessKind.RUN))
    assert store.claim_next(only_id=orphaned.id, owner=owner.id) is not None
    leftover = subprocess.Popen(py("import time; time.sleep(30)"), start_new_session=True)
    try:
        assert store.record_step(orphaned.id, leftover.pid)
        store.stop_process(owner.id)
        assert [d.id for d in second.service.recover()] == [orphaned.id]
        assert leftover.wait(timeout=10) < 0, "the orphaned step's group was killed"
    finally:
        leftover.kill()
        leftover.wait()
    taken = second.service.get(orphaned.id)
    assert taken.state is DeployState.INTERRUPTED and taken.error and "stopped" in taken.error
    assert store.get_lock("acme/api", "production") is None, "same machine: nothing locked"
    assert second.observer.states(orphaned.id)[-1] is DeployState.INTERRUPTED


def test_secrets_never_reach_log_or_observer(robot_for: Any, checkout: Path) -> None:
    env = environ(MY_API_TOKEN="s3cr3t-value-xyz")
    robot = robot_for(
        {
            "acme/api": commands_repo(
                checkout,
                [
                    py(
                        "import os; e = os.environ;"
                        f"print('token', e['SECRET_FOR_STEP'], e.get('GITHUB_TOKEN')); print({TOKEN!r})"
                    )
                ],
                env_extra={"env": {"SECRET_FOR_STEP": "${MY_API_TOKEN}"}},
            )
        },
        env=env,
    )
    final = wait_final(robot.core, robot.deploy().id)
    assert final.state is DeployState.SUCCEEDED
    log = robot.core.store.read_log(final.id)
    assert "s3cr3t-value-xyz" not in log and TOKEN not in log
    assert f"token {MASK} None" in log
    assert robot.observer.lines[final.id] == [f"token {MASK} None", MASK]


def test_lock_refuses_with_who_when_why(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [["true"]])})
    robot.service.lock("acme/api", None, slack_user("U7"), "release freeze")
    with pytest.raises(EnvironmentLocked, match=r"locked by slack:U7 since .* UTC: release freeze"):
        robot.deploy()
    robot.service.unlock("acme/api", "production", slack_user("U7"))
    assert wait_final(robot.core, robot.deploy().id).state is DeployState.SUCCEEDED


@pytest.mark.parametrize(
    ("repo", "kwargs", "error", "text"),
    [
        ("acme/nope", {}, UnknownRepo, "Configured repos: acme/api"),
        ("acme/api", {"env": "prod"}, UnknownEnvironment, "Environments: production"),
        ("acme api", {}, InvalidRepoName, "owner/name"),
        ("acme/api", {"ref": "nope"}, InvalidRef, "nope"),
        ("acme/api", {"ref": "main;rm -rf /"}, InvalidRef, "not a valid ref"),
        ("acme/api", {"ref": "$(id)"}, InvalidRef, "not a valid ref"),
    ],
)
def test_bad_requests_record_nothing(
    robot_for: Any, checkout: Path, repo: str, kwargs: dict[str, Any], error: type, text: str
) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [["true"]])})
    with pytest.raises(error, match=text.replace("(", r"\(").replace("$", r"\$")):
        robot.service.request(repo, user=slack_user("U1"), source=Source.COMMAND, **kwargs)
    assert robot.core.store.list_deploys() == []


def test_missing_folder_is_refused_before_queueing(robot_for: Any, tmp_path: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(tmp_path / "gone", [["true"]])})
    with pytest.raises(StepSetupError, match=r"folder .*gone does not exist"):
        robot.deploy()
    assert robot.core.store.list_deploys() == []


def test_not_a_deployer_is_told_who_may(robot_for: Any, checkout: Path) -> None:
    robot = robot_for({"acme/api": commands_repo(checkout, [["true"]], deployers=["U5"])})
    with pytest.raises(AccessDenied, match="Allowed: <@U5>"):
        robot.deploy(user="U1")
    assert robot.core.store.list_deploys() == []


def test_previous_sha_is_the_last_success(robot_for: Any, checkout: Path) -> None:
    out = checkout / "prev"
    step = py(f"import os; open({str(out)!r},'a').write(os.environ['DEPLOY_PREVIOUS_SHA']+'|')")
    robot = robot_for({"acme/api": commands_repo(checkout, [step])})
    first = wait_final(robot.core, robot.deploy().id)
    robot.github.push("acme/api", "main")
    wait_final(robot.core, robot.deploy().id)
    assert out.read_text() == f"|{first.sha}|"
    assert git(checkout, "rev-parse", "--is-inside-work-tree") == "true"


def test_only_requester_deployers_or_force_may_cancel(robot_for: Any, checkout: Path) -> None:
    started = checkout / "started"
    robot = robot_for(
        {
            "acme/api": commands_repo(
                checkout,
                [["touch", str(started)], py("import time; time.sleep(60)")],
                deployers=["U1", "U2"],
                force=["U3"],
            )
        }
    )
    deploy = robot.deploy(user="U1")
    wait_for(started.exists, what="deploy to start")
    with pytest.raises(AccessDenied, match=r"may not cancel deploy #1 of acme/api\. Allowed: <@U1>"):
        robot.service.cancel(deploy.id, slack_user("U9"))
    assert robot.service.get(deploy.id).state is DeployState.RUNNING
    robot.service.cancel(deploy.id, slack_user("U3"))
    assert wait_final(robot.core, deploy.id, timeout=20).state is DeployState.CANCELLED


def test_where_shows_each_environment(robot_for: Any, checkout: Path) -> None:
    step = [["true"]]
    envs = {
        "staging": {"folder": str(checkout), "commands": step},
        "production": {"folder": str(checkout), "commands": step},
    }
    robot = robot_for({"acme/api": {"environments": envs}})
    done = wait_final(robot.core, robot.deploy(env="staging").id)
    robot.service.lock("api", "production", slack_user("U7"), "freeze")
    views = {v.env: v for v in robot.service.where("api")}
    assert views["staging"].is_default and views["staging"].last == done and views["staging"].lock is None
    lock = views["production"].lock
    assert views["production"].last is None and lock is not None and lock.reason == "freeze"
