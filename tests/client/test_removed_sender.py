"""Messages of a device its account removed before the recipients fetched them (issue 12).

The rule (docs/security.md, "Removed devices"): a recipient accepts a message whose sender
certificate names a device the account no longer lists when the account's signed device list
remembers that device's removal and the recipient's own node stored the message before it
(core/device_list.py ``check_listed_when_accepted``), for at most the longest life of an
envelope after the removal. So what the node accepted before the removal is delivered, and
nothing a removed device sends after it is, however it gets it into a mailbox.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.connection import NodeError
from sonet.client.sdk import RATCHET_MESSAGE, Device
from sonet.client.sessions import Sessions
from sonet.client.state import DeviceState
from sonet.core import limits
from sonet.core.client_api import Accepted, SendBatch
from sonet.core.content import Content, encode_content
from sonet.core import canonical
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, SigningKey
from sonet.core.device import verify_device_record
from sonet.core.device_list import (
    DEVICE_LIST_LABEL,
    DeviceList,
    check_listed_when_accepted,
    next_device_list,
    removal_time,
    sign_device_list,
    verify_device_list,
)
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.padding import pad
from sonet.core.sealed_sender import sealed_info, seal, unseal
from tests.core.ratchet.helpers import initial
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, HANG_S, Clock, fetch_bundle, link_device, node_db, shown, texts
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"
MINUTE_MS = 60 * 1000


async def _alice_with_two_devices(at: RunningNode, register: Register, make_device: Callable[..., Device]) -> tuple[Device, Device]:
    alice = await register(at, "alice")
    alice2 = make_device("alice2")
    assert await link_device(alice2, alice, at.url) == 2
    return alice, alice2


def _rejected(result, msg_id: bytes, reason: str) -> None:  # noqa: ANN001
    assert result.messages == []
    [line] = result.rejected
    assert line.startswith(f"dropped envelope {msg_id.hex()}") and reason in line, line


async def _inject(at: RunningNode, author: Device, via: SigningKey, recipient: Device, text: str, now: int) -> bytes:
    """What a removed device can still do: seal a message with its certificate (still within
    its validity) and its own record, on its session with ``recipient``'s device, and have a
    device that IS registered (``via``, e.g. an account it opened) hand it to the node."""
    me, to = author.state.profile(), recipient.state.profile()
    sessions = Sessions(author.state, me, os.urandom, CryptoPolicy())
    if not sessions.has(to.address, to.device_id):
        bundle = await fetch_bundle(at, via, to.address, to.device_id)
        sessions.establish(to.address, verify_device_record(bundle.record, policy=CryptoPolicy(), account=to.address), bundle)
    msg_id = os.urandom(limits.ENVELOPE_ID_LEN)
    message = sessions.encrypt(to.address, to.device_id, encode_content(Content(type="text", id=msg_id, sent_at=now, text=text)))
    certificate = author.state.get("sender_certificate")
    record = author.state.get("own_record")
    assert certificate is not None and record is not None
    body = seal(
        certificate=certificate, message=message, msg_type=RATCHET_MESSAGE, to_key=to.hpke.public,
        recipient_fp=to.identity.public.fingerprint, sender_record=record,
    )
    envelope = Envelope(
        v=ENVELOPE_VERSION, id=msg_id, to=to.address, device=to.device_id,
        expires=now + limits.DEFAULT_ENVELOPE_TTL_MS, kind=Kind.SEALED, body=body,
    )
    async with at.raw(via) as conn:
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(envelope,)))
    assert isinstance(reply, Accepted) and reply.stored == 1
    return msg_id


def _undelivered(device: Device, result) -> list[tuple[str, list[str]]]:  # noqa: ANN001
    """(sender, message ids) of the ``undelivered`` receipts in ``result``."""
    return [(sender, fields["ids"]) for sender, kind, fields in shown(device, result) if kind == "receipt" and fields["receipt"] == "undelivered"]


async def _set_stored_at(at: RunningNode, msg_id: bytes, stored_at: int) -> None:
    """What a node that lies about when it took an envelope does. Written as an admin command
    writes (the admin version moves with it) and noticed now, as the node's admin poll would:
    the node answers a fetch of a mailbox its own commit just added to from memory
    (node/store/queue_tails.py), and on a loaded machine bob's fetch came before any commit or
    poll of the node had seen this write (it got the envelope with its true time)."""
    db = node_db(at)
    try:
        db.execute("BEGIN IMMEDIATE")
        assert db.execute("UPDATE mailbox SET stored_at = ? WHERE id = ?", (stored_at, msg_id)).rowcount == 1
        db.execute("UPDATE admin_version SET version = version + 1")
        db.execute("COMMIT")
    finally:
        db.close()
    await at.node.links.store.admin_version()


# One node ----------------------------------------------------------------------------------


async def test_a_message_accepted_before_its_device_was_removed_is_delivered(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    """The reproduction: alice's device 2 sends, device 1 removes it, then bob fetches."""
    with trio.fail_after(HANG_S * 2):
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(alpha, "bob")
        sent = await alice2.send_text(BOB, "sent from device 2")
        assert (sent.devices, sent.own_devices, sent.state) == (1, 1, "accepted")
        clock.advance(MINUTE_MS)
        await alice.remove_device(2)
        clock.advance(MINUTE_MS)

        result = await bob.receive()
        assert result.rejected == []
        assert texts(bob, result) == [(ALICE, "sent from device 2")]
        # alice's own device gets its copy too
        assert (ALICE, "sent from device 2") in texts(alice, await alice.receive())
        # the session with the removed device works on: bob's receipt and answer go to device 1 only
        reply = await bob.send_text(ALICE, "got it")
        assert reply.devices == 1
        assert (BOB, "got it") in texts(alice, await alice.receive())


async def test_a_message_on_an_existing_session_is_delivered_after_the_removal(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    """A message that starts no session carries no record: the one bob kept is used."""
    with trio.fail_after(HANG_S * 2):
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(alpha, "bob")
        await alice2.send_text(BOB, "first")
        assert texts(bob, await bob.receive()) == [(ALICE, "first")]
        await bob.send_text(ALICE, "answer")  # to both of alice's devices
        assert (BOB, "answer") in texts(alice2, await alice2.receive())
        await alice2.send_text(BOB, "second, on the session")
        await alice.remove_device(2)
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "second, on the session")]


async def test_a_removed_device_cannot_send_after_its_removal(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(alpha, "bob")
        await alice2.send_text(BOB, "before")  # alice2 holds a certificate valid for a day
        assert texts(bob, await bob.receive()) == [(ALICE, "before")]
        clock.advance(MINUTE_MS)
        await alice.remove_device(2)
        clock.advance(1)

        # its node refuses it
        with pytest.raises(NodeError) as info:
            await alice2.send_text(BOB, "still here?")
        assert info.value.code in ("device_removed", "not_registered")

        # through an account it opened, with its still valid certificate: bob's device refuses it
        mallory = await register(alpha, "mallory")
        msg_id = await _inject(alpha, alice2, mallory.state.profile().identity, bob, "after removal", clock())
        _rejected(await bob.receive(), msg_id, "removed from alice@alpha.example before the message reached this device's node")
        await alpha.settle()
        assert await alpha.pending(BOB) == []  # a definite no: acknowledged, not kept
        # alice's remaining device hears of it: her removed device is still sending
        assert _undelivered(alice, await alice.receive()) == [(BOB, [msg_id.hex()])]


async def test_a_node_cannot_move_a_removed_devices_message_beyond_the_bounds(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob_clock = Clock()
        bob_clock.now_ms = clock()
        bob = await register(alpha, "bob", clock=bob_clock)
        mallory = await register(alpha, "mallory")
        await alice2.send_text(BOB, "before")
        assert texts(bob, await bob.receive()) == [(ALICE, "before")]
        issued = clock()
        clock.advance(10 * MINUTE_MS)
        removed_at = clock()
        await alice.remove_device(2)
        clock.advance(10 * MINUTE_MS)
        bob_clock.now_ms = clock()

        # stamped after the removal (plus the skew allowed for the removing device's clock)
        late = await _inject(alpha, alice2, mallory.state.profile().identity, bob, "late", clock())
        await _set_stored_at(alpha, late, removed_at + limits.MAX_CERT_CLOCK_SKEW_MS + 1)
        _rejected(await bob.receive(), late, "before the message reached this device's node")

        # backdated before the certificate was valid
        early = await _inject(alpha, alice2, mallory.state.profile().identity, bob, "early", clock())
        await _set_stored_at(alpha, early, issued - limits.MAX_CERT_CLOCK_SKEW_MS - 1)
        _rejected(await bob.receive(), early, "not valid yet")

        # A lying node can place one inside the window (documented); but no longer than an
        # envelope can live after the removal, by bob's own clock.
        inside = await _inject(alpha, alice2, mallory.state.profile().identity, bob, "inside", clock())
        await _set_stored_at(alpha, inside, removed_at - 1)
        bob_clock.now_ms = removed_at + limits.REMOVED_DEVICE_GRACE_MS + limits.MAX_CERT_CLOCK_SKEW_MS
        _rejected(await bob.receive(), inside, "too long ago")


async def test_a_device_removed_long_ago_is_forgotten_by_the_list(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    """The list carries a removal only while it can matter; after that the device is unknown."""
    with trio.fail_after(HANG_S * 3):
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(alpha, "bob")
        await alice2.send_text(BOB, "before")
        assert texts(bob, await bob.receive()) == [(ALICE, "before")]
        await alice.remove_device(2)
        clock.advance(limits.REMOVED_DEVICE_GRACE_MS)
        alice3 = make_device("alice3")
        await link_device(alice3, alice, alpha.url)  # signs the next list: the old removal is dropped
        mallory = await register(alpha, "mallory")
        msg_id = await _inject(alpha, alice2, mallory.state.profile().identity, bob, "ghost", clock())
        await _set_stored_at(alpha, msg_id, clock() - limits.REMOVED_DEVICE_GRACE_MS)  # even backdated
        result = await bob.receive()
        assert result.messages == []
        [line] = result.rejected
        assert msg_id.hex() in line and "does not list" in line, line


# Two nodes ---------------------------------------------------------------------------------


async def test_a_remote_message_stored_before_the_removal_is_delivered(
    alpha_beta: tuple[RunningNode, RunningNode],
    loopback: Loopback,
    register: Register,
    make_device: Callable[..., Device],
    clock: Clock,
) -> None:
    with trio.fail_after(HANG_S * 2):
        alpha, beta = alpha_beta
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(beta, "bob")
        await alice2.send_text(BOB_B, "across, from device 2")
        assert await loopback.flush() == {BETA: ["ok"]}  # beta stored it now
        clock.advance(MINUTE_MS)
        await alice.remove_device(2)
        clock.advance(MINUTE_MS)
        result = await bob.receive()
        assert result.rejected == []
        assert texts(bob, result) == [(ALICE, "across, from device 2")]


async def test_a_remote_message_that_reached_the_recipients_node_after_the_removal_is_refused(
    alpha_beta: tuple[RunningNode, RunningNode],
    loopback: Loopback,
    register: Register,
    make_device: Callable[..., Device],
    clock: Clock,
) -> None:
    """For a sender of another node, only the recipient's own node's time counts: nothing the
    recipient can check says when alpha took it, so one that waited in alpha's outbox past the
    removal is refused (docs/security.md)."""
    with trio.fail_after(HANG_S * 2):
        alpha, beta = alpha_beta
        alice, alice2 = await _alice_with_two_devices(alpha, register, make_device)
        bob = await register(beta, "bob")
        sent = await alice2.send_text(BOB_B, "held in alpha's outbox")
        clock.advance(MINUTE_MS)
        await alice.remove_device(2)
        clock.advance(limits.MAX_CERT_CLOCK_SKEW_MS + MINUTE_MS)
        assert await loopback.flush() == {BETA: ["ok"]}
        _rejected(await bob.receive(), sent.id, "before the message reached this device's node")
        # the account learns it failed: bob's device reports it back to alice's devices
        assert await loopback.flush() == {"alpha.example": ["ok"]}
        result = await alice.receive()
        [receipt] = [m for m in result.messages if m.type == "receipt"]
        assert cli._message_line(receipt).endswith(f"{BOB_B} refused 1 message from a device of yours removed before they arrived")
        assert _undelivered(alice, result) == [(BOB_B, [sent.id.hex()])]


# The rule and the list's memory, pure --------------------------------------------------------

NOW = 1_800_000_000_000
_KEY = SigningKey.generate(CryptoMode.HYBRID, os.urandom)


def _fp(name: str) -> str:
    return SigningKey.generate(CryptoMode.CLASSICAL, lambda n: name.encode().ljust(n, b"\0")[:n]).public.fingerprint


PHONE, LAPTOP, TABLET = _fp("phone"), _fp("laptop"), _fp("tablet")


def _listed(raw: bytes) -> DeviceList:
    return verify_device_list(raw, account_key=_KEY.public, account=ALICE)


def _first(*devices: str) -> DeviceList:
    return _listed(sign_device_list(_KEY, account=ALICE, version=1, devices=devices, now=NOW))


def test_the_next_list_remembers_what_it_removes_and_when() -> None:
    first = _first(PHONE, LAPTOP)
    assert first.removed == () and canonical.loads(canonical.loads(first.raw)["body"])["v"] == 1
    second = _listed(next_device_list(_KEY, first, devices={PHONE}, now=NOW + 5))
    assert (second.version, second.devices, second.removed) == (2, (PHONE,), ((LAPTOP, NOW + 5),))
    assert removal_time(second, LAPTOP) == NOW + 5 and removal_time(second, PHONE) is None
    # adding a device keeps the memory; a device listed again is no longer "removed"
    third = _listed(next_device_list(_KEY, second, devices={PHONE, TABLET}, now=NOW + 9))
    assert third.removed == ((LAPTOP, NOW + 5),)
    # a removal older than the grace is forgotten when the next list is signed
    fourth = _listed(next_device_list(_KEY, third, devices={PHONE, TABLET}, now=NOW + 5 + limits.REMOVED_DEVICE_GRACE_MS))
    assert fourth.removed == () and removal_time(fourth, LAPTOP) is None


def test_the_memory_is_bounded_and_keeps_the_newest() -> None:
    listed = _first(PHONE)
    for i in range(limits.MAX_REMOVED_DEVICES + 3):
        extra = _fp(f"device {i}")
        listed = _listed(next_device_list(_KEY, listed, devices={PHONE, extra}, now=NOW + 2 * i))
        listed = _listed(next_device_list(_KEY, listed, devices={PHONE}, now=NOW + 2 * i + 1))
    assert len(listed.removed) == limits.MAX_REMOVED_DEVICES
    assert min(at for _fp_, at in listed.removed) == NOW + 2 * 3 + 1  # the three oldest dropped
    assert len(listed.raw) <= limits.MAX_DEVICE_LIST_BYTES


def _body(**changes: object) -> bytes:
    fields: dict[str, object] = {"v": 2, "account": ALICE, "version": 2, "devices": [PHONE], "issued": NOW, "removed": [[LAPTOP, NOW]]}
    fields.update(changes)
    body = canonical.dumps(fields)
    return canonical.dumps({"body": body, "sig": _KEY.sign(DEVICE_LIST_LABEL, body)})


@pytest.mark.parametrize(
    "changes",
    [
        {"removed": []},
        {"removed": [[LAPTOP, NOW + 1]]},
        {"removed": [[LAPTOP, -1]]},
        {"removed": [[PHONE, NOW]]},
        {"removed": [[LAPTOP]]},
        {"removed": [[LAPTOP, "now"]]},
        {"removed": [[LAPTOP.upper(), NOW]]},
        {"removed": sorted([[LAPTOP, NOW], [TABLET, NOW]], reverse=True)},
        {"removed": [[LAPTOP, NOW], [LAPTOP, NOW]]},
        {"removed": sorted([_fp(str(i)), NOW] for i in range(limits.MAX_REMOVED_DEVICES + 1))},
        {"v": 1},
        {"v": 3},
    ],
    ids=["empty", "after-issue", "negative", "still-listed", "no-time", "time-type", "not-normal", "unsorted", "repeated", "too-many", "v1-with-removed", "v3"],
)
def test_a_malformed_memory_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        _listed(_body(**changes))
    assert not isinstance(info.value, VerifyError) and info.value.code == "device_list_malformed"


def test_the_memory_is_signed() -> None:
    good = canonical.loads(_body())
    tampered = canonical.dumps({"body": canonical.dumps({**canonical.loads(good["body"]), "removed": [[LAPTOP, NOW - 1]]}), "sig": good["sig"]})
    with pytest.raises(VerifyError) as info:
        _listed(tampered)
    assert info.value.code == "device_list_forged"
    assert _listed(_body()).removed == ((LAPTOP, NOW),)


def test_sign_refuses_an_impossible_memory() -> None:
    for removed in ({PHONE: NOW}, {LAPTOP: NOW + 1}, {_fp(str(i)): NOW for i in range(limits.MAX_REMOVED_DEVICES + 1)}):
        with pytest.raises(LocalProtocolError):
            sign_device_list(_KEY, account=ALICE, version=2, devices=[PHONE], now=NOW, removed=removed)


def _check(listed: DeviceList, fp: str, *, accepted_at: int, published_at: int | None = None, now: int | None = None) -> None:
    check_listed_when_accepted(
        listed, fp, accepted_at=accepted_at, published_at=NOW + 100 if published_at is None else published_at,
        now=NOW + 1000 if now is None else now,
    )


def test_the_rule() -> None:
    removed_at = NOW + 50
    listed = _listed(next_device_list(_KEY, _first(PHONE, LAPTOP), devices={PHONE}, now=removed_at))
    _check(listed, PHONE, accepted_at=NOW + 10**9)  # listed now: any time
    _check(listed, LAPTOP, accepted_at=removed_at)  # accepted before the removal
    _check(listed, LAPTOP, accepted_at=removed_at + 40, published_at=removed_at + 40)  # the removing device's clock ran behind
    cases: list[tuple[str, dict[str, int], str]] = [
        (TABLET, {"accepted_at": NOW}, "does not list"),
        # after the node published the list that left it out
        (LAPTOP, {"accepted_at": removed_at + 41, "published_at": removed_at + 40}, "before the message reached"),
        # after the signed removal time plus the skew, even if the node says it published later
        (LAPTOP, {"accepted_at": removed_at + limits.MAX_CERT_CLOCK_SKEW_MS + 1, "published_at": NOW + 10**9}, "before the message reached"),
        # a message stored in time but delivered later than any envelope can live
        (LAPTOP, {"accepted_at": NOW, "now": NOW + 100 + limits.REMOVED_DEVICE_GRACE_MS}, "too long ago"),
    ]
    for fp, kw, reason in cases:
        with pytest.raises(VerifyError, match=reason) as info:
            _check(listed, fp, **kw)
        assert info.value.code == "sender_removed"


def test_a_box_carries_a_record_only_with_a_message_that_starts_a_session() -> None:
    recipient = HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom)
    fp = PHONE
    cert = b"\xa0certificate"
    for message, carried in ((_initial(), b"record"), (_not_initial(), None)):
        body = seal(certificate=cert, message=message, msg_type=RATCHET_MESSAGE, to_key=recipient.public, recipient_fp=fp, sender_record=b"record")
        assert unseal(body, my_key=recipient, my_fp=fp).record_raw == carried
    # hand-built: a record next to a message that starts no session is malformed
    inner = canonical.dumps({"v": 1, "cert": cert, "msg": _not_initial(), "type": RATCHET_MESSAGE, "record": b"record"})
    with pytest.raises(RemoteProtocolError, match="starts no session"):
        unseal(recipient.public.seal(pad(inner), sealed_info(fp)), my_key=recipient, my_fp=fp)
    for bad in ({"record": 7}, {"record": b""}, {"record": b"r" * (limits.MAX_SENDER_RECORD_BYTES + 1)}, {"extra": b""}):
        fields = {"v": 1, "cert": cert, "msg": _initial(), "type": RATCHET_MESSAGE, **bad}
        with pytest.raises(RemoteProtocolError):
            unseal(recipient.public.seal(pad(canonical.dumps(fields)), sealed_info(fp)), my_key=recipient, my_fp=fp)


def _initial() -> bytes:
    return initial(CryptoMode.CLASSICAL)[3]


def _not_initial() -> bytes:
    """The same message without its prekey header: what a session sends once established."""
    return canonical.dumps(canonical.loads(_initial())["m"])


def test_an_undelivered_receipt_changes_no_sent_message(tmp_path: Path) -> None:
    """It names messages of a device the account removed, never this device's own."""
    state = DeviceState(tmp_path / "state")
    try:
        msg_id = os.urandom(limits.CONTENT_ID_LEN)
        state.record_sent(msg_id, BOB, NOW, 1, state="accepted")
        state.record_receipt([msg_id], "undelivered", NOW + 1, recipient=BOB)
        [sent] = state.sent_messages(5)
        assert (sent.state, sent.delivered_at, sent.read_at) == ("accepted", None, None)
        state.record_receipt([msg_id], "delivered", NOW + 2, recipient=BOB)
        assert state.sent_message(msg_id).delivered_at == NOW + 2
    finally:
        state.close()
