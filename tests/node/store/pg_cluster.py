"""A throwaway PostgreSQL cluster for the store contract suite: initdb into a temporary
directory, the server on a unix socket in that directory (no TCP), fsync on, stopped and
deleted at the end. One per test process (each xdist worker starts its own, on first use).

initdb refuses to run as root (CI runs as root on a fresh machine): then the server runs as
``nobody`` (``runuser``), in a directory handed to it. The binaries are looked up under
/usr/lib/postgresql/*/bin (Debian's ``postgresql`` package) and on PATH.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PgCluster", "PgUnavailable", "find_bindir", "running_cluster"]

#: the database the tests use, one after the other (emptied before each)
DATABASE = "sonet_test"


class PgUnavailable(Exception):
    """No PostgreSQL server can be started here (the message says why)."""


def find_bindir() -> Path | None:
    """The directory of the newest installed initdb/pg_ctl, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    # Only names the socket file (listen_addresses is empty), but a distinct one per cluster
    # keeps the clusters of parallel workers apart even if they shared a directory.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """``start()`` it, ``new_database()`` per test, ``stop()`` at the end."""

    _initial: dict[str, list[tuple[object, ...]]]
    _sequences: list[str]

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise PgUnavailable(
                "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); "
                "install it with `apt-get install -y postgresql`"
            )
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="sonet-pg-"))
        self.port = _free_port()
        self._as_user: list[str] = []
        self._counter = itertools.count()
        self._started = False

    def _run(self, *argv: str) -> None:
        cmd = [*self._as_user, str(self.bindir / argv[0]), *argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgUnavailable(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{tail}")

    def start(self) -> None:
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise PgUnavailable("running as root and runuser is missing: initdb cannot run as root")
            os.chown(self.dir, 65534, 65534)  # nobody:nogroup
            self._as_user = ["runuser", "-u", "nobody", "--"]
        # --no-sync: only initdb's own files; the server below runs with fsync on.
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "sonet", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        self.start_server()
        atexit.register(self.stop)  # also when the session ends without its finalizers (Ctrl-C)
        self._create_template()

    def start_server(self) -> None:
        """Start the server of the cluster (again, after ``stop_server``); waits until it answers."""
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=on -c max_connections=200"
        self._run("pg_ctl", "start", "-w", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-o", options)
        self._started = True

    def stop_server(self) -> None:
        """Stop the server as an operator would (``-m fast``: sessions ended, then a clean
        shutdown), keeping the cluster for ``start_server``."""
        self._run("pg_ctl", "stop", "-D", str(self.dir / "data"), "-m", "fast", "-w")
        self._started = False

    def url(self, database: str) -> str:
        return f"postgresql://sonet@/{database}?host={self.dir}&port={self.port}"

    def _create_template(self) -> None:
        """The one database the tests share (one at a time), migrated, and what its tables
        hold when new (the rows migrations insert), which ``new_database`` restores."""
        import psycopg

        from sonet.node.store.postgres_migrations import migrate

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(self.url(DATABASE), autocommit=True) as conn:
            migrate(conn)
            tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            self._initial = {table: conn.execute(f"SELECT * FROM {table}").fetchall() for table in tables}
            self._sequences = [
                row[0] for row in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
            ]

    def new_database(self) -> str:
        """The URL of the test database, emptied back to a new one's contents. (Deleting
        rows takes ~40 ms; CREATE DATABASE from a template takes 0.2-1.5 s, a checkpoint.)"""
        import psycopg

        with psycopg.connect(self.url(DATABASE), autocommit=True) as conn, conn.transaction():
            # as a replica: no triggers and no foreign-key checks while the rows go
            conn.execute("SET LOCAL session_replication_role = replica")
            # tables made after the template (e.g. node/store/postgres_cluster.py's) start empty
            tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                conn.execute(f"DELETE FROM {table}")
            for table, rows in self._initial.items():
                if rows:
                    marks = ", ".join(["%s"] * len(rows[0]))
                    conn.cursor().executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            for sequence in self._sequences:
                conn.execute("SELECT setval(%s, 1, false)", (sequence,))
        return self.url(DATABASE)

    def stop(self) -> None:
        """Stop the server and delete its directory (once; later calls do nothing)."""
        started, self._started = self._started, False
        try:
            if started:
                self._run("pg_ctl", "stop", "-D", str(self.dir / "data"), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_cluster(needed_by: str) -> Iterator[PgCluster]:
    """A started cluster of its own for ``needed_by`` (e.g. "the /ready test"), stopped and
    removed afterwards. Without a PostgreSQL server the test fails when `make test`/CI require
    one (SONET_TEST_POSTGRES=require), and is skipped with the reason otherwise."""
    import pytest

    try:
        cluster = PgCluster()
        cluster.start()
    except PgUnavailable as exc:
        if os.environ.get("SONET_TEST_POSTGRES") == "require":
            pytest.fail(f"{needed_by} needs a PostgreSQL server: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server for {needed_by}: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def aborted_once(fn: Callable[..., Any], attempts: list[str]) -> Callable[..., Any]:
    """``fn`` as a store write that PostgreSQL aborts (a serialization failure, which the store
    runs again from the start) after its first run wrote everything; each run's name goes to
    ``attempts``."""
    import psycopg

    def run(conn: Any, *args: Any) -> Any:
        result = fn(conn, *args)
        attempts.append(fn.__name__)
        if attempts.count(fn.__name__) == 1:
            raise psycopg.errors.SerializationFailure("could not serialize access (test)")
        return result

    return run
