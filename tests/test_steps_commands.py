"""The command step runner on real processes: argv, streaming, environment, timeouts, cancel."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from bot.errors import StepSetupError
from bot.models import LINE_CUT_MARK as CUT_MARK
from bot.models import MAX_LINE, TAIL_LINES, CommandStep, StepStatus
from bot.steps.commands import CommandStepRunner
from bot.steps.dispatch import StepDispatcher
from tests.support.steputil import (
    ROBOT_TOKEN,
    deploy_vars,
    git_repo,
    make_ctx,
    pid_gone,
    read_pids,
    step_env,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real step processes

PY = sys.executable
RUNNER = CommandStepRunner()


def py(code: str, *args: str) -> CommandStep:
    """A step running this interpreter on code (argv, no shell)."""
    return CommandStep((PY, "-c", code, *args))


def test_runs_in_the_folder_of_a_real_git_repo(tmp_path: Path) -> None:
    sha = git_repo(tmp_path / "repo")
    ctx, rec = make_ctx(tmp_path / "repo", dvars=deploy_vars(sha))

    result = RUNNER.run(CommandStep(("git", "rev-parse", "HEAD")), ctx)

    assert result.status is StepStatus.OK
    assert result.exit_code == 0
    assert rec.lines == [sha]
    assert result.tail == (sha,)


def test_substitutes_the_four_tokens_only_inside_arguments(tmp_path: Path) -> None:
    sha = git_repo(tmp_path / "repo")
    ctx, rec = make_ctx(tmp_path / "repo", dvars=deploy_vars(sha))

    checked = RUNNER.run(CommandStep(("git", "cat-file", "-t", "{sha}")), ctx)
    echoed = RUNNER.run(
        py(
            "import json, sys; print(json.dumps(sys.argv[1:]))",
            "{repo}@{ref}",
            "to-{env}",
            "{sha}",
            "{other} {SHA} {0} {}",
        ),
        ctx,
    )

    assert checked.ok and rec.lines[0] == "commit"
    assert echoed.ok
    assert json.loads(rec.lines[1]) == [
        "acme/api@main",
        "to-production",
        sha,
        "{other} {SHA} {0} {}",
    ]


def test_child_sees_exactly_the_step_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", ROBOT_TOKEN)  # in the robot's env, not the step's
    dvars = deploy_vars()
    ctx, rec = make_ctx(tmp_path, dvars=dvars, env=step_env(dvars, APP_ENV="production"))

    result = RUNNER.run(py("import json, os; print(json.dumps(dict(os.environ)))"), ctx)

    assert result.ok
    seen = json.loads(rec.lines[0])
    assert {k: seen.get(k) for k in dvars} == dvars
    assert seen["APP_ENV"] == "production"
    assert "SLACK_BOT_TOKEN" not in seen
    assert ROBOT_TOKEN not in rec.lines[0]


def test_output_is_streamed_line_by_line_while_the_process_runs(tmp_path: Path) -> None:
    # the child prints its second line only after the test has received the first
    gate = tmp_path / "gate"
    code = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        "for _ in range(400):\n"
        "    if os.path.exists(sys.argv[1]): break\n"
        "    time.sleep(0.025)\n"
        "else: sys.exit(9)\n"
        "print('second'); print('third')\n"
    )
    ctx, rec = make_ctx(tmp_path, timeout=20)
    rec.on_line = lambda line: gate.touch() if line == "first" else None

    result = RUNNER.run(py(code, str(gate)), ctx)

    assert result.status is StepStatus.OK, result
    assert rec.lines == ["first", "second", "third"]


def test_failing_step_reports_exit_code_and_keeps_the_last_lines(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)

    result = RUNNER.run(py("import sys\nfor i in range(100): print(f'line {i}')\nsys.exit(3)"), ctx)

    assert result.status is StepStatus.FAILED
    assert result.reason == "exited 3"
    assert result.exit_code == 3
    assert len(rec.lines) == 100
    assert result.tail == tuple(f"line {i}" for i in range(100 - TAIL_LINES, 100))


def test_stderr_is_merged_into_the_output(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)
    code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr, flush=True)"

    result = RUNNER.run(py(code), ctx)

    assert result.ok
    assert rec.lines == ["out", "err"]


def test_a_process_killed_by_a_signal_names_it(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path)

    result = RUNNER.run(py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"), ctx)

    assert result.status is StepStatus.FAILED
    assert result.reason == "killed by signal SIGTERM"


def test_the_childs_process_group_is_reported_as_it_starts(tmp_path: Path) -> None:
    ctx, recorder = make_ctx(tmp_path)
    seen: list[tuple[int, int]] = []
    ctx.on_process = lambda pgid: seen.append((pgid, os.getpgid(pgid)))

    result = RUNNER.run(py("import os, time; print(os.getpid(), os.getpgrp()); time.sleep(0.2)"), ctx)

    assert result.ok
    ((pgid, group),) = seen
    assert group == pgid, "the child leads its own group: killing the group reaches all it started"
    assert recorder.lines == [f"{pgid} {pgid}"]


def test_command_not_found_is_a_failed_step_not_a_traceback(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path)

    result = RUNNER.run(CommandStep(("no-such-command-for-robot", "x")), ctx)

    assert result.status is StepStatus.FAILED
    assert result.reason == "command not found: no-such-command-for-robot"


def test_missing_folder_is_a_setup_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "srv" / "api"
    ctx, _ = make_ctx(missing)

    with pytest.raises(StepSetupError, match=str(missing)):
        RUNNER.run(CommandStep(("true",)), ctx)


def test_shell_metacharacters_are_passed_literally(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)
    nasty = "$(whoami); rm -rf / `id` && echo pwned | cat > x; ${HOME} *"

    result = RUNNER.run(CommandStep(("echo", nasty)), ctx)

    assert result.ok
    assert rec.lines == [nasty]
    assert list(tmp_path.iterdir()) == []


def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "with open(sys.argv[1], 'w') as f: f.write(f'{os.getpid()}\\n{child.pid}\\n')\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    ctx, rec = make_ctx(tmp_path, timeout=1.5, kill_grace=1.0)

    result = RUNNER.run(py(code, str(pids)), ctx)

    assert result.status is StepStatus.TIMED_OUT
    assert result.reason == "timed out after 1.5 s"
    assert rec.lines == ["started"]
    parent, grandchild = read_pids(pids, 2)
    assert wait_for(lambda: pid_gone(parent) and pid_gone(grandchild))


def test_a_step_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(300)\n"
    )
    ctx, _ = make_ctx(tmp_path, timeout=1.0, kill_grace=0.5)

    result = RUNNER.run(py(code, str(pids)), ctx)

    assert result.status is StepStatus.TIMED_OUT
    assert result.exit_code == -signal.SIGKILL
    (pid,) = read_pids(pids, 1)
    assert wait_for(lambda: pid_gone(pid))


def test_cancel_from_another_thread_stops_the_step(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, sys, time\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    ready = threading.Event()
    ctx, rec = make_ctx(tmp_path, timeout=60)
    rec.on_line = lambda line: ready.set() if line == "ready" else None

    def cancel_when_ready() -> None:
        if ready.wait(30):
            ctx.cancel.set()

    canceller = threading.Thread(target=cancel_when_ready)
    canceller.start()
    result = RUNNER.run(py(code, str(pids)), ctx)
    canceller.join(5)

    assert result.status is StepStatus.CANCELLED
    assert result.reason == "cancelled"
    (pid,) = read_pids(pids, 1)
    assert wait_for(lambda: pid_gone(pid))


def test_a_background_leftover_holding_the_pipe_does_not_hang_the_step(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path, timeout=60)

    result = RUNNER.run(CommandStep(("sh", "-c", "sleep 60 & echo $!")), ctx)

    leftover = int(rec.lines[0])
    os.kill(leftover, signal.SIGKILL)
    assert result.status is StepStatus.OK
    assert rec.lines == [str(leftover)]


def test_two_hundred_thousand_lines_arrive_complete_and_in_order(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)
    code = "import sys\nw = sys.stdout.write\nfor i in range(200000): w(f'{i}\\n')"

    result = RUNNER.run(py(code), ctx)

    assert result.ok
    assert rec.lines == [str(i) for i in range(200000)]
    assert result.tail == tuple(str(i) for i in range(200000 - TAIL_LINES, 200000))


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)
    raw = "b'ok \\xff\\xfe end\\n\\xc3\\xa9t\\xc3\\xa9\\n\\xc3'"  # bad bytes, é, cut-off é
    code = f"import sys\nsys.stdout.buffer.write({raw})"

    result = RUNNER.run(py(code), ctx)

    assert result.ok
    assert rec.lines == ["ok \ufffd\ufffd end", "été", "\ufffd"]


def test_a_huge_line_is_cut_and_the_next_line_survives(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)
    code = "import sys\nsys.stdout.write('a' * 300000 + '\\nafter\\n' + 'b' * 70000 + '\\nend\\n')"

    result = RUNNER.run(py(code), ctx)

    assert result.ok
    assert rec.lines == ["a" * MAX_LINE + CUT_MARK, "after", "b" * MAX_LINE + CUT_MARK, "end"]


def test_dispatcher_sends_a_command_step_to_the_command_runner(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path)

    result = StepDispatcher().run(CommandStep(("echo", "{env}")), ctx)

    assert result.ok
    assert rec.lines == ["production"]


def test_a_cancel_that_comes_once_the_step_exited_by_itself_keeps_its_result(tmp_path: Path) -> None:
    ctx, rec = make_ctx(tmp_path, timeout=60)

    def cancel_once_it_exited(line: str) -> None:
        # The step's last line; the runner has not seen it exit yet when the cancel comes.
        if line.startswith("done "):
            wait_for(lambda: pid_gone(int(line.split()[1])), 10, "the step to exit")
            ctx.cancel.set()

    rec.on_line = cancel_once_it_exited
    result = RUNNER.run(py("import os; print('done', os.getpid(), flush=True)"), ctx)

    assert ctx.cancel.is_set()
    assert (result.status, result.exit_code) == (StepStatus.OK, 0)
