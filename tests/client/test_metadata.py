"""What the nodes keep about who talks to whom: after a cross-node conversation (texts, the
automatic delivery receipts, read receipts, a reply and its receipts) no table of either node
names the other side's user, neither by address nor by device fingerprint
(tests/metadata_scan.py), while the senders still learn where their messages are."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest
import trio

from sonet.client.sdk import Device
from sonet.node.app import DB_FILE
from tests.metadata_scan import dump, values_naming
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, HANG_S, Clock, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (tests/conftest.py)
from .loopback import Loopback

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"


def names(device: Device) -> list[str]:
    """What would name this device's user: its address and its device's key fingerprint."""
    profile = device.state.profile()
    return [profile.address, profile.identity.public.fingerprint]


async def test_after_a_cross_node_conversation_no_row_on_the_recipients_node_names_the_sender(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        for text in ("hello bob", "are you there?"):
            await alice.send_text(BOB_B, text)
        assert await loopback.flush() == {BETA: ["ok", "ok"]}
        assert texts(bob, await bob.receive(read_receipts=True)) == [(ALICE, "hello bob"), (ALICE, "are you there?")]
        await bob.send_text(ALICE, "hi alice")
        await loopback.flush()  # bob's delivery and read receipts, and his reply
        clock.advance(1000)
        assert texts(alice, await alice.receive(read_receipts=True)) == [(BOB_B, "hi alice")]
        await loopback.flush()  # alice's receipts for the reply
        clock.advance(1000)
        await bob.receive()
        # the senders still learn where their messages got to
        assert [m.state for m in await alice.sent()] == ["read", "read"]
        assert [m.state for m in await bob.sent()] == ["read"]
        await alpha.settle()
        await beta.settle()

        for node, other in ((beta, alice), (alpha, bob)):
            db = node.data_dir / DB_FILE
            found = values_naming(db, names(other))
            assert found == [], f"{node.config.name} names {other.state.profile().address}: {found}\n{dump(db)}"


def test_the_scan_finds_a_name_in_any_column_as_text_or_inside_bytes(tmp_path: Path) -> None:
    db = tmp_path / "some.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE a (x TEXT, y BLOB, z INTEGER)")
        conn.execute("CREATE TABLE b (k BLOB PRIMARY KEY) WITHOUT ROWID")
        conn.execute("INSERT INTO a VALUES ('Alice@Alpha.Example', x'00', 1), ('nobody', x'01', 2)")
        conn.execute("INSERT INTO b VALUES (?)", (b"\x00\x01alice@alpha.example\xff",))
        conn.execute("INSERT INTO b VALUES (?)", (b"ABCDEF0123",))
    found = values_naming(db, [ALICE, "abcdef0123"])
    assert [(table, column) for table, column, _ in found] == [("a", "x"), ("b", "k"), ("b", "k")]
    assert values_naming(db, ["carol@alpha.example"]) == []
