"""client/monitor.py against a scripted home-node directory (tests/client/fake_directory.py):
what a device says about changes to its own account's entries."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sonet.client.connection import NodeError
from sonet.client.directory import AccountView
from sonet.client import monitor
from sonet.client.monitor import APPROVED_DEVICE, APPROVED_VERSION, check_own_account, start_audit
from sonet.client.state import ALERT, NOTICE, DeviceState, Profile
from sonet.core.client_api import DeviceEntry, FetchLeaves
from sonet.core import limits
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, SigningKey
from sonet.core.device import make_device_record
from sonet.core.device_list import sign_device_list
from sonet.core.errors import ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import decode_entry

from .fake_directory import T0, FakeConnection, FakeLog, PaddedTree, new_key

ALPHA = "alpha.example"
ALICE = f"alice@{ALPHA}"
POLICY = CryptoPolicy(minimum=CryptoMode.CLASSICAL)


class _Alice:
    """alice's account on the fake alpha: an account key and devices 1.. with their records."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.key = new_key()
        self.devices: list[SigningKey] = []
        self.hpke: list[HpkePrivateKey] = []
        self.version = 0

    def add_device(self) -> str:
        self.devices.append(new_key())
        self.hpke.append(HpkePrivateKey.generate(CryptoMode.CLASSICAL, os.urandom))
        return self.fp(len(self.devices))

    def fp(self, device: int) -> str:
        return self.devices[device - 1].public.fingerprint

    def publish(
        self, devices: tuple[int, ...], *, version: int | None = None, key: SigningKey | None = None, prev: int | None = None,
        list_key: SigningKey | None = None,
    ) -> int:
        """A leaf listing ``devices`` (ids); the served records are those devices'."""
        self.version = version if version is not None else self.version + 1
        self.log.records[ALICE] = tuple(
            DeviceEntry(device=d, record=make_device_record(account=ALICE, identity=self.devices[d - 1], hpke=self.hpke[d - 1].public, created=T0))
            for d in devices
        )
        fps = tuple(self.fp(d) for d in devices)
        return self.log.append(ALICE, key or self.key, devices=fps, version=self.version, prev=prev, list_key=list_key)

    def profile(self, device: int) -> Profile:
        return Profile(
            address=ALICE, device_id=device, node_url="ws://127.0.0.1:1", node_fingerprint="x", mode=CryptoMode.CLASSICAL,
            identity=self.devices[device - 1], identity_dh=None, hpke=self.hpke[device - 1], account_key=self.key,
        )


class _Told:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], str]] = []
        self.fail: Exception | None = None

    async def __call__(self, conn: object, view: AccountView, text: str) -> None:
        if self.fail:
            raise self.fail
        self.calls.append((sorted(view.devices), text))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DeviceState]:
    s = DeviceState(tmp_path / "device")
    yield s
    s.close()


@pytest.fixture
def alice() -> _Alice:
    a = _Alice(FakeLog(ALPHA))
    a.add_device()
    a.log.filler()
    a.publish((1,))
    return a


async def _check(state: DeviceState, alice: _Alice, told: _Told, device: int = 1) -> FakeConnection:
    conn = FakeConnection(alice.log)
    await check_own_account(conn, state, alice.profile(device), policy=POLICY, now=T0 + 7, tell=told, tries=1)
    return conn


def _seen(state: DeviceState) -> list[tuple[str, str]]:
    return [(a.kind, a.text) for a in state.alerts()]


async def test_without_a_start_the_first_check_is_the_baseline_and_nothing_new_says_nothing(state: DeviceState, alice: _Alice) -> None:
    """A device registered before starts were noted (no ``start_audit``) cannot tell what came
    before its first check: that check only sets the baseline."""
    told = _Told()
    alice.add_device()
    alice.publish((1, 2))  # already there before this device ever checked: the baseline
    conn = await _check(state, alice, told)
    assert _seen(state) == [] and told.calls == [] and conn.asked(FetchLeaves) == []
    conn = await _check(state, alice, told)  # the log did not grow: nothing to read
    assert _seen(state) == [] and conn.asked(FetchLeaves) == []


async def test_a_device_nobody_here_approved_is_an_alert_told_to_the_other_devices(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    alice.add_device()
    alice.publish((1, 2))
    await _check(state, alice, told)
    fp = alice.add_device()
    alice.publish((1, 2, 3))
    await _check(state, alice, told)
    text = f"device 3 (fingerprint {fp}) was added to your account"
    assert _seen(state) == [(ALERT, text)]
    assert told.calls == [([2, 3], text)]  # every other device in the list (the new one too)
    await _check(state, alice, told)  # checked already: said once
    assert len(state.alerts()) == 1 and len(told.calls) == 1


async def test_devices_this_device_added_or_approved_and_removals_are_notices(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    await _check(state, alice, told)
    state.approve(APPROVED_VERSION, "2")  # `link approve` while the list was version 1
    alice.add_device()
    alice.publish((1, 2))
    fp = alice.add_device()
    state.approve(APPROVED_DEVICE, fp)
    alice.publish((1, 2, 3))
    alice.publish((1, 3))
    conn = await _check(state, alice, told)
    assert [(f.start, f.end) for f in conn.asked(FetchLeaves)] == [(2, 5)]  # every leaf since the audited size 2
    assert _seen(state) == [
        (NOTICE, f"a device (fingerprint {alice.fp(2)}) was added (approved on this device)"),
        (NOTICE, "device 3 was added (approved on this device)"),
        (NOTICE, f"a device (fingerprint {alice.fp(2)}) was removed from your account"),
    ]
    assert told.calls == []


async def test_an_approved_version_covers_one_added_device_only(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    await _check(state, alice, told)
    state.approve(APPROVED_VERSION, "2")
    alice.add_device(), alice.add_device()
    alice.publish((1, 2, 3))
    await _check(state, alice, told)
    assert [kind for kind, _ in _seen(state)] == [ALERT, ALERT]


async def test_an_identity_key_swapped_by_the_node_is_an_alert_told_to_the_real_devices(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    alice.add_device()
    alice.publish((1, 2))
    await _check(state, alice, told)
    rogue = new_key()
    alice.add_device()
    alice.publish((1, 2, 3), key=rogue)  # the node's own key, listing a device of its own
    await _check(state, alice, told)
    [(kind, text)] = _seen(state)
    assert kind == ALERT and f"not its own (fingerprint {rogue.public.fingerprint}" in text and "impersonating" in text
    assert told.calls == [([2], text)]  # only devices of the list the account key signed
    # the next list signed by the account key is compared with the last trusted one
    alice.publish((1, 2), version=2)
    await _check(state, alice, told)
    assert len(state.alerts()) == 1


async def test_a_failure_to_tell_the_other_devices_is_a_notice(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    alice.add_device()
    alice.publish((1, 2))
    await _check(state, alice, told)
    told.fail = NodeError("unavailable", "try later")
    alice.add_device()
    alice.publish((1, 2, 3))
    await _check(state, alice, told)
    assert [kind for kind, _ in _seen(state)] == [ALERT, NOTICE]
    assert "could not tell your other devices" in state.alerts()[1].text


async def test_a_check_whose_proof_fails_raises_and_records_nothing(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    await _check(state, alice, told)
    alice.log.key = new_key()  # heads signed by a key that is not the node's
    conn = FakeConnection(alice.log)
    conn.node_key = FakeLog(ALPHA).key.public
    with pytest.raises(ProtocolError):
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert _seen(state) == []


@pytest.mark.parametrize("how", ["off_chain", "hidden_newer", "rollback", "unsigned"])
async def test_a_leaf_the_account_did_not_make_is_found_wherever_it_sits_in_the_log(state: DeviceState, alice: _Alice, how: str) -> None:
    """Every leaf since the audited size is read: a rogue entry is found whether or not the
    account's ``prev`` chain leads to it and whether or not the node serves it to this device."""
    told = _Told()
    alice.add_device()
    checked = alice.publish((1, 2))
    await _check(state, alice, told)
    conn = FakeConnection(alice.log)
    if how == "off_chain":  # a rogue entry on no chain, then a genuine one chained past it
        alice.log.append(ALICE, new_key(), prev=-1)
        alice.log.filler()
        alice.publish((1, 2), prev=checked)
        expected = "impersonating"
    elif how == "hidden_newer":  # a rogue entry after the one the node keeps serving this device
        alice.log.append(ALICE, new_key(), prev=checked)
        conn.devices_answers.append(alice.log.devices(ALICE, index=checked))
        expected = "impersonating"
    elif how == "rollback":
        alice.publish((1,), version=1)
        expected = "goes back"
    else:  # the account's identity key, but a list someone else signed
        alice.publish((1, 2), list_key=new_key())
        expected = "did not sign"
    await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    [(kind, text)] = _seen(state)
    assert kind == ALERT and expected in text, text
    # told to device 2 (unless the node serves only device 1's record, as with the old list)
    assert told.calls == ([] if how == "rollback" else [([2], text)])
    assert [(f.start, f.end) for f in conn.asked(FetchLeaves)] == [(checked + 1, alice.log.size)]


def _flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 1
    return bytes(b)


_ROGUE = FakeLog(ALPHA)
_ROGUE.append(ALICE, new_key())

_TAMPER = {
    "leaf": lambda a: replace(a, leaves=(a.leaves[0], _flip(a.leaves[1]), *a.leaves[2:])),
    "swapped": lambda a: replace(a, leaves=a.leaves[::-1]),
    "skipped": lambda a: replace(a, leaves=a.leaves[:1] + a.leaves[2:]) if len(a.leaves) > 1 else a,
    "substituted": lambda a: replace(a, leaves=(_ROGUE.leaves[0], *a.leaves[1:])),
    "frontier": lambda a: replace(a, frontier=tuple(_flip(h) for h in a.frontier)),
    "frontier_length": lambda a: replace(a, frontier=(*a.frontier, bytes(32))),
}


@pytest.mark.parametrize("how", sorted(_TAMPER))
async def test_leaves_that_do_not_make_the_signed_heads_are_refused_and_nothing_in_them_is_believed(
    state: DeviceState, alice: _Alice, how: str
) -> None:
    told = _Told()
    await _check(state, alice, told)  # audited up to size 2
    alice.log.filler(3)
    conn = FakeConnection(alice.log)
    conn.tamper_leaves = _TAMPER[how]
    with pytest.raises(VerifyError) as caught:
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert caught.value.code == "bad_leaves"
    # only the lie itself is an alert (a rogue entry among unproven leaves is not believed)
    [(kind, text)] = _seen(state)
    assert kind == ALERT and text.startswith(f"{ALPHA} served key-directory leaves that its signed heads do not cover"), text
    # nothing was taken as audited: an honest answer next time is read from the same place
    conn = await _check(state, alice, told)
    assert [(f.start, f.end) for f in conn.asked(FetchLeaves)] == [(2, 5)] and len(state.alerts()) == 1


@pytest.mark.parametrize("how", ["empty", "wrong_start", "too_many"])
async def test_a_leaves_answer_that_is_not_what_was_asked_is_a_protocol_error(state: DeviceState, alice: _Alice, how: str) -> None:
    told = _Told()
    await _check(state, alice, told)
    alice.log.filler(2)
    conn = FakeConnection(alice.log)
    conn.tamper_leaves = {
        "empty": lambda a: replace(a, leaves=()),
        "wrong_start": lambda a: replace(a, start=a.start + 1),
        "too_many": lambda a: replace(a, leaves=(*a.leaves, a.leaves[0])),
    }[how]
    with pytest.raises(RemoteProtocolError, match="did not answer with leaves 2..3"):
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert _seen(state) == []


async def test_the_audit_reads_page_by_page_and_goes_on_where_the_node_stopped(
    state: DeviceState, alice: _Alice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_LEAVES_PER_FETCH", 4)
    told = _Told()
    await _check(state, alice, told)  # audited up to size 2
    alice.log.filler(7)
    rogue = alice.log.append(ALICE, new_key())
    alice.log.filler(2)
    conn = FakeConnection(alice.log)
    conn.leaves_page = 3  # fewer than asked
    await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert [(f.start, f.end) for f in conn.asked(FetchLeaves)] == [(2, 6), (5, 9), (8, 12), (11, 12)]
    [(kind, text)] = _seen(state)
    assert kind == ALERT and f"leaf {rogue}" in text and "impersonating" in text
    conn = await _check(state, alice, told)  # all of it audited
    assert conn.asked(FetchLeaves) == [] and len(state.alerts()) == 1


async def test_a_malformed_leaf_is_a_notice_and_the_audit_goes_on(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    await _check(state, alice, told)
    alice.log.leaves.append(b"\xa0")  # a CBOR map, but no directory entry
    alice.log.accounts.append("nobody")
    fp = alice.add_device()
    alice.publish((1, 2))
    await _check(state, alice, told)
    [(kind, text), added] = _seen(state)
    assert kind == NOTICE and text.startswith(f"leaf 2 of the key directory of {ALPHA} is malformed ("), text
    assert added == (ALERT, f"device 2 (fingerprint {fp}) was added to your account")


async def test_an_older_own_entry_than_one_accepted_is_refused(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    first = alice.log.latest(ALICE)
    await _check(state, alice, told)
    alice.publish((1,))
    await _check(state, alice, told)
    conn = FakeConnection(alice.log)
    conn.devices_answers.append(alice.log.devices(ALICE, index=first))
    with pytest.raises(VerifyError) as caught:
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert caught.value.code == "stale_entry" and "an older entry of" in str(caught.value)


# The first audit from the leaf the device joined with --------------------------------------


async def _start(state: DeviceState, alice: _Alice, device: int = 1, device_list: bytes | None = None) -> int:
    """``start_audit`` as register / link completion call it; the start leaf's index."""
    index = alice.log.latest(ALICE)
    joined = device_list if device_list is not None else decode_entry(alice.log.leaves[index]).device_list
    await start_audit(FakeConnection(alice.log), state, alice.profile(device), joined)
    return index


async def test_a_rogue_leaf_right_after_the_device_joined_is_found_by_its_first_audit(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    joined = await _start(state, alice)
    rogue = new_key()
    alice.log.append(ALICE, rogue, prev=-1)  # appended before this device checked anything
    alice.log.filler()
    conn = await _check(state, alice, told)
    assert [(f.start, f.end) for f in conn.asked(FetchLeaves)] == [(joined, alice.log.size)]  # from the start leaf on
    [(kind, text)] = _seen(state)
    assert kind == ALERT and f"not its own (fingerprint {rogue.public.fingerprint}, leaf {joined + 1})" in text
    conn = await _check(state, alice, told)  # audited now: nothing read again, said once
    assert conn.asked(FetchLeaves) == [] and len(state.alerts()) == 1


async def test_after_a_clean_start_the_next_changes_are_compared_with_the_list_the_device_joined_with(state: DeviceState, alice: _Alice) -> None:
    told = _Told()
    await _start(state, alice)
    fp = alice.add_device()
    alice.publish((1, 2))
    await _check(state, alice, told)
    assert _seen(state) == [(ALERT, f"device 2 (fingerprint {fp}) was added to your account")]


@pytest.mark.parametrize("how", ["other_list", "malformed"])
async def test_a_start_leaf_that_is_not_what_the_device_joined_with_is_an_alert(state: DeviceState, alice: _Alice, how: str) -> None:
    told = _Told()
    if how == "other_list":  # the node logged another list than the one this device signed
        signed = sign_device_list(alice.key, account=ALICE, version=1, devices={alice.fp(1), new_key().public.fingerprint}, now=T0)
        joined = await _start(state, alice, device_list=signed)
    else:  # the start the node proved, then a junk leaf in its place in the log the heads cover
        joined = await _start(state, alice)
        alice.log.leaves[joined] = b"\xa0"
        alice.publish((1,), version=1)
    await _check(state, alice, told)
    texts = [text for kind, text in _seen(state) if kind == ALERT]
    assert f"leaf {joined} of the key directory of {ALPHA} is not the entry this device joined your account with" in texts[0], texts


# Bounded and resumable ---------------------------------------------------------------------


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 3 leaves, 6 leaves per connection."""
    monkeypatch.setattr(limits, "MAX_LEAVES_PER_FETCH", 3)
    monkeypatch.setattr(monitor, "MAX_AUDIT_LEAVES", 6)


async def _behind(state: DeviceState, alice: _Alice, told: _Told, conn: FakeConnection | None = None) -> tuple[FakeConnection, NodeError]:
    conn = conn or FakeConnection(alice.log)
    with pytest.raises(NodeError) as caught:
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    return conn, caught.value


def _ranges(conn: FakeConnection) -> list[tuple[int, int]]:
    return [(f.start, f.end) for f in conn.asked(FetchLeaves)]


async def test_a_large_log_is_audited_over_several_connections_and_findings_wait_for_the_root(
    state: DeviceState, alice: _Alice, small_budget: None
) -> None:
    told = _Told()
    await _check(state, alice, told)  # audited up to size 2
    rogue = alice.log.append(ALICE, new_key())  # leaf 2: in the first page
    alice.log.filler(12)  # up to size 15: 13 leaves to audit
    conn, error = await _behind(state, alice, told)
    assert error.code == "audit_behind" and str(error) == f"7 leaves of {ALPHA}'s key directory not audited yet; the next command goes on"
    assert _ranges(conn) == [(2, 5), (5, 8)]
    assert _seen(state) == [] and told.calls == []  # the rogue leaf was read, but is not proven yet
    alice.log.filler(2)  # the log grows meanwhile: the kept target is finished first
    conn, error = await _behind(state, alice, told)
    assert _ranges(conn) == [(8, 11), (11, 14)] and str(error).startswith("3 leaves of ") and _seen(state) == []
    conn = await _check(state, alice, told)
    assert _ranges(conn) == [(14, 15), (15, 17)]  # target 15 reached, then on to the newest head
    [(kind, text)] = _seen(state)
    assert kind == ALERT and f"leaf {rogue}" in text and "impersonating" in text
    assert told.calls == []  # alice has one device
    conn = await _check(state, alice, told)
    assert conn.asked(FetchLeaves) == [] and len(state.alerts()) == 1


async def test_tampering_in_a_later_page_discards_everything_staged(state: DeviceState, alice: _Alice, small_budget: None) -> None:
    told = _Told()
    await _check(state, alice, told)
    alice.log.append(ALICE, new_key())
    alice.log.filler(9)  # size 12: pages 2..5, 5..8 now, 8..11, 11..12 next time
    await _behind(state, alice, told)
    conn = FakeConnection(alice.log)
    conn.tamper_leaves = lambda a: replace(a, leaves=(_flip(a.leaves[0]), *a.leaves[1:])) if a.start >= 8 else a
    with pytest.raises(VerifyError) as caught:
        await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
    assert caught.value.code == "bad_leaves" and _ranges(conn) == [(8, 11), (11, 12)]
    # only the lie is said; the rogue entry staged from the first connection is dropped with it
    [(kind, text)] = _seen(state)
    assert kind == ALERT and "leaves 2..11 do not make its signed tree of size 12" in text
    conn, _ = await _behind(state, alice, told)  # back to the last audited point
    assert _ranges(conn) == [(2, 5), (5, 8)] and len(state.alerts()) == 1
    await _check(state, alice, told)
    assert "impersonating" in state.alerts()[-1].text


async def test_a_head_of_absurd_size_is_an_alert_and_is_not_audited(state: DeviceState, alice: _Alice) -> None:
    """A node can sign a head of 2**40 leaves that is consistent with its real log (made-up
    subtree hashes) and get it cosigned: reading it would never end."""
    told = _Told()
    await _check(state, alice, told)  # audited (and accepted) up to size 2
    padded = PaddedTree(alice.log, 2**40)
    for attempt in range(2):
        conn = FakeConnection(alice.log)
        conn.devices_answers.append(padded.devices(ALICE))
        conn.consistency_override[(2, 2**40)] = padded.consistency(2)
        with pytest.raises(VerifyError) as caught:
            await check_own_account(conn, state, alice.profile(1), policy=POLICY, now=T0, tell=told, tries=1)
        assert caught.value.code == "directory_too_large" and conn.asked(FetchLeaves) == []
        assert _seen(state) == [
            (ALERT, f"the key directory of {ALPHA} claims to have grown by {2**40 - 2} entries since this device last audited it: not auditing it")
        ]


async def test_findings_beyond_the_staging_limit_are_counted(state: DeviceState, alice: _Alice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor, "MAX_STAGED_FINDINGS", 1)
    told = _Told()
    await _check(state, alice, told)
    for _ in range(3):
        alice.log.append(ALICE, new_key(), prev=-1)
    await _check(state, alice, told)
    [(kind, first), (more_kind, more)] = _seen(state)
    assert kind == more_kind == ALERT and "leaf 2" in first
    assert more == f"2 more findings in the key directory of {ALPHA} were not kept (the first 1 were)"
