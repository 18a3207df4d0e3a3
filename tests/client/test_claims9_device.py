"""Claims of docs/security.md about the device that no test held:

- "Disappearing messages", on devices: "the device database runs with `secure_delete`, so
  freed pages are zeroed (the write-ahead log may hold sealed copies until its next
  checkpoint)". Nothing read the pragma or looked for a deleted row's bytes in the file.
- "What the node learns": "Envelopes other nodes push name none" (while they wait, too).
- "Calls": "Signals go to every device of the callee, not to the caller's other devices, and
  their envelopes expire after the ring time (60 s), so an offer does not wait on a node for
  days." The call tests checked one device each side and nothing of the envelopes' lifetime.
- "Key transparency": a changed node key is refused "until the user accepts it with `sonet
  trust-node`": the command itself (the flow: tests/client/test_claims9_trust_node.py).
- Attachments: the node holding a blob "learns which peer asked for which blob ... not who the
  recipient is": after bob@beta downloads alice's file, no row of alpha names bob.
- Attachments: "A saved file is the user's: deleting or expiring the message does not delete it."
- Deleted messages: "Delete for me sends nothing: the message is hidden on this device and its
  text erased there; the other devices keep it."
- "Local state": it said "nothing else deletes the history yet (disappearing messages: issue
  17)", which was stale: a conversation timer erases messages from it, as it now says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.core.call import CallTimeouts, start_call
from sonet.node.app import DB_FILE
from tests.metadata_scan import dump, values_naming
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, HANG_S, Clock, link_device, node_db, run_cli, shown, texts
from .loopback import Loopback
from .test_state_vault import state  # noqa: F401 - fixture

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")


# secure_delete -----------------------------------------------------------------------------


def _sealed_row(db: sqlite3.Connection, key: str) -> bytes:
    (value,) = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return bytes(value)


def _deleted_bytes_left(state: DeviceState, key: str) -> bool:
    """Store a sealed value of several pages under ``key``, delete it, checkpoint the WAL into
    the database: whether any 64-byte slice of the sealed bytes is still in the file."""
    state.put(key, bytes(range(256)) * 40)
    sealed = _sealed_row(state._db, key)
    state.delete(key)
    state._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    on_disk = (state.home / "state.db").read_bytes()
    return any(sealed[i : i + 64] in on_disk for i in range(0, len(sealed) - 64, 64))


def test_the_device_database_zeroes_what_it_deletes(state: DeviceState) -> None:  # noqa: F811
    assert state._db.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert not _deleted_bytes_left(state, "claims9/secret")
    # the control: the same without secure_delete leaves the sealed bytes in the free pages
    state._db.execute("PRAGMA secure_delete=OFF")
    assert _deleted_bytes_left(state, "claims9/kept")


def test_a_reopened_state_still_zeroes_what_it_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SONET_PASSPHRASE", raising=False)
    DeviceState(tmp_path / "home").close()
    again = DeviceState(tmp_path / "home")
    try:
        assert again._db.execute("PRAGMA secure_delete").fetchone() == (1,)
        assert not _deleted_bytes_left(again, "claims9/secret")
    finally:
        again.close()


# Call signals ------------------------------------------------------------------------------


def _rows(at: RunningNode) -> dict[tuple[str, int], list[int]]:
    """The expiry of every mailbox row, per (account, device)."""
    db = node_db(at)
    try:
        rows: dict[tuple[str, int], list[int]] = {}
        for account, device, expires in db.execute("SELECT account, device_id, expires FROM mailbox ORDER BY seq"):
            rows.setdefault((account, device), []).append(expires)
        return rows
    finally:
        db.close()


async def test_a_call_signal_goes_to_every_device_of_the_callee_only_and_expires_at_the_ring_time(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        alice2, bob2 = make_device("alice2"), make_device("bob2")
        await link_device(alice2, alice, alpha.url)
        await link_device(bob2, bob, alpha.url)
        for device in (alice, alice2, bob, bob2):  # everything of the set-up delivered and acknowledged
            await device.receive()
        before = _rows(alpha)
        assert all(not v for v in before.values())

        out = start_call(alice._rng(16), BOB, "v=0\r\ns=alice\r\n", now=clock())
        assert await alice.send_call_signal(BOB, out.send[0]) == 2
        ring = CallTimeouts().ring_ms
        assert ring == 60_000
        after = _rows(alpha)
        assert after == {(BOB, 1): [clock() + ring], (BOB, 2): [clock() + ring]}  # nothing for alice's devices
        assert not [m for m in (await alice2.receive()).messages if m.type == "call"]

        # bob's first device takes it; the second was not there in time: the node drops it at the ring time
        [(sender, kind, _fields)] = shown(bob, await bob.receive())
        assert (sender, kind) == (ALICE, "call")
        clock.advance(ring)
        while _rows(alpha).get((BOB, 2)):
            await trio.sleep(0.05)
        assert not [m for m in (await bob2.receive()).messages if m.type == "call"]


# What a node keeps of an envelope another node pushed --------------------------------------


async def test_an_envelope_another_node_pushed_names_no_sender_while_it_waits(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    # "Envelopes other nodes push name none" (What the node learns): not only once delivered
    # (tests/client/test_metadata.py) but while the envelope waits in the recipient's mailbox.
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        await alice.send_text(f"bob@{BETA}", "waiting on beta")
        assert await loopback.flush() == {BETA: ["ok"]}
        db = node_db(beta)
        try:
            rows = db.execute("SELECT sender_account, sender_device FROM mailbox WHERE account = ?", (f"bob@{BETA}",)).fetchall()
        finally:
            db.close()
        assert rows and all(row == (None, None) for row in rows), rows
        profile = alice.state.profile()
        found = values_naming(beta.data_dir / DB_FILE, [profile.address, profile.identity.public.fingerprint])
        assert found == [], f"beta names alice while the envelope waits: {found}\n{dump(beta.data_dir / DB_FILE)}"
        assert texts(bob, await bob.receive()) == [(ALICE, "waiting on beta")]


# sonet trust-node ----------------------------------------------------------------------------


async def test_sonet_trust_node_forgets_the_pinned_key_and_only_a_pinned_one(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        old, new = b"old key of beta", b"new key of beta"
        assert alice.state.pin_node_key(BETA, old, 1) == old
        assert alice.state.pin_node_key(BETA, new, 2) == old  # pinned: another key does not replace it
        rc, out = await run_cli(capsys, alice, "trust-node", BETA)
        assert (rc, out) == (0, [{"node": BETA, "forgotten": True}])
        assert alice.state.pin_node_key(BETA, new, 3) == new  # the next one is pinned instead
        assert alice.state.forget_node_key(BETA)
        rc, out = await run_cli(capsys, alice, "trust-node", BETA)
        assert rc == 1 and [o["error"]["code"] for o in out] == ["unknown_node_key"], out


# "a conversation's timer erases a timed message from it" (the history) ----------------------


async def test_a_timer_erases_a_timed_message_from_the_history_when_next_opened(alpha: RunningNode, register: Register, clock: Clock) -> None:
    from .test_timer import FIVE_S, history_ids

    with trio.fail_after(HANG_S):
        alice, _bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.set_timer(BOB, FIVE_S)
        sent = await alice.send_text(BOB, "gone in five seconds")
        assert sent.id in history_ids(alice, BOB)
        clock.advance(FIVE_S)
        Device(alice.state, clock=clock)  # what every command does first
        assert sent.id not in history_ids(alice, BOB)


# What the node holding an attachment learns of who downloads it ------------------------------


async def test_the_node_holding_a_blob_learns_the_asking_peer_not_the_recipient(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, tmp_path: Path, clock: Clock
) -> None:
    # Attachments: "that node (and every relay on the way) learns which peer asked for which blob,
    # its size and when, not who the recipient is"
    from sonet.core.blob_api import BLOB_CHUNK_BYTES

    from .test_attachments import a_file

    with trio.fail_after(HANG_S * 2):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        path, data = a_file(tmp_path, "minutes.txt", BLOB_CHUNK_BYTES + 10)
        sent = await alice.send_file(f"bob@{BETA}", path, "from the meeting")
        await loopback.flush()
        await bob.receive()
        await loopback.flush()  # bob's receipts
        out = tmp_path / "bob"
        out.mkdir()
        assert Path(await bob.download(sent.id, out)).read_bytes() == data
        await loopback.flush()
        clock.advance(1000)
        await alice.receive()
        await alpha.settle()
        db = alpha.data_dir / DB_FILE
        profile = bob.state.profile()
        found = values_naming(db, [profile.address, profile.identity.public.fingerprint])
        assert found == [], f"alpha names bob: {found}\n{dump(db)}"
        # what alpha was asked: by beta, for the blob, from an offset; nothing of bob in it
        asked = [c for c in loopback.calls if c[1] == "BlobGet"]
        assert asked and all(c == ("beta.example", "BlobGet", "alpha.example") for c in asked)


async def test_a_saved_file_stays_when_its_message_is_deleted_or_expires(
    alpha: RunningNode, register: Register, tmp_path: Path, clock: Clock
) -> None:
    # Attachments, on devices: "A saved file is the user's: deleting or expiring the message does not delete it."
    from .test_attachments import a_file
    from .test_timer import FIVE_S, history_ids

    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        out = tmp_path / "bob-saved"
        out.mkdir()
        path, data = a_file(tmp_path, "plan.pdf", 5000)
        deleted = await alice.send_file(BOB, path, "the plan")
        await bob.receive()
        saved = Path(await bob.download(deleted.id, out))
        await alice.delete(deleted.id, everyone=True)
        await bob.receive()
        from sonet.client.history import History

        [placeholder] = [i for i in History(bob.state).messages(ALICE) if i.id == deleted.id]
        assert placeholder.deleted  # the delete reached bob's device
        assert saved.read_bytes() == data

        await alice.set_timer(BOB, FIVE_S)
        path2, data2 = a_file(tmp_path, "route.gpx", 7000)
        timed = await alice.send_file(BOB, path2)
        await bob.receive()
        saved2 = Path(await bob.download(timed.id, out))
        clock.advance(FIVE_S)
        await bob.receive()  # a receive erases what is due first
        assert timed.id not in history_ids(bob, ALICE)
        assert saved2.read_bytes() == data2 and saved.read_bytes() == data


async def test_delete_for_me_sends_nothing_erases_the_text_here_and_the_other_devices_keep_it(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    # Deleted messages: "Delete for me sends nothing: the message is hidden on this device and its
    # text erased there; the other devices keep it." (test_gestures checks the hiding only)
    from sonet.client.history import History

    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        await alice.receive()
        sent = await alice.send_text(BOB, "only bob's laptop forgets this")
        for device in (bob, bob2, alice):
            await device.receive()
        before = _rows(alpha)
        pushed: list[object] = []
        original = alpha.node.registry.push_ephemeral

        def push(key, env, original=original):  # noqa: ANN001, ANN202
            pushed.append((key, env))
            original(key, env)

        alpha.node.registry.push_ephemeral = push  # type: ignore[method-assign]
        result = await bob.delete(sent.id)
        assert result.state == "deleted_here"
        assert _rows(alpha) == before and pushed == []  # nothing sent, stored or pushed
        assert [i.id for i in History(bob.state).messages(ALICE)] == []
        found = bob.state.find_message(sent.id, ALICE)
        assert found is not None and bob.state.message_text(found) == {}  # the row stays, its text is erased here
        for device in (bob2, alice):
            await device.receive()
        [kept] = [i for i in History(bob2.state).messages(ALICE) if i.id == sent.id]
        assert (kept.text, kept.deleted) == ("only bob's laptop forgets this", False)
        [theirs] = [i for i in History(alice.state).messages(BOB) if i.id == sent.id]
        assert not theirs.deleted
