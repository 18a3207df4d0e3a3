"""A device's state at rest (client/state.py, client/vault.py): nothing secret in clear on
disk, the passphrase mode, and values bound to the row they belong to."""

from __future__ import annotations

import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client.sdk import Device
from sonet.client.state import DeviceState, InboxMessage, StateError
from sonet.client.vault import PASSPHRASE_ENV
from sonet.core import canonical
from sonet.core.errors import DecryptError
from sonet.core.ratchet import SessionState
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, texts

Register = Callable[..., Awaitable[Device]]


def _home_bytes(home: Path) -> bytes:
    """Every byte of every file under ``home`` (state.db, its WAL, the vault files)."""
    files = [p for p in sorted(home.rglob("*")) if p.is_file()]
    assert any(p.name == "state.db" for p in files)
    return b"\0".join(p.read_bytes() for p in files)


def _signing_secrets(private_bytes: bytes) -> list[bytes]:
    """The encoding and each component seed of a SigningKey / HpkePrivateKey private key."""
    fields = canonical.loads(private_bytes)
    return [private_bytes] + [v for v in fields.values() if isinstance(v, bytes)]


def _session_secrets(record: bytes) -> list[bytes]:
    state = SessionState.from_bytes(record)
    secrets = [record, state.root_key, state.own_dh, state.own_kem, state.send_ck, state.recv_ck, state.epoch_key]
    return [s for s in secrets if s]


async def test_nothing_secret_is_stored_in_clear(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "the eagle lands at midnight")
        assert texts(bob, await bob.receive()) == [(ALICE, "the eagle lands at midnight")]
        await bob.send_text(ALICE, "bring the blue umbrella")
        assert texts(alice, await alice.receive()) == [(BOB, "bring the blue umbrella")]
        await alice.send_text(BOB, "unread: still only in the mailbox and the inbox table")
        await bob.receive()

        for device, peer in ((alice, BOB), (bob, ALICE)):
            profile = device.state.profile()
            on_disk = _home_bytes(device.state.home)
            for text in ("the eagle lands at midnight", "bring the blue umbrella", "unread: still only"):
                assert text.encode() not in on_disk
            secrets = (
                _signing_secrets(profile.identity.private_bytes())
                + _signing_secrets(profile.account_key.private_bytes())
                + _signing_secrets(profile.hpke.private_bytes())
                + [profile.identity_dh]
            )
            record = device.state.session(peer, 1)
            assert record is not None
            secrets += _session_secrets(record)
            for kind, key_id in device.state._db.execute("SELECT kind, key_id FROM prekeys").fetchall():
                secrets += _signing_secrets(device.state.prekey(kind, key_id))  # encoding and seed
            for secret in secrets:
                assert len(secret) >= 32 and secret not in on_disk


async def test_files_are_private_to_the_user(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        home = alice.state.home
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("state.db", "state.key", "vault.json"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


async def test_a_passphrase_protects_the_state(alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(HANG_S * 2):
        monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
        alice = await register(alpha, "alice")
        bob = await register(alpha, "bob", home="bob")
        home = alice.state.home
        assert not (home / "state.key").exists()  # the key exists only while derived
        assert b"correct horse" not in _home_bytes(home)
        fingerprint = alice.state.profile().identity.public.fingerprint
        await bob.send_text(ALICE, "for alice's eyes")
        alice.state.close()

        monkeypatch.delenv(PASSPHRASE_ENV)
        with pytest.raises(StateError, match=f"protected by a passphrase: set {PASSPHRASE_ENV}"):
            DeviceState(home)
        monkeypatch.setenv(PASSPHRASE_ENV, "incorrect horse")
        with pytest.raises(StateError, match="wrong passphrase"):
            DeviceState(home)

        monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
        state = alice.state = DeviceState(home)
        try:
            assert state.profile().identity.public.fingerprint == fingerprint
            assert texts(alice, await alice.receive()) == [(BOB, "for alice's eyes")]
        finally:
            state.close()


def test_a_missing_or_foreign_key_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    one, other = tmp_path / "one", tmp_path / "other"
    for home in (one, other):
        state = DeviceState(home)
        state.put("note", b"x")
        state.close()
    (one / "state.key").write_bytes((other / "state.key").read_bytes())
    with pytest.raises(StateError, match="wrong passphrase or key file"):
        DeviceState(one)
    (one / "state.key").unlink()
    with pytest.raises(StateError, match="state.key is missing"):
        DeviceState(one)
    with pytest.raises(StateError, match="no device state"):
        DeviceState(tmp_path / "nowhere", create=False)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    s = DeviceState(tmp_path / "home")
    yield s
    s.close()


def _raw(state: DeviceState, table: str, column: str, where: str, args: tuple) -> bytes:
    return state._db.execute(f"SELECT {column} FROM {table} WHERE {where}", args).fetchone()[0]


def _set(state: DeviceState, table: str, column: str, value: bytes, where: str, args: tuple) -> None:
    state._db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value, *args))


def test_a_value_moved_to_another_row_does_not_open(state: DeviceState) -> None:
    state.put("address", b"alice@alpha.example")
    state.put("node_url", b"ws://127.0.0.1:1")
    _set(state, "kv", "value", _raw(state, "kv", "value", "key = ?", ("address",)), "key = ?", ("node_url",))
    with pytest.raises(DecryptError):
        state.get("node_url")
    assert state.get("address") == b"alice@alpha.example"

    state.save_session(BOB, 1, b"session with bob")
    state.save_session(CAROL, 1, b"session with carol")
    state.save_session(BOB, 2, b"session with bob's second device")
    _set(state, "sessions", "record", _raw(state, "sessions", "record", "address = ? AND device = 1", (CAROL,)), "address = ? AND device = 1", (BOB,))
    _set(state, "sessions", "record", _raw(state, "sessions", "record", "address = ? AND device = 2", (BOB,)), "address = ? AND device = 1", (CAROL,))
    with pytest.raises(DecryptError):
        state.session(BOB, 1)
    with pytest.raises(DecryptError):
        state.session(CAROL, 1)

    state.save_prekey("x25519", 1, b"1" * 32, created=0, one_time=True)
    state.save_prekey("x25519", 2, b"2" * 32, created=0, one_time=True)
    _set(state, "prekeys", "secret", _raw(state, "prekeys", "secret", "key_id = 1", ()), "key_id = 2", ())
    with pytest.raises(DecryptError):
        state.prekey("x25519", 2)

    messages = [
        InboxMessage(id=bytes([i]) * 16, sender=BOB, peer=BOB, sent_at=1, received_at=2, type="text", fields={"text": f"m{i}"})
        for i in (1, 2)
    ]
    state.store_received(messages)
    _set(state, "inbox", "body", _raw(state, "inbox", "body", "id = ?", (messages[0].id,)), "id = ?", (messages[1].id,))
    with pytest.raises(DecryptError):
        state.unshown()


def test_a_modified_value_does_not_open(state: DeviceState) -> None:
    state.put("identity", b"secret key bytes")
    sealed = bytearray(_raw(state, "kv", "value", "key = ?", ("identity",)))
    assert b"secret key bytes" not in sealed
    sealed[-1] ^= 1
    _set(state, "kv", "value", bytes(sealed), "key = ?", ("identity",))
    with pytest.raises(DecryptError):
        state.get("identity")


def test_values_survive_reopening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    home = tmp_path / "home"
    state = DeviceState(home)
    state.put("k", b"v")
    state.save_session(BOB, 1, b"record")
    state.save_previous_sessions(BOB, 1, [b"older", b"oldest"])
    state.close()
    state = DeviceState(home, create=False)
    try:
        assert state.get("k") == b"v" and state.session(BOB, 1) == b"record"
        assert state.previous_sessions(BOB, 1) == [b"older", b"oldest"]
        state.drop_sessions(BOB, keep=set())
        assert state.session(BOB, 1) is None and state.previous_sessions(BOB, 1) == []
    finally:
        state.close()
