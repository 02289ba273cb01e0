"""Opening a store's database: where its schema stands, and Alembic bringing it to head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import BotError, ConfigError
from bot.store.engine import IMMEDIATE, make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# Tables whose rows other tables point at (SQLite rebuilds them to alter them).
REBUILT_TABLES = ("deploys", "deploy_logs")
FIRST_REVISION = "0001_initial"
"""The schema the robot made before it had migrations; such a database is stamped with it."""
SCHEMA_LOCK_KEY = 0x526F626F74  # any constant shared by every robot process: "Robot"


@cache
def known_revisions() -> tuple[str, ...]:
    """This code's revision ids, oldest first.

    Read from the file names in versions/ (each is named after its revision id, which a test
    holds) so that commands that only check the schema need not import Alembic.
    """
    return tuple(sorted(p.stem for p in (MIGRATIONS / "versions").glob("[0-9]*.py")))


def head_revision() -> str:
    """The revision this code's tables are at."""
    return known_revisions()[-1]


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this code's revisions."""

    current: str | None
    """The database's revision; None when it has none of the robot's tables."""
    stamped: bool
    """False for tables made before migrations existed, recognised as FIRST_REVISION."""
    head: str
    known: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def newer(self) -> bool:
        """The database was migrated by a newer robot than this one."""
        return self.current is not None and self.current not in self.known

    @property
    def behind(self) -> bool:
        return not self.at_head and not self.newer

    @property
    def label(self) -> str:
        """The revision as people read it."""
        if self.current is None:
            return "none (empty database)"
        return self.current if self.stamped else f"{self.current} (not yet stamped)"

    def newer_error(self) -> ConfigError:
        """The one line that refuses a database this code does not know how to read."""
        return ConfigError(
            f"state.url: the database is at schema revision {self.current}, newer than this "
            f"robot's {self.head}; upgrade the robot"
        )

    def require_head(self) -> None:
        """Raise ConfigError unless the tables are exactly the ones this code uses."""
        if self.newer:
            raise self.newer_error()
        if self.behind:
            raise ConfigError(
                f"state.url: the database is at schema revision {self.label}, behind this "
                f"robot's {self.head}; run `robot db upgrade`"
            )


def open_engine(url: str, *, upgrade: bool) -> Engine:
    """The Engine for ``url``, its schema brought to head unless ``upgrade`` is False.

    Without upgrading it only connects once, so that an unreachable database fails here.
    """
    engine = make_engine(url)
    try:
        if upgrade:
            upgrade_schema(engine)
        else:
            with _opening():
                engine.connect().close()
    except BotError:
        engine.dispose()
        raise
    return engine


def read_state(engine: Engine) -> SchemaState:
    """The schema revision of the database; reads only."""
    with _opening(), engine.connect() as conn:
        return _read_state(conn)


def upgrade_schema(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """Bring the database to this code's head in one transaction; the state before and after.

    Processes starting together serialise on a lock (PostgreSQL: an advisory lock; SQLite: the
    write lock BEGIN IMMEDIATE takes), so the second one finds the schema done. A database at
    an unknown, newer revision is refused with ConfigError and left untouched.
    """
    with _opening(), engine.connect() as conn, _sqlite_foreign_keys_off(conn):
        conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
            before = _read_state(conn)
            if before.newer:
                raise before.newer_error()
            if before.at_head and before.stamped:
                return before, before
            with _sqlite_table_rebuilds(conn):
                _run_alembic(conn, before)
            after = _read_state(conn)
    return before, after


@contextmanager
def _sqlite_table_rebuilds(conn: Connection) -> Iterator[None]:
    """What SQLite's copy-and-drop ALTER loses, put back: id counters; then foreign keys checked.

    A rebuilt AUTOINCREMENT table restarts its counter at its highest remaining id, which would
    hand out again the ids of deleted newest deploys.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    counters: dict[str, int] = {}
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
        counters = {name: seq for name, seq in conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence")}
    yield
    for name, seq in counters.items():
        if inspect(conn).has_table(name):
            kept = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).scalar()
            conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
            conn.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, max(seq, kept or 0))
            )
    # Only the tables a migration may rebuild are checked: rows an operator left dangling
    # elsewhere long ago must not block every upgrade.
    for table in REBUILT_TABLES:
        broken = conn.exec_driver_sql(f"PRAGMA foreign_key_check({table})").first()
        if broken is not None:
            raise ConfigError(
                f"state.url: a schema upgrade left rows in {broken[0]} pointing at missing {broken[2]} "
                "rows; nothing was changed (the upgrade was rolled back)"
            )


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Foreign keys off on SQLite while migrating; checked with foreign_key_check instead.

    SQLite alters a table by copying it and dropping the old one, and with foreign keys on,
    dropping the old deploys would delete every log (ON DELETE CASCADE). The switch is ignored
    inside a transaction, so it is made on the driver's connection before BEGIN.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


@contextmanager
def _opening() -> Iterator[None]:
    """A database that cannot be opened or migrated is a ConfigError about state.url."""
    try:
        yield
    except SQLAlchemyError as exc:
        # The driver's first line says what is wrong without echoing the URL's password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"state.url: cannot open the database: {reason}") from None


def _read_state(conn: Connection) -> SchemaState:
    tables = set(inspect(conn).get_table_names())
    current = None
    if VERSION_TABLE in tables:
        current = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    stamped = current is not None
    if current is None and "deploys" in tables:
        current = FIRST_REVISION
    return SchemaState(current=current, stamped=stamped, head=head_revision(), known=known_revisions())


def _run_alembic(conn: Connection, before: SchemaState) -> None:
    # Only a database that needs changing pays for importing Alembic (~300 ms).
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config(attributes={"connection": conn})
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        if before.current is not None and not before.stamped:
            # Tables the robot made before it had migrations: record what they are, never recreate.
            command.stamp(config, before.current)
        command.upgrade(config, "head")
    except CommandError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"state.url: cannot upgrade the database schema: {first}") from None
