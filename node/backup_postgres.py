"""The PostgreSQL backend of ``sonet-node backup`` / ``restore``: the node's database dumped
with ``pg_dump --format=custom`` into ``database.dump``, loaded with ``pg_restore``.

pg_dump reads the whole database in one snapshot (one REPEATABLE READ transaction), so the dump
is one committed state while the node's processes keep writing. The outbox leases' rows are
left out: they name processes of the old node and would hold its outboxes until they expired.
The schema version in the manifest is read from the dump itself (its ``schema_version`` rows),
so it is the version of exactly the state dumped.

The password never goes on a command line (visible to every user in ``ps``) nor into a
message: pg_dump and pg_restore get it in PGPASSWORD, and the database is named to them by a
conninfo string without it. A backup's ``node.toml`` holds the URL without its password.

Restore loads the dump into the target database (``--database URL``, else the URL of the
backup's node.toml) only when that database holds nothing in its ``public`` schema, or with
``--force``, once no other session uses it: then its tables and functions are dropped first.
pg_restore runs as one transaction, so a failed load leaves nothing half-loaded.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import NodeConfig
from .store.database_url import redact_url

__all__ = ["PostgresBackup", "PostgresBackupError", "DUMP_FILE", "find_tool"]

#: the dump in a backup directory
DUMP_FILE = "database.dump"
#: tables whose rows are not backed up (node/store/postgres_cluster.py: leases of old processes)
_SKIPPED_DATA = ("sonet_outbox_leases",)
CONNECT_TIMEOUT_S = 10
#: how much of a tool's error output a message quotes
_MAX_DETAIL = 300


class PostgresBackupError(Exception):
    """The database could not be dumped, checked or loaded (one line, never the password)."""


def find_tool(name: str) -> Path:
    """``pg_dump`` or ``pg_restore``: on PATH (the operator's choice, or Debian's wrapper that
    picks the newest), else the newest under /usr/lib/postgresql/*/bin."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1])
    raise PostgresBackupError(
        f"{name} is not installed (neither on PATH nor under /usr/lib/postgresql/*/bin): install the PostgreSQL "
        "client of the server's major version or newer (Debian: apt-get install postgresql-client)"
    )


def _connection(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and the environment that carries it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: a malformed URL
        raise PostgresBackupError(f"{redact_url(url)} is not a usable database URL: {str(exc).splitlines()[0][:200]}") from None
    password = params.pop("password", None)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(argv: list[str], env: dict[str, str], *, what: str, secret: str | None) -> str:
    """Run a PostgreSQL tool; its stdout, or PostgresBackupError with its error in one line."""
    try:
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
    except OSError as exc:
        raise PostgresBackupError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode == 0:
        return done.stdout.decode("utf-8", "replace")
    lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    tool = Path(argv[0]).name
    detail = "; ".join(re.sub(rf"^{tool}: (error: |detail: |hint: )?", "", line) for line in lines) or f"exit status {done.returncode}"
    if secret:
        detail = detail.replace(secret, "***")
    hint = ""
    if "version mismatch" in detail or "unsupported version" in detail:
        hint = f"; use a {tool} of the server's major version or newer (found {argv[0]})"
    raise PostgresBackupError(f"{what}: {tool} failed: {detail[:_MAX_DETAIL]}{hint}")


def _password(env: dict[str, str]) -> str | None:
    return env.get("PGPASSWORD") or None


def dump_schema_version(dump: Path) -> int:
    """The schema version held in the dump (its ``schema_version`` rows), read by pg_restore
    without a database (which also checks that the archive's header and contents list read)."""
    script = _run(
        [str(find_tool("pg_restore")), "--data-only", "--table=schema_version", "--file=-", str(dump)],
        dict(os.environ), what=f"{dump} is not a usable PostgreSQL dump", secret=None,
    )  # fmt: skip
    copy = re.search(r"^COPY \S*schema_version \(version\) FROM stdin;\n(\d+)\n\\\.$", script, re.M)
    if copy is None:
        raise PostgresBackupError(f"{dump} holds no schema version: it is not the dump of a node's database")
    return int(copy.group(1))


class PostgresBackup:
    kind: str = "postgresql"
    #: the files of the database in a backup (relative paths)
    files: tuple[str, ...] = (DUMP_FILE,)

    def dump(self, data: Path, dest: Path) -> int:
        """Dump ``data``'s database (its node.toml's URL) into ``dest``; return its schema version."""
        url = NodeConfig.load(data).storage_database
        if url is None:
            raise PostgresBackupError(f"{data} keeps its database in node.db, not in PostgreSQL")
        conninfo, env = _connection(url)
        target = dest / DUMP_FILE
        # created here so that it is 0600 from the start (it holds every account's data)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        skipped = [f"--exclude-table-data={table}" for table in _SKIPPED_DATA]
        _run(
            [str(find_tool("pg_dump")), "--format=custom", "--no-owner", "--no-privileges", *skipped,
             f"--file={target}", f"--dbname={conninfo}"],
            env, what=f"cannot dump the database {redact_url(url)}", secret=_password(env),
        )  # fmt: skip
        with open(target, "rb") as f:
            os.fsync(f.fileno())
        return self.check(target)

    def check(self, db: Path) -> int:
        """The schema version of the dump ``db`` (read-only)."""
        return dump_schema_version(db)

    def load(self, dump: Path, url: str, *, force: bool, progress: Callable[[str], None]) -> int:
        """Load ``dump`` into the database at ``url`` (see the module docstring); return the
        schema version the database then holds."""
        import psycopg

        shown = redact_url(url)
        conninfo, env = _connection(url)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                held = _public_objects(conn)
                if held and not force:
                    names = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
                    raise PostgresBackupError(
                        f"the database {shown} is not empty (it holds {names}): restore into a new empty database "
                        "(--database URL), or add --force to replace what it holds"
                    )
                if held:
                    _refuse_other_sessions(conn, shown)
                    progress("emptying the target database")
                    _drop_public_objects(conn)
            progress("loading the database")
            _run(
                [str(find_tool("pg_restore")), "--single-transaction", "--exit-on-error", "--no-owner",
                 "--no-privileges", f"--dbname={conninfo}", str(dump)],
                env, what=f"cannot load the dump into {shown}", secret=_password(env),
            )  # fmt: skip
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()
            raise PostgresBackupError(f"the database {shown}: {text[0] if text else type(exc).__name__}") from None
        if row is None or row[0] is None:
            raise PostgresBackupError(f"the database {shown} holds no schema version after the load (the dump is damaged)")
        return int(row[0])


def _public_objects(conn: Any) -> list[str]:
    """The tables and functions in the database's ``public`` schema (where the node's are)."""
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           UNION ALL SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
           ORDER BY 1"""
    ).fetchall()
    return [str(row[0]) for row in rows]


def _refuse_other_sessions(conn: Any, shown: str) -> None:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    ).fetchone()
    if row and int(row[0]):
        raise PostgresBackupError(
            f"{int(row[0])} other session(s) use the database {shown} (a node running on it?): stop them before restoring over it"
        )


def _drop_public_objects(conn: Any) -> None:
    """Drop every table (with its indexes, triggers and identity sequences), view, sequence and
    function of the ``public`` schema, in one transaction."""
    with conn.transaction():
        for (name,) in conn.execute(
            "SELECT format('%I', c.relname) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'f')"
        ).fetchall():
            conn.execute(f"DROP TABLE IF EXISTS public.{name} CASCADE")
        for kind, code in (("VIEW", "v"), ("MATERIALIZED VIEW", "m"), ("SEQUENCE", "S")):
            for (name,) in conn.execute(
                "SELECT format('%%I', c.relname) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = %s",
                (code,),
            ).fetchall():
                conn.execute(f"DROP {kind} IF EXISTS public.{name} CASCADE")
        for (signature,) in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        ).fetchall():
            conn.execute(f"DROP ROUTINE IF EXISTS {signature} CASCADE")
