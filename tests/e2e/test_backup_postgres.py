"""Backup and restore of a node on PostgreSQL, with real processes on a throwaway cluster
(issue 18 item 6, "for both backends"): alice's device sends in a loop while ``sonet-node
backup`` (pg_dump) runs against the running node; the node is stopped, the backup restored into
a new database on the same cluster, a node started from it, and bob's device receives there
every message acknowledged before the backup started, once. The database password is in no
file of the backup nor in any output. A backup whose dump has one changed byte, a target
database that is not empty or in use, and --force over a running node's directory are refused
in one line, the target database untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio

from ..node.store.pg_cluster import PgCluster, running_cluster
from .conftest import SONET_NODE, Pair, Processes, cli, node_here, ok, register, set_listen
from .faults import Inbox, Sender
from .test_backup_roundtrip import back_up_while_sending

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]

#: trust authentication ignores it: it stands for a real password that must not leak
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with running_cluster("the PostgreSQL backup test") as pg:
        yield pg


def new_database(cluster: PgCluster, name: str) -> str:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.url(name)


def with_password(url: str) -> str:
    return url.replace("postgresql://sonet@", f"postgresql://sonet:{PASSWORD}@")


def pg_pair(procs: Processes, tmp: Path, database: str) -> Pair:
    data = tmp / "node"
    ok(node_here("init", "--data", data, "--name", "localhost", "--listen", "127.0.0.1:0", "--database", database))
    node = procs.start_node(data)
    set_listen(data, f"127.0.0.1:{node.port}")  # the restored node comes back on the same URL
    pair = Pair(node, tmp / "alice", tmp / "bob")
    register(pair.alice, "alice@localhost", node)
    register(pair.bob, "bob@localhost", node)
    return pair


def test_backup_while_messages_flow_restores_into_a_new_database(procs: Processes, tmp_path: Path, cluster: PgCluster) -> None:
    pair = pg_pair(procs, tmp_path, with_password(new_database(cluster, "flow_origin")))
    backup = tmp_path / "backup"
    sender = Sender(pair.alice, "bob@localhost", "flow")
    done, acknowledged_before = back_up_while_sending(pair.node.data, sender, backup)
    assert done.returncode == 0 and done.stderr == b"", done
    [made] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert made["store"] == "postgresql" and made["node"] == "localhost" and made["schema_version"] > 0
    assert sender.crashes == [], sender.crashes
    assert pair.node.alive()
    names = {p.name for p in backup.iterdir()}
    assert {"database.dump", "manifest.json", "node.key", "node.toml", "audit.log", "audit.head"} <= names, names
    assert "node.db" not in names
    for path in (p for p in backup.rglob("*") if p.is_file()):  # the password stays with the operator
        assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in done.stdout.decode()

    assert pair.node.terminate() == 0
    restored, target = tmp_path / "restored", with_password(new_database(cluster, "flow_restored"))
    out = ok(node_here("restore", "--data", restored, backup, "--database", target)).out
    assert out.startswith("restored node localhost ") and PASSWORD not in out, out
    assert "flow_restored" in (restored / "node.toml").read_text()  # the target, with its password
    assert not (restored / "database.dump").exists() and not (restored / "node.db").exists()
    node = procs.start_node(restored)
    assert node.url == pair.node.url and node.fingerprint == pair.node.fingerprint

    inbox = Inbox(pair.bob)
    trio.run(inbox.receive, acknowledged_before)
    shown = inbox.texts("flow")
    assert acknowledged_before <= set(shown), sorted(acknowledged_before - set(shown))
    assert len(shown) == len(set(shown))  # nothing twice
    assert inbox.tracebacks == [], inbox.tracebacks


def test_a_changed_dump_a_database_in_use_and_a_running_node_are_refused(procs: Processes, tmp_path: Path, cluster: PgCluster) -> None:
    origin = new_database(cluster, "refusals_origin")
    pair = pg_pair(procs, tmp_path, origin)
    backup = tmp_path / "backup"
    ok(cli("sonet-node", "backup", "--data", pair.node.data, backup))

    # the node's own database holds its tables: refused without --force, and with --force
    # while the node (another session) runs on it
    for extra, expected in (((), "is not empty (it holds "), (("--force",), "other session(s) use the database")):
        result = cli("sonet-node", "restore", "--data", tmp_path / "again", backup, "--database", origin, *extra)
        assert result.rc == 1 and result.out == "", result
        [line] = result.err.splitlines()
        assert line.startswith("sonet-node: error: ") and expected in line, line
        assert not (tmp_path / "again").exists()

    # --force over the directory of a running node: refused before the target is touched
    target = new_database(cluster, "refusals_target")
    result = cli("sonet-node", "restore", "--data", pair.node.data, backup, "--database", target, "--force")
    assert result.rc == 1 and f"a sonet-node is running on {pair.node.data}" in result.err, result
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

    dump = backup / "database.dump"
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    dump.write_bytes(bytes(raw))
    result = cli("sonet-node", "restore", "--data", tmp_path / "restored", backup, "--database", target)
    assert result.rc == 1 and result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith("sonet-node: error: ") and "database.dump does not match its SHA-256" in line, line
    assert not (tmp_path / "restored").exists()
    with psycopg.connect(target) as conn:  # nothing was loaded
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
