"""Several ``sonet-node run`` processes serving one node from one PostgreSQL database (issue 18
item 2; node/cluster.py), with real processes on loopback and a throwaway PostgreSQL cluster.

Node alpha is three processes on one data directory and one database, each on its own
``--listen`` port; node beta is one process on SQLite. alice's device uses alpha#1, bob's
alpha#3: messages between them cross processes (stored by one, delivered by another, woken by
NOTIFY). beta's outbox lease is held by alpha#2 (it started first and queued the first item for
beta); alice sends 200 messages to carol@beta and alpha#2 is SIGKILLed after 60: another
process takes the lease over once it expires, and all 200 arrive exactly once, in order; every
send ends "delivered" (carol's receipts come back through alpha#1, which beta dials then).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ..node.store.pg_cluster import running_cluster
from .conftest import NodeProcess, Processes, init_node, node_here, ok, read_json_lines, read_texts, register, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]

#: hang guard while polling for a condition (never a performance threshold)
POLL_GUARD_S = 120.0
#: short retry cap and request deadline, so the test does not wait out production back-offs
FEDERATION_CONFIG = "\n[federation]\nretry_max_s = 1.0\nrequest_timeout_s = 3.0\n"
MESSAGES = 200
KILL_AT = 60


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with running_cluster("the multi-process test") as cluster:
        yield cluster.new_database()


def peer(data: Path, other: NodeProcess) -> None:
    ok(node_here("peer", "add", "--data", data, "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint))


def receive_texts(home: Path, count: int, tag: str) -> list[str]:
    """Texts starting with ``tag`` received until ``count`` arrived (or the hang guard ran
    out), then one more look: a duplicate would show there."""
    texts: list[str] = []
    deadline = time.monotonic() + POLL_GUARD_S
    while len(texts) < count and time.monotonic() < deadline:
        texts += [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--wait", "5", "--json")).out)]
    texts += [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--json")).out)]
    return [t for t in texts if t.startswith(tag)]


def lease_holder(url: str, dest: str) -> int | None:
    """The pid of the process holding ``dest``'s outbox lease (holder is host/pid/random)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT holder FROM sonet_outbox_leases WHERE destination = %s AND expires_at > clock_timestamp()", (dest,)
        ).fetchone()
    return None if row is None else int(row[0].split("/")[1])


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + POLL_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.2)


def test_three_processes_one_node_and_a_sigkilled_outbox_holder(procs: Processes, tmp_path: Path, database: str) -> None:
    alpha_dir, beta_dir = tmp_path / "alpha", tmp_path / "beta"
    ok(node_here("init", "--data", alpha_dir, "--name", "alpha", "--listen", "127.0.0.1:0", "--database", database))
    init_node(beta_dir, name="beta")
    for data in (alpha_dir, beta_dir):
        with open(data / "node.toml", "a") as f:
            f.write(FEDERATION_CONFIG)

    # alpha#2 first, alone: the first item for beta is queued while it is the only process
    alpha2 = procs.start_node_on_free_port(alpha_dir)
    beta = procs.start_node(beta_dir)
    peer(alpha_dir, beta)
    peer(beta_dir, alpha2)
    dave, carol = tmp_path / "dave", tmp_path / "carol"
    register(dave, "dave@alpha", alpha2)
    register(carol, "carol@beta", beta)
    ok(sonet_here(dave, "send", "carol@beta", "first dave"))
    assert receive_texts(carol, 1, "first") == ["first dave"]
    assert lease_holder(database, "beta") == alpha2.pid

    # a second process on the same listen address is refused in one line
    clash = node_here("run", "--data", alpha_dir, "--listen", alpha2.url.removeprefix("ws://"))
    assert clash.rc == 1 and "already running" in clash.err and "--listen" in clash.err, clash

    alpha1 = procs.start_node_on_free_port(alpha_dir)
    alpha3 = procs.start_node_on_free_port(alpha_dir)
    assert alpha1.fingerprint == alpha2.fingerprint == alpha3.fingerprint  # one node
    # from now on beta dials alpha at alpha#1 (any process serves the node; as a balancer would)
    ok(node_here("peer", "remove", "--data", beta_dir, "--name", "alpha"))
    peer(beta_dir, alpha1)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha1)
    register(bob, "bob@alpha", alpha3)
    # each process writes its own runtime file
    assert len(list(alpha_dir.glob("run-*.json"))) == 3 and not (alpha_dir / "run.json").exists()

    # alice (alpha#1) and bob (alpha#3): stored by one process, delivered by the other
    ok(sonet_here(alice, "send", "bob@alpha", "local hello bob"))
    assert receive_texts(bob, 1, "local") == ["local hello bob"]
    ok(sonet_here(bob, "send", "alice@alpha", "local hello alice"))
    assert receive_texts(alice, 1, "local") == ["local hello alice"]
    # and a reply from beta (dialled at alpha#2) reaches alice on alpha#1
    ok(sonet_here(alice, "send", "carol@beta", "warm-up alice"))
    assert receive_texts(carol, 1, "warm-up") == ["warm-up alice"]
    ok(sonet_here(carol, "send", "alice@alpha", "warm-up carol"))
    assert receive_texts(alice, 1, "warm-up") == ["warm-up carol"]

    # 200 messages to carol; beta's outbox holder is SIGKILLed after 60
    assert lease_holder(database, "beta") == alpha2.pid
    texts = [f"flow #{i:03d}" for i in range(MESSAGES)]
    refused = []
    for i, text in enumerate(texts):
        if i == KILL_AT:
            alpha2.kill()
        sent = sonet_here(alice, "send", "carol@beta", text)
        if sent.rc != 0:
            refused.append((text, sent))
    assert refused == []  # alice's process was up the whole time
    assert receive_texts(carol, MESSAGES, "flow") == texts  # each exactly once, in order
    # every send settled as taken by beta (none failed, none left pending), and carol's
    # delivery receipts came back through alpha#1
    def states() -> list[str]:
        sent = read_json_lines(ok(sonet_here(alice, "sent", "--json", "--limit", "1000")).out)
        return [m["state"] for m in sent if m["to"] == "carol@beta"]

    wait_for(lambda: states().count("delivered") == MESSAGES + 1, "delivery receipts of every message")
    # the lease moved to a live process of alpha
    wait_for(lambda: lease_holder(database, "beta") in (alpha1.pid, alpha3.pid), "beta's lease taken over")
    assert alpha1.alive() and alpha3.alive() and beta.alive()
    for node in (alpha1, alpha3, beta):
        assert "Traceback" not in node.stderr(), node.stderr()
