"""A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, `postgres` on a free loopback
port, a fresh database per test (`new_database()`), stopped and deleted at the end of the session.

The binaries are Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`, the newest version
there) or the first `initdb` on PATH (TOKENWAY_PG_BIN names their folder explicitly). `make setup` installs
the package where it can; where the binaries are missing the fixture FAILS (never skips) and says how to
install them. PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (created
when missing) and its folder belongs to that user.

Used by services/orchestrator/tests (its conftest imports `pg_server`) and by the repo-level tests: any
test module or conftest can `from tests.pgserver import pg_server`; every importer shares one server.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

INSTALL = ("PostgreSQL's server binaries (initdb, postgres) were not found: install them with "
           "`apt-get install postgresql` (Debian/Ubuntu; `make setup` does it when run as root), or set "
           "TOKENWAY_PG_BIN to the folder holding initdb and postgres")
DEBIAN = Path("/usr/lib/postgresql")  # Debian's binaries: DEBIAN/<version>/bin
USER = "postgres"  # who runs the server when the tests run as root
START_TIMEOUT = 60.0


class PostgresMissing(RuntimeError):
    pass


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres of one PostgreSQL version."""
    candidates = []
    if os.environ.get("TOKENWAY_PG_BIN"):
        candidates.append(Path(os.environ["TOKENWAY_PG_BIN"]))
    versions = sorted(DEBIAN.glob("*/bin"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0], reverse=True)
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for d in candidates:
        if all(os.access(d / b, os.X_OK) for b in ("initdb", "postgres")):
            return d
    raise PostgresMissing(INSTALL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root (created when missing); None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


class PgServer:
    """One running server. `url(db)` is a libpq URL; `new_database()` creates an empty database."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="tokenway-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._as = _server_user()
        if self._as:
            os.chown(self.dir, *self._as)
        try:
            self._initdb()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _run_as(self) -> dict:
        if not self._as:
            return {}
        return {"user": self._as[0], "group": self._as[1], "extra_groups": []}

    def _initdb(self) -> None:
        cmd = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
               "--locale=C", "--no-sync"]
        out = subprocess.run(cmd, check=False, cwd=self.dir, capture_output=True, text=True, **self._run_as())
        if out.returncode:
            raise RuntimeError(f"initdb failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")

    def _start(self) -> None:
        for _ in range(5):  # a free port may be taken between choosing it and binding it: choose again
            self.port = _free_port()
            with open(self.log, "ab") as log:
                if self._as:
                    os.chown(self.log, *self._as)
                self.proc = subprocess.Popen(
                    [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                     "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                     "-c", "max_connections=300", "-c", "log_min_messages=warning"],
                    cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._run_as())
            if self._wait_ready():
                return
            if "could not bind" not in self._log_tail() and "in use" not in self._log_tail():
                break
        raise RuntimeError(f"PostgreSQL did not start (exit {self.proc.poll()}); its log:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        """Polls until the server accepts a connection (True) or its process ends (False); a deadline, no
        fixed sleep."""
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(f"PostgreSQL not ready within {START_TIMEOUT:.0f}s; its log:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres", args: tuple = ()) -> list[tuple]:
        """Runs one statement (autocommit) as the superuser; its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, args or None)
            return cur.fetchall() if cur.description else []

    def new_database(self, prefix: str = "t") -> str:
        """Creates an empty database and returns its URL."""
        with self._lock:
            name = f"{prefix}_{os.getpid()}_{next(self._ids)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends the sessions, then exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: PgServer | None = None
_users = 0
_shared_lock = threading.Lock()


def acquire() -> PgServer:
    """The process's shared server, started on first use; `release()` once per `acquire()`."""
    global _shared, _users
    with _shared_lock:
        if _shared is None:
            _shared = PgServer()
        _users += 1
        return _shared


def release() -> None:
    global _shared, _users
    with _shared_lock:
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session; a test calls `pg_server.new_database()` for a URL of its own."""
    try:
        server = acquire()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    release()
