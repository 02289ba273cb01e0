"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
RUN_AS_CANDIDATES = ("postgres", "nobody")
START_ATTEMPTS = 3
COMMAND_TIMEOUT = 60.0


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SEARCH_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _run_as_user() -> str | None:
    """The non-root user to run the server as (PostgreSQL refuses to run as root)."""
    for name in RUN_AS_CANDIDATES:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def unavailable_reason() -> str | None:
    """Why a throwaway server cannot be started here, or None if it can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (v3) is not installed"
    if _find("initdb") is None or _find("pg_ctl") is None:
        return "initdb/pg_ctl not found in PATH, /usr/local/bin or /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and (_run_as_user() is None or shutil.which("runuser") is None):
        return "running as root without runuser and a postgres/nobody user to run the server"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running cluster; ``new_database()`` gives each test an empty database."""

    base: Path
    port: int
    prefix: tuple[str, ...]
    pg_ctl: str
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"robot_test_{next(self._names)}"
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and delete its files."""
        for mode in ("fast", "immediate"):
            argv = [*self.prefix, self.pg_ctl, "-D", str(self.data_dir), "-m", mode, "-w"]
            try:
                done = subprocess.run(
                    [*argv, "-t", "30", "stop"], capture_output=True, timeout=COMMAND_TIMEOUT
                )
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0:
                break
        shutil.rmtree(self.base, ignore_errors=True)


def _tune(data_dir: Path, port: int, socket_dir: Path) -> None:
    # Durability is pointless for a throwaway cluster; turning it off keeps tests fast.
    settings = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{socket_dir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def start_postgres() -> PostgresServer:
    """initdb a cluster in a fresh temp folder and start it; raises if it will not start."""
    initdb, pg_ctl = _find("initdb"), _find("pg_ctl")
    assert initdb is not None and pg_ctl is not None, unavailable_reason()
    # pytest's tmp_path lives under a 0700 root folder the server user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="robot-pg-"))
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        user = _run_as_user()
        runuser = shutil.which("runuser")
        assert user is not None and runuser is not None, unavailable_reason()
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        prefix = (runuser, "-u", user, "--")
    data_dir = base / "data"
    try:
        subprocess.run(
            [
                *prefix,
                initdb,
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            cwd=base,
        )
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            _tune(data_dir, port, base)
            started = subprocess.run(
                [
                    *prefix,
                    pg_ctl,
                    "-D",
                    str(data_dir),
                    "-l",
                    str(base / "server.log"),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                cwd=base,
            )
            if started.returncode == 0:
                return PostgresServer(base=base, port=port, prefix=prefix, pg_ctl=pg_ctl)
        log = (base / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start: {log}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
