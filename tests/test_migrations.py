"""Schema migrations: databases made before migrations, empty, newer and shared by two processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from bot import cli
from bot.errors import ConfigError
from bot.models import AutoDeployStatus, DeployRequest, DeployState, ProcessInfo, ProcessKind, Source
from bot.store import SqlStore, migrate
from bot.store.engine import make_engine
from bot.store.schema import metadata
from tests.support.harness import ROOT, environ, run_cli, write_config
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_for

DATA = Path(__file__).parent / "data"
V1_DEPLOY_COLUMNS = (
    "id, repo, env, ref, sha, requested_by, source, state, force, github_deployment_id, channel,"
    " message_ts, created_at, started_at, finished_at, error, cancel_requested"
)
"""The deploys columns of revision 1: later revisions add columns, and every old row keeps these."""
V1_COLUMNS = {
    "deploys": V1_DEPLOY_COLUMNS,
    "auto_deploys": "repo, env, sha, created_at",
    "locks": "repo, env, locked_by, reason, locked_at",
    "heads": "repo, sha, etag, updated_at",
}
TABLES = {
    "deploys": "id",
    "deploy_logs": "deploy_id, seq",
    "locks": "repo, env",
    "heads": "repo",
    "auto_deploys": "repo, env, sha",
}
HEAD = migrate.head_revision()
NEWER = (
    f"state.url: the database is at schema revision 0099_x, newer than this robot's {HEAD}; upgrade the robot"
)
PROCESS_DEADLINE = 60.0
REPOS = {"acme/api": {"environments": {"production": {"folder": ".", "commands": [["true"]]}}}}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A plain engine on the test's database, for what the robot's code must not do itself."""
    made = make_engine(url)
    yield made
    made.dispose()


def load_revision_1(engine: Engine) -> None:
    """The tables exactly as the robot made them before it had migrations (frozen DDL)."""
    sql = (DATA / f"schema_v1_{engine.dialect.name}.sql").read_text()
    lines = [line for line in sql.splitlines() if not line.startswith("--")]
    with engine.begin() as conn:
        for statement in "\n".join(lines).split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


def at(conn: Connection, hour: int, minute: int = 0) -> object:
    """A timestamp stored the way the robot stored it: naive UTC text on SQLite, timestamptz else."""
    value = datetime(2026, 1, 2, hour, minute, tzinfo=UTC)
    if conn.dialect.name == "sqlite":
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def fill_revision_1(engine: Engine) -> None:
    """Rows of every table, deploys in every kind of state, as the old robot wrote them."""
    deploys = [
        ("acme/api", "production", "a" * 40, "succeeded", 9, 10, None),
        ("acme/api", "production", "b" * 40, "failed", 10, 11, "exited 4"),
        ("acme/api", "staging", "c" * 40, "running", 11, None, None),
        ("acme/api", "staging", "d" * 40, "queued", None, None, None),
        ("acme/web", "production", "e" * 40, "interrupted", 12, 13, "robot restarted during the deploy"),
        ("acme/web", "production", "f" * 40, "cancelled", None, 14, None),
    ]
    insert_deploy = text(
        "INSERT INTO deploys (repo, env, ref, sha, requested_by, source, state, force,"
        " github_deployment_id, channel, message_ts, created_at, started_at, finished_at, error,"
        " cancel_requested) VALUES (:repo, :env, 'main', :sha, 'U1', 'command', :state, :force,"
        " :gh, 'C1', :ts, :created, :started, :finished, :error, :cancel)"
    )
    with engine.begin() as conn:
        for n, (repo, env, sha, state, started, finished, error) in enumerate(deploys, start=1):
            conn.execute(
                insert_deploy,
                {
                    "repo": repo,
                    "env": env,
                    "sha": sha,
                    "state": state,
                    "force": n == 2,
                    "gh": 1_000_000_000_000 + n,
                    "ts": f"1700000000.{n:06d}",
                    "created": at(conn, 8, n),
                    "started": None if started is None else at(conn, started),
                    "finished": None if finished is None else at(conn, finished),
                    "error": error,
                    "cancel": state == "running",
                },
            )
        log = text("INSERT INTO deploy_logs (deploy_id, seq, text) VALUES (:id, :seq, :text)")
        conn.execute(log, [{"id": 1, "seq": 0, "text": "one\ntwo"}, {"id": 1, "seq": 1, "text": "✓ drei"}])
        conn.execute(log, {"id": 2, "seq": 0, "text": "bad"})
        conn.execute(
            text("INSERT INTO locks VALUES ('acme/web', 'production', 'U2', 'db maintenance', :at)"),
            {"at": at(conn, 15)},
        )
        heads = text("INSERT INTO heads VALUES (:repo, :sha, :etag, :at)")
        conn.execute(heads, {"repo": "acme/api", "sha": "b" * 40, "etag": 'W/"abc"', "at": at(conn, 16)})
        conn.execute(heads, {"repo": "acme/web", "sha": "f" * 40, "etag": None, "at": at(conn, 16)})
        conn.execute(
            text("INSERT INTO auto_deploys VALUES ('acme/api', 'production', :sha, :at)"),
            {"sha": "a" * 40, "at": at(conn, 9)},
        )
        # The newest deploy is gone: its id must still never be handed out again.
        conn.execute(text("DELETE FROM deploys WHERE id = 6"))


def rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of revision 1's tables, in revision 1's columns."""
    with engine.connect() as conn:
        return {
            table: [
                tuple(r)
                for r in conn.exec_driver_sql(
                    f"SELECT {V1_COLUMNS.get(table, '*')} FROM {table} ORDER BY {key}"
                )
            ]
            for table, key in TABLES.items()
        }


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def schema_text(engine: Engine) -> list[str]:
    """The database's own description of the robot's tables, for comparing two databases."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'alembic_version'"
        else:
            query = """
                SELECT table_name || '.' || column_name || ' ' || data_type || ' '
                       || coalesce(character_maximum_length::text, '') || ' ' || is_nullable || ' '
                       || coalesce(column_default, '')
                FROM information_schema.columns WHERE table_schema = 'public'
                UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
                UNION ALL SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid)
                FROM pg_constraint WHERE connamespace = 'public'::regnamespace"""
        found = (" ".join(str(r[0]).split()) for r in conn.exec_driver_sql(query))
        return sorted(line for line in found if "alembic_version" not in line)


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's config as the store builds it, to run one revision or read the script folder."""
    config = Config(attributes={"connection": conn})
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    return config


def set_version(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


def req(sha: str, env: str = "production") -> DeployRequest:
    return DeployRequest(
        repo="acme/api", env=env, ref="main", sha=sha, requested_by="U9", source=Source.COMMAND
    )


# revisions


def test_revision_files_are_named_after_their_revisions_in_one_line() -> None:
    scripts = list(reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())))
    assert [Path(s.path).stem for s in scripts] == [s.revision for s in scripts]
    assert tuple(s.revision for s in scripts) == migrate.known_revisions()
    assert [s.down_revision for s in scripts] == [None, *migrate.known_revisions()[:-1]]
    assert migrate.known_revisions()[0] == migrate.FIRST_REVISION


# opening


def test_an_empty_database_is_brought_to_head(url: str, engine: Engine) -> None:
    store = SqlStore.from_url(url)
    try:
        state = store.schema_state()
        assert (state.current, state.stamped, state.at_head) == (migrate.head_revision(), True, True)
        deploy, created = store.create_deploy(req("1" * 40))
        assert created and deploy.id == 1
    finally:
        store.close()
    assert schema_differences(engine) == []


def test_revision_1_is_the_schema_the_robot_made_before_migrations(url: str, tmp_path: Path) -> None:
    migrated = make_engine(url)
    with migrated.begin() as conn:
        command.upgrade(alembic_config(conn), migrate.FIRST_REVISION)
    before = make_engine(
        f"sqlite:///{tmp_path / 'before.db'}" if migrated.dialect.name == "sqlite" else url + "_before"
    )
    if migrated.dialect.name == "postgresql":
        with migrated.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f'CREATE DATABASE "{before.url.database}"')
    try:
        load_revision_1(before)
        assert schema_text(migrated) == schema_text(before)
    finally:
        migrated.dispose()
        before.dispose()


def test_a_database_made_before_migrations_is_stamped_and_keeps_every_row(url: str, engine: Engine) -> None:
    load_revision_1(engine)
    fill_revision_1(engine)
    old = rows(engine)
    assert [len(old[t]) for t in TABLES] == [5, 3, 1, 2, 1]
    unopened = SqlStore.from_url(url, upgrade=False)
    try:
        state = unopened.schema_state()
        assert (state.current, state.stamped, state.behind) == ("0001_initial", False, True)
    finally:
        unopened.close()

    store = SqlStore.from_url(url)
    try:
        assert rows(engine) == old
        state = store.schema_state()
        assert (state.current, state.stamped) == (migrate.head_revision(), True)
        assert schema_differences(engine) == []

        first = store.get_deploy(1)
        assert first is not None and first.state is DeployState.SUCCEEDED
        assert first.created_at == datetime(2026, 1, 2, 8, 1, tzinfo=UTC)
        assert first.duration_seconds == 3600.0 and first.github_deployment_id == 1_000_000_000_001
        failed = store.get_deploy(2)
        assert failed is not None and failed.force and failed.error == "exited 4"
        assert [d.id for d in store.list_deploys()] == [5, 4, 3, 2, 1]
        assert store.read_log(1) == "one\ntwo\n✓ drei"
        lock = store.get_lock("acme/web", "production")
        assert lock is not None and lock.reason == "db maintenance"
        head = store.get_head("acme/api")
        assert head is not None and head.etag == 'W/"abc"'
        assert not store.mark_auto_deployed("acme/api", "production", "a" * 40)
        started = store.get_auto_deploy("acme/api", "production", "a" * 40)
        assert started is not None and started.status is AutoDeployStatus.QUEUED, "old rows are done"

        # The old partial unique indexes still dedupe and serialise.
        same, created = store.create_deploy(req("d" * 40, env="staging"))
        assert (same.id, created) == (4, False)
        new, created = store.create_deploy(req("9" * 40))
        assert created and new.id == 7, "deploy ids continue after the highest ever given"
        claimed = store.claim_next()
        assert claimed is not None and claimed.id == 7
    finally:
        store.close()


def test_a_deploy_running_on_revision_1_has_no_owner_and_is_taken_over(url: str, engine: Engine) -> None:
    load_revision_1(engine)
    fill_revision_1(engine)
    store = SqlStore.from_url(url)
    try:
        running = store.get_deploy(3)
        assert running is not None and running.state is DeployState.RUNNING
        assert (running.owner_id, running.step_pgid) == (None, None)
        # No robot of revision 1 ever beats: its deploy is an orphan of a dead owner at once.
        (orphan,) = store.orphaned_deploys(30)
        assert (orphan.deploy, orphan.owner) == (running, None)
        me = store.register_process(ProcessInfo("host-a", 1, "boot-1", ProcessKind.RUN))
        assert me.id == 1
        taken = store.take_over(3, 30, "robot stopped during the deploy", lock_reason="check it")
        assert taken is not None and taken.state is DeployState.INTERRUPTED
        assert store.orphaned_deploys(30) == []
        store.remove_lock("acme/api", "staging", "slack:U7")
        claimed = store.claim_next(owner=me.id)
        assert claimed is not None and (claimed.id, claimed.owner_id) == (4, me.id)
    finally:
        store.close()


def test_revision_4s_encoded_waiting_and_root_columns_move_to_their_own(url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004_lock_events")
    claimed = datetime(2026, 1, 2, 12, 0, 0, 500000, tzinfo=UTC)
    epoch = str(claimed.timestamp())
    insert = text(
        "INSERT INTO deploys (repo, env, ref, sha, requested_by, source, state, force, channel,"
        " message_ts, created_at, finished_at, error, cancel_requested) VALUES ('acme/api', :env,"
        " 'main', :sha, 'U1', :source, :state, false, 'C1', :ts, :created, :finished, :error, false)"
    )
    with engine.begin() as conn:
        old = [  # source, state, message_ts, finished_at, error: as revision 4 wrote them
            ("command", "waiting", "1700000000.000001", at(conn, 12, 5), "waiting for CI: ci/test pending"),
            ("merge", "succeeded", "100.1>100.2", at(conn, 11), None),
            ("merge", "queued", f"100.3>?{epoch}", None, None),
            ("command", "queued", f"?{epoch}", None, None),
            ("merge", "queued", "100.4", None, None),
            ("command", "failed", "1700000000.000006", at(conn, 10), "exited 4"),
        ]
        for n, (source, state, ts, finished, error) in enumerate(old, start=1):
            conn.execute(
                insert,
                {"source": source, "state": state, "ts": ts, "finished": finished, "error": error}
                | {"env": f"env{n}", "sha": f"{n}" * 40, "created": at(conn, 8, n)},
            )

    store = SqlStore.from_url(url)
    try:
        assert store.schema_state().current == HEAD
        assert schema_differences(engine) == []
        waiting, merged, merge_claim, claim, thread_only, failed = (store.get_deploy(n) for n in range(1, 7))
        assert waiting is not None and waiting.state is DeployState.WAITING
        assert (waiting.waiting_for, waiting.recheck_at) == (
            "waiting for CI: ci/test pending",
            datetime(2026, 1, 2, 12, 5, tzinfo=UTC),
        )
        assert (waiting.error, waiting.finished_at) == (None, None)
        assert (waiting.message_ts, waiting.root_ts) == ("1700000000.000001", "1700000000.000001")
        assert store.next_recheck() == datetime(2026, 1, 2, 12, 5, tzinfo=UTC)
        assert merged is not None and (merged.message_ts, merged.root_ts, merged.root_claimed_at) == (
            "100.1",
            "100.2",
            None,
        )
        assert merge_claim is not None
        assert (merge_claim.message_ts, merge_claim.root_ts, merge_claim.root_claimed_at) == (
            "100.3",
            None,
            claimed,
        )
        assert claim is not None and (claim.message_ts, claim.root_ts, claim.root_claimed_at) == (
            None,
            None,
            claimed,
        )
        assert thread_only is not None and (thread_only.message_ts, thread_only.root_ts) == ("100.4", None)
        assert failed is not None and (failed.message_ts, failed.root_ts) == (
            "1700000000.000006",
            "1700000000.000006",
        )
        assert (failed.error, failed.finished_at, failed.waiting_for, failed.recheck_at) == (
            "exited 4",
            datetime(2026, 1, 2, 10, tzinfo=UTC),
            None,
            None,
        )
        # The stale claim is taken over, and the root recorded in its own column.
        token = store.claim_root(merge_claim.id, 30.0)
        assert token is not None and store.record_root(merge_claim.id, token, "C1", "100.5")
        posted = store.get_deploy(merge_claim.id)
        assert posted is not None and (posted.message_ts, posted.root_ts) == ("100.3", "100.5")
    finally:
        store.close()


@pytest.mark.parametrize("upgrade", [True, False])
def test_an_unreachable_database_is_one_config_error(upgrade: bool) -> None:
    with pytest.raises(ConfigError, match=r"^state\.url: cannot open the database: ") as refused:
        SqlStore.from_url("postgresql://robot:pw-secret@127.0.0.1:1/robot", upgrade=upgrade)
    assert "pw-secret" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_database_newer_than_the_robot_is_refused_in_one_line(url: str, engine: Engine) -> None:
    store = SqlStore.from_url(url)
    store.create_deploy(req("1" * 40))
    store.close()
    set_version(engine, "0099_x")
    kept = rows(engine)
    with pytest.raises(ConfigError) as refused:
        SqlStore.from_url(url)
    assert str(refused.value) == NEWER
    reader = SqlStore.from_url(url, upgrade=False)
    try:
        assert reader.schema_state().newer
    finally:
        reader.close()
    assert rows(engine) == kept


LATER_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "9999_note"
down_revision = "{head}"


def upgrade() -> None:
    # Forces the copy-and-drop SQLite uses for most ALTERs.
    with op.batch_alter_table(
        "deploys", recreate="always", table_kwargs={{"sqlite_autoincrement": True}}
    ) as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys", table_kwargs={{"sqlite_autoincrement": True}}) as batch:
        batch.drop_column("note")
"""


def test_a_later_revision_rebuilding_deploys_on_sqlite_keeps_logs_and_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'robot.db'}"
    store = SqlStore.from_url(url)
    try:
        for n in range(1, 4):
            deploy, _ = store.create_deploy(req(f"{n}" * 40))
            store.append_log(deploy.id, [f"log of #{n}"])
            store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)
    finally:
        store.close()
    engine = make_engine(url)
    request.addfinalizer(engine.dispose)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM deploys WHERE id = 3")
    old = rows(engine)
    later = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, later, ignore=shutil.ignore_patterns("__pycache__"))
    (later / "versions" / "9999_note.py").write_text(LATER_REVISION.format(head=migrate.head_revision()))
    monkeypatch.setattr(migrate, "MIGRATIONS", later)
    migrate.known_revisions.cache_clear()
    request.addfinalizer(migrate.known_revisions.cache_clear)

    store = SqlStore.from_url(url)
    try:
        assert store.schema_state().current == "9999_note"
        new = rows(engine)
        assert new.pop("deploys") == old.pop("deploys"), "deploys kept"
        assert new == old, "the logs of deploys #1 and #2 kept"
        deploy, _ = store.create_deploy(req("4" * 40))
        assert deploy.id == 4, "the id of the deleted #3 is not handed out again"
    finally:
        store.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# the command line


@pytest.mark.slow  # the robot CLI as real processes
def test_db_current_and_upgrade_as_a_user_runs_them(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", REPOS)
    empty = run_cli(config, "db", "current")
    assert empty.returncode == 1, empty.stderr
    assert "database: none (empty database)" in empty.stdout
    assert f"robot:    {HEAD}" in empty.stdout and "run `robot db upgrade`" in empty.stdout
    status = run_cli(config, "status")
    assert (status.returncode, status.stdout) == (0, "No deploys recorded yet.\n")
    check = run_cli(config, "check")
    assert f"✓ schema: empty; `robot run` or `robot deploy` creates {HEAD}" in check.stdout
    assert not has_tables(tmp_path / "robot.db"), "status and check must not write a schema"

    upgraded = run_cli(config, "db", "upgrade")
    assert (upgraded.returncode, upgraded.stderr) == (0, "")
    assert upgraded.stdout == f"schema upgraded: none (empty database) → {HEAD}\n"
    again = run_cli(config, "db", "upgrade")
    assert again.stdout == f"schema already at {HEAD}: up to date\n"
    current = run_cli(config, "db", "current")
    assert current.returncode == 0
    assert current.stdout == f"database: {HEAD}\nrobot:    {HEAD}\nup to date\n"

    engine = make_engine(f"sqlite:///{tmp_path / 'robot.db'}")
    try:
        set_version(engine, "0099_x")
    finally:
        engine.dispose()
    for args in (("db", "current"), ("db", "upgrade"), ("status",), ("deploy", "acme/api")):
        refused = run_cli(config, *args)
        assert (refused.returncode, refused.stderr) == (2, f"robot: {NEWER}\n"), args
    check = run_cli(config, "check")
    assert check.returncode == 1
    assert f"✗ schema: {NEWER}" in check.stdout


def has_tables(path: Path) -> bool:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar())
    finally:
        engine.dispose()


def test_status_and_check_on_a_schema_behind_the_robot_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", REPOS)
    SqlStore.from_url(f"sqlite:///{tmp_path / 'robot.db'}").close()
    # A robot one revision ahead of this database.
    known = migrate.known_revisions()
    monkeypatch.setattr(migrate, "known_revisions", lambda: (*known, "9999_next"))
    for name, value in environ().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["status", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"robot: state.url: the database is at schema revision {HEAD}, behind this robot's "
        "9999_next; run `robot db upgrade`\n"
    )
    assert cli.main(["check", "--config", str(config)]) == 1
    assert f"✗ schema: {HEAD}, behind 9999_next: run `robot db upgrade`" in capsys.readouterr().out
    assert cli.main(["db", "current", "--config", str(config)]) == 1
    assert "behind: run `robot db upgrade`" in capsys.readouterr().out


# several processes

OPEN_WHEN_TOLD = """
import pathlib, sys, time
import alembic.command  # imported up front so that both processes reach the lock together
from bot.store import SqlStore
go = pathlib.Path(sys.argv[2])
pathlib.Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.005)
store = SqlStore.from_url(sys.argv[1])
print(store.schema_state().current)
store.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("made_before_migrations", [False, True], ids=["empty", "revision-1"])
def test_two_processes_opening_one_database_together_make_one_schema(
    url: str, engine: Engine, tmp_path: Path, made_before_migrations: bool
) -> None:
    if made_before_migrations:
        load_revision_1(engine)
        fill_revision_1(engine)
    old = rows(engine) if made_before_migrations else None
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, url, str(go), str(tmp_path / f"ready{i}")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), what="both processes")
        go.touch()
        results = [proc.communicate(timeout=PROCESS_DEADLINE) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], results
    assert [out for out, _ in results] == [migrate.head_revision() + "\n"] * 2
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    assert schema_differences(engine) == []
    if old is not None:
        assert rows(engine) == old
