"""What is particular to the PostgreSQL backend (the contract suite runs on it too, through the
``store`` fixture): migrations, atomic quotas across stores (as across processes), the URL in
node.toml and ``sonet-node`` (init, status, invite), and passwords kept out of every output."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tomllib
from pathlib import Path

import psycopg
import pytest
import trio

from sonet.node.cli import main
from sonet.node.store import QuotaExceeded, StoreError, open_store, redact_url
from sonet.node.store import migrations as sqlite_migrations
from sonet.node.store import postgres_migrations
from sonet.node.store.postgres import PostgresStore
from sonet.node.store.postgres_connection import to_format_style

from .pg_cluster import PgCluster
from .test_contract import BOB, NOW, ROOMY, env, register

PASSWORD = "s3cret-Pa55"


def with_password(url: str) -> str:
    # trust authentication never asks for it: the password is only there to be kept out of sight
    return url.replace("postgresql://sonet@", f"postgresql://sonet:{PASSWORD}@")


def test_the_schema_versions_are_sqlites() -> None:
    # every SQLite migration has its PostgreSQL step (append to both lists)
    assert postgres_migrations.LATEST_VERSION == sqlite_migrations.LATEST_VERSION


async def test_both_schemas_have_the_same_tables_and_columns(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """The two migration lists are written twice (one DDL per dialect): the same version must
    mean the same tables with the same columns, or a query works on one backend only."""
    sqlite_store = await open_store(tmp_path / "node.db")
    await sqlite_store.close()
    with sqlite3.connect(tmp_path / "node.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        in_sqlite = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    with psycopg.connect(pg_cluster.new_database()) as conn:
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'")
        in_postgres: dict[str, set[str]] = {}
        for table, column in rows:
            in_postgres.setdefault(table, set()).add(column)
    del in_postgres["schema_version"]  # PostgreSQL's record of the version; SQLite's is PRAGMA user_version
    for per_cluster in ("sonet_outbox_leases", "sonet_ephemerals"):  # node/cluster.py makes them at start
        in_postgres.pop(per_cluster, None)
    in_postgres["splits"].discard("rowid")  # stands for SQLite's implicit rowid (ORDER BY detected_at, rowid)
    # The outboxes: a table on PostgreSQL, batch rows and an index in memory on SQLite (node/store/outbox_log.py)
    assert {t: in_sqlite.pop(t) for t in ("outbox_batches", "outbox_meta")} == {
        "outbox_batches": {"batch", "dest", "items"},
        "outbox_meta": {"one", "version"},
    }
    assert {"seq", "dest", "key", "data"} <= in_postgres.pop("outbox")
    assert in_sqlite.keys() == in_postgres.keys(), in_sqlite.keys() ^ in_postgres.keys()
    differing = {t: in_sqlite[t] ^ in_postgres[t] for t in in_sqlite if in_sqlite[t] != in_postgres[t]}
    assert differing == {}


async def test_a_new_database_is_migrated_once_and_a_newer_one_is_refused(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    async with trio.open_nursery() as nursery:  # two processes starting at once: one migrates
        for _ in range(2):
            nursery.start_soon(lambda: _open_and_close(url))
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(postgres_migrations.LATEST_VERSION,)]
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(StoreError, match="newer than this software"):
        await PostgresStore.open(url)


async def _open_and_close(url: str) -> None:
    store = await PostgresStore.open(url)
    await store.close()


async def test_two_stores_on_one_database_never_overfill_a_mailbox(pg_cluster: PgCluster) -> None:
    """Two stores (as two node processes) race to fill one mailbox: the quota holds exactly."""
    url = pg_cluster.new_database()
    first, second = await PostgresStore.open(url), await PostgresStore.open(url)
    try:
        await register(first, BOB)
        quota = dataclasses.replace(ROOMY, max_envelopes=10)
        stored: list[int] = []
        refused: list[str] = []

        async def fill(store: PostgresStore, offset: int) -> None:
            for n in range(10):
                try:
                    stored.append(await store.enqueue([env(offset + n, to=BOB)], now=NOW, quota=quota))
                except QuotaExceeded as exc:
                    refused.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fill, first, 0)
            nursery.start_soon(fill, second, 100)
        assert sum(stored) == 10 and len(refused) == 10
        assert len(await first.pending(BOB, 1, after_seq=0, limit=100, now=NOW)) == 10
    finally:
        await first.close()
        await second.close()


async def test_commits_are_durable_whatever_the_servers_default(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER DATABASE sonet_test SET synchronous_commit = off")
    try:
        store = await PostgresStore.open(url)
        try:
            setting = await store._transaction(lambda conn: conn.execute("SHOW synchronous_commit").fetchone())
        finally:
            await store.close()
        assert setting == ("on",)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER DATABASE sonet_test RESET synchronous_commit")


async def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://sonet:{PASSWORD}@/nowhere?host={tmp_path}&port=1&connect_timeout=1"
    with pytest.raises(StoreError) as caught:
        await open_store(url)
    assert PASSWORD not in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("cannot open database: connection")


def test_sqlite_only_sql_never_reaches_postgresql() -> None:
    assert to_format_style("SELECT a FROM t INDEXED BY t_a WHERE b = ? AND c LIKE 'x%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"
    )
    for sql in ("INSERT OR REPLACE INTO t VALUES (?)", "PRAGMA page_count"):
        with pytest.raises(AssertionError, match="SQLite-only"):
            to_format_style(sql)


def test_redact_url_hides_every_form_of_password() -> None:
    assert redact_url("postgresql://u:pw@db.example:5432/sonet") == "postgresql://u:***@db.example:5432/sonet"
    assert redact_url("postgresql://u@h/db?sslmode=require&password=pw") == "postgresql://u@h/db?sslmode=require&password=***"
    assert redact_url("postgresql:///sonet?host=/run/postgresql") == "postgresql:///sonet?host=/run/postgresql"


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_init_with_a_postgresql_url_keeps_the_node_there(
    pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = with_password(pg_cluster.new_database())
    data = tmp_path / "node"
    code, out, err = run(capsys, "init", "--data", data, "--name", "alpha.example", "--listen", "127.0.0.1:0", "--database", url)
    assert code == 0, err
    assert PASSWORD not in out + err
    assert tomllib.loads((data / "node.toml").read_text())["storage"]["database"] == url
    assert not (data / "node.db").exists()  # the data is in PostgreSQL

    code, out, err = run(capsys, "invite", "--data", data, "--json")
    assert code == 0, err
    code, out, err = run(capsys, "status", "--data", data, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["database"] == redact_url(url) and PASSWORD not in out + err
    assert status["invites_open"] == 1
    with psycopg.connect(pg_cluster.url("sonet_test")) as conn:
        assert conn.execute("SELECT count(*) FROM invites").fetchone() == (1,)

    code, out, err = run(capsys, "status", "--data", data)
    assert code == 0 and f"database: {redact_url(url)}" in out and PASSWORD not in out + err


def test_init_refuses_a_database_it_cannot_use_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "node"
    code, out, err = run(capsys, "init", "--data", data, "--name", "a.example", "--listen", "127.0.0.1:0", "--database", "mysql://x")
    assert code != 0 and len(err.splitlines()) == 1 and "postgresql://" in err
    unreachable = f"postgresql://sonet:{PASSWORD}@/db?host={tmp_path}&port=1&connect_timeout=1"
    code, out, err = run(capsys, "init", "--data", data, "--name", "a.example", "--listen", "127.0.0.1:0", "--database", unreachable)
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert PASSWORD not in out + err
    assert not (data / "node.toml").exists()  # nothing left half-initialised


#: what SQLite reads and PostgreSQL refuses (dialect.py names the shared forms to use)
SQLITE_ONLY = {
    r"INSERT OR (REPLACE|IGNORE)": "INSERT ... ON CONFLICT (...) DO UPDATE SET / DO NOTHING",
    r"\bx''": "a bound b\"\"",
    r"lastrowid": "INSERT ... RETURNING",
    r"\b(min|max)\([a-z_]+, ": "CASE WHEN a < b THEN a ELSE b END",
    r"PRAGMA": "a function in dialect.py",
    r"\bIFNULL\(|\bifnull\(": "coalesce",
}


def test_the_backends_sql_is_in_the_subset_both_databases_read() -> None:
    import re

    import sonet.node.store as package

    found = []
    for path in sorted(Path(package.__file__).parent.glob("sqlite_*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            sql = " ".join(re.findall(r'"[^"]*"', line))  # the string literals: SQL, not Python's max()
            for pattern, instead in SQLITE_ONLY.items():
                if re.search(pattern, line if pattern == "lastrowid" else sql):
                    found.append(f"{path.name}:{number}: {line.strip()} -- use {instead}")
    assert not found, "\n".join(found)
