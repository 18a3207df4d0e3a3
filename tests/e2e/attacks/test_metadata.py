"""What two real nodes keep about who talks to whom (issue 13, item 6), against real
``sonet-node`` processes: alpha and beta on loopback, alice@alpha and bob@beta talking with
the real CLI (texts, automatic delivery receipts, read receipts, a reply and its receipts).

Measured before: bob's automatic delivery receipt left a row on beta naming alice and bob for
37 days; envelope sizes grew by one byte per character; acknowledged ids kept each arrival to
the millisecond. Now, once the outboxes have drained, no value in any table of beta's database
names alice (address or device fingerprint), none of alpha's names bob, two texts of different
lengths are stored in envelopes of one size, and acknowledged ids keep whole days only. The
figures (rows per table, envelope sizes) are printed.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from sonet.client.state import DeviceState
from sonet.node.app import DB_FILE
from tests.metadata_scan import dump, values_naming

from ..conftest import NodeProcess, Processes, init_node, node_here, ok, read_json_lines, read_texts, register, set_listen, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: hang guard while polling for a condition (never a performance threshold)
POLL_GUARD_S = 30.0
#: short retry cap and request deadline, so the test does not wait out production back-offs
FEDERATION_CONFIG = "\n[federation]\nretry_max_s = 0.5\nrequest_timeout_s = 2.0\n"
DAY_MS = 24 * 3600 * 1000
SHORT, LONG = "hi", "hello bob, this one is quite a bit longer"


def _start(procs: Processes, root: Path, name: str) -> NodeProcess:
    data = root / name
    init_node(data, name=name)
    with open(data / "node.toml", "a") as f:
        f.write(FEDERATION_CONFIG)
    node = procs.start_node(data)
    set_listen(data, f"127.0.0.1:{node.port}")
    return node


def _peer(node: NodeProcess, other: NodeProcess) -> None:
    ok(node_here("peer", "add", "--data", node.data, "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint))


def _query(node: NodeProcess, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{node.data / DB_FILE}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def _until(what: str, check) -> None:  # noqa: ANN001 - a condition
    deadline = time.monotonic() + POLL_GUARD_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.1)


def _texts(home: Path, count: int) -> list[str]:
    texts: list[str] = []
    deadline = time.monotonic() + POLL_GUARD_S
    while len(texts) < count and time.monotonic() < deadline:
        texts += [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--wait", "5", "--read", "--json")).out)]
    return texts


def _states(home: Path) -> list[str]:
    return [m["state"] for m in read_json_lines(ok(sonet_here(home, "sent", "--json")).out)]


def _names(home: Path) -> list[str]:
    profile = DeviceState(home, create=False).profile()
    return [profile.address, profile.identity.public.fingerprint]


def test_after_a_conversation_between_two_real_nodes_neither_names_the_other_side(procs: Processes, tmp_path: Path) -> None:
    alpha, beta = _start(procs, tmp_path, "alpha"), _start(procs, tmp_path, "beta")
    _peer(alpha, beta)
    _peer(beta, alpha)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)

    for text in (SHORT, LONG):
        ok(sonet_here(alice, "send", "bob@beta", text))
    _until("both texts in bob's mailbox on beta", lambda: len(_query(beta, "SELECT size FROM mailbox")) == 2)
    sizes = [size for (size,) in _query(beta, "SELECT size FROM mailbox ORDER BY seq")]
    print(f"envelope sizes on beta for texts of {len(SHORT)} and {len(LONG)} characters: {sizes}")
    assert sizes[0] == sizes[1]

    assert _texts(bob, 2) == [SHORT, LONG]  # with read receipts
    ok(sonet_here(bob, "send", "alice@alpha", "hi alice"))
    assert _texts(alice, 1) == ["hi alice"]
    _until("alice's texts read", lambda: _states(alice) == ["read", "read"])
    _until("bob's reply read", lambda: _states(bob) == ["read"])  # (`sent` receives first)
    for node in (alpha, beta):
        _until(f"{node.name}'s outbox drained", lambda node=node: _query(node, "SELECT count(*) FROM outbox_batches") == [(0,)])
        _until(f"{node.name}'s mailboxes acknowledged", lambda node=node: _query(node, "SELECT count(*) FROM mailbox") == [(0,)])

    for node, other in ((beta, alice), (alpha, bob)):
        db = node.data / DB_FILE
        rows = {table: len(values) for table, values in dump(db).items() if values}
        print(f"{node.name}: rows per table after the conversation: {rows}")
        found = values_naming(db, _names(other))
        assert found == [], f"{node.name} names {other.name}: {found}"
        acked = [at for (at,) in _query(node, "SELECT expires FROM acked_ids")]
        assert acked and all(at % DAY_MS == 0 for at in acked), acked
    assert alpha.alive() and beta.alive()
