"""LogSink keeps a deploy's log bounded: the first and last halves of max_lines, and what it skipped."""

from __future__ import annotations

from bot.logsink import LogSink
from bot.models import DeployRequest, Source
from tests.fakes.memory import MemoryStore


def _sink(max_lines: int) -> tuple[MemoryStore, int, LogSink]:
    store = MemoryStore()
    deploy, _ = store.create_deploy(
        DeployRequest("acme/api", "production", "main", "a" * 40, "U1", Source.CLI)
    )
    return store, deploy.id, LogSink(store, deploy.id, max_lines)


def test_a_log_within_the_limit_is_kept_whole() -> None:
    store, deploy_id, sink = _sink(100)
    for i in range(100):
        sink.write(f"line {i}")
    sink.close()
    assert store.read_log(deploy_id).split("\n") == [f"line {i}" for i in range(100)]


def test_a_long_log_keeps_its_first_and_last_halves_and_says_how_many_were_skipped() -> None:
    store, deploy_id, sink = _sink(100)
    for i in range(100_000):
        sink.write(f"line {i}")
    sink.write("==> failed: step 1/1 `make` exited 2")
    sink.close()
    log = store.read_log(deploy_id).split("\n")
    assert log[:50] == [f"line {i}" for i in range(50)]
    assert log[50] == "[… 99,901 lines skipped: each deploy keeps its first and last lines …]"
    assert log[51:] == [f"line {i}" for i in range(99_951, 100_000)] + [
        "==> failed: step 1/1 `make` exited 2"
    ]
    assert len(log) == 101


def test_the_head_reaches_the_store_while_the_step_still_runs() -> None:
    store, deploy_id, sink = _sink(10)
    for i in range(1000):
        sink.write(f"line {i}")
    sink.flush()  # as the pipeline does after each step
    assert store.read_log(deploy_id).split("\n") == [f"line {i}" for i in range(5)]
