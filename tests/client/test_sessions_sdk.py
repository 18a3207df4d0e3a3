"""Sessions as the SDK runs them against a real node: sender certificates checked by the
recipient, prekey upload / top-up / rotation / exhaustion, and sessions that both sides start
at the same time. Time moves through the shared ``Clock`` (tests/client/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.prekeys import GRACE_MS, LOW, ROTATE_MS, TARGET
from sonet.client.sdk import RATCHET_MESSAGE, Device
from sonet.client.sessions import Sessions
from sonet.core import limits
from sonet.core.certs import issue_certificate
from sonet.core.client_api import Accepted, SendBatch
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey, VerifyKey
from sonet.core.device import verify_device_record
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.ratchet import MLKEM768, X25519, verify_prekey
from sonet.core.sealed_sender import seal
from tests.node.conftest import NODE_NAME, RunningNode

from .conftest import ALICE, BOB, CAROL, DAY_MS, HANG_S, Clock, fetch_bundle, link_device, node_db, shown, texts

Register = Callable[..., Awaitable[Device]]
#: the tests that do not count prekeys register with few of them (tests/conftest.py); the prekey
#: tests count client/prekeys.py's own TARGET and LOW
not_counting_prekeys = pytest.mark.usefixtures("few_prekeys")


def _identity(device: Device) -> SigningKey:
    return device.state.profile().identity


async def _counts(at: RunningNode, device: Device) -> tuple[int, int]:
    """(x25519, ML-KEM) one-time prekeys the node holds for ``device``, from its Welcome."""
    async with at.raw(_identity(device)) as conn:
        return conn.welcome.one_time_left, conn.welcome.pq_one_time_left


def _current_prekey_ids(at: RunningNode, device: Device) -> dict[str, int]:
    """Key ids of the signed X25519 prekey and the ML-KEM last-resort key the node serves."""
    profile = device.state.profile()
    db = node_db(at)
    try:
        rows = db.execute(
            "SELECT kind, blob FROM prekeys WHERE account = ? AND device_id = ? AND one_time = 0", (profile.address, profile.device_id)
        ).fetchall()
    finally:
        db.close()
    return {kind: verify_prekey(bytes(blob), profile.identity.public).key_id for kind, blob in rows}


# Sender certificates ------------------------------------------------------------------------


async def _send_sealed(at: RunningNode, sender: Device, recipient: Device, certificate: bytes, text: str, now: int) -> bytes:
    """What Device.send_text puts on the wire, with a certificate of our choosing: a ratchet
    message from ``sender``'s session with ``recipient``'s (only) device, sealed to it, sent
    over a raw connection of ``sender``. Returns the message id."""
    me, to = sender.state.profile(), recipient.state.profile()
    sessions = Sessions(sender.state, me, os.urandom, CryptoPolicy())
    if not sessions.has(to.address, to.device_id):
        bundle = await fetch_bundle(at, me.identity, to.address, to.device_id)
        sessions.establish(to.address, verify_device_record(bundle.record, policy=CryptoPolicy(), account=to.address), bundle)
    msg_id = os.urandom(limits.ENVELOPE_ID_LEN)
    message = sessions.encrypt(to.address, to.device_id, encode_content(Content(type="text", id=msg_id, sent_at=now, text=text)))
    body = seal(
        certificate=certificate, message=message, msg_type=RATCHET_MESSAGE, to_key=to.hpke.public, recipient_fp=to.identity.public.fingerprint
    )
    envelope = Envelope(
        v=ENVELOPE_VERSION, id=msg_id, to=to.address, device=to.device_id,
        expires=now + limits.DEFAULT_ENVELOPE_TTL_MS, kind=Kind.SEALED, body=body,
    )
    async with at.raw(me.identity) as conn:
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(envelope,)))
    assert isinstance(reply, Accepted) and reply.stored == 1
    return msg_id


def _certificate(key: SigningKey, account: str, device: int, identity: VerifyKey, now: int, **kw) -> bytes:  # noqa: ANN003
    return issue_certificate(key, node=NODE_NAME, account=account, device=device, identity=identity, now=now, **kw)


async def _rejected_and_nothing_stored(at: RunningNode, recipient: Device, msg_id: bytes, reason: str) -> None:
    result = await recipient.receive()
    assert result.messages == []
    [line] = result.rejected
    assert msg_id.hex() in line and reason in line
    assert not recipient.state.has_message(msg_id)
    await at.settle()
    assert await at.pending(recipient.state.profile().address) == []  # acknowledged: not retried forever


@not_counting_prekeys
async def test_a_hand_built_message_with_a_genuine_certificate_is_accepted(alpha: RunningNode, register: Register, clock: Clock) -> None:
    """The control for the forgeries below: the harness itself builds valid messages."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        cert = _certificate(alpha.identity, ALICE, 1, _identity(alice).public, clock())
        msg_id = await _send_sealed(alpha, alice, bob, cert, "genuine", clock())
        result = await bob.receive()
        assert result.rejected == []
        assert [(m.id, m.sender, m.fields) for m in result.messages] == [(msg_id, ALICE, {"text": "genuine"})]


@not_counting_prekeys
async def test_a_forged_certificate_is_rejected(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "first")
        assert texts(bob, await bob.receive()) == [(ALICE, "first")]

        impostor = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
        forged = _certificate(impostor, ALICE, 1, _identity(alice).public, clock())
        msg_id = await _send_sealed(alpha, alice, bob, forged, "forged", clock())
        await _rejected_and_nothing_stored(alpha, bob, msg_id, "signature does not verify")

        # the real session is unharmed
        await alice.send_text(BOB, "real again")
        assert texts(bob, await bob.receive()) == [(ALICE, "real again")]


@not_counting_prekeys
async def test_a_certificate_that_expired_before_the_envelope_was_stored_is_rejected(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice_clock = Clock()  # alice's own clock stops; the node's and bob's go on
        alice_clock.now_ms = clock()
        alice, bob = await register(alpha, "alice", clock=alice_clock), await register(alpha, "bob")
        await alice.send_text(BOB, "fresh")  # fetches and caches a certificate valid for a day
        assert texts(bob, await bob.receive()) == [(ALICE, "fresh")]

        clock.advance(limits.DEFAULT_SENDER_CERT_VALIDITY_MS + 3600 * 1000)
        late = await alice.send_text(BOB, "with a stale certificate")
        [queued] = await alpha.pending(BOB)
        assert queued.id == late.id and queued.stored_at == clock()
        await _rejected_and_nothing_stored(alpha, bob, late.id, "expired")

        # with a clock that agrees with the node's, alice fetches a new certificate
        alice_clock.now_ms = clock()
        await alice.send_text(BOB, "renewed")
        assert texts(bob, await bob.receive()) == [(ALICE, "renewed")]


@not_counting_prekeys
async def test_a_message_that_waited_in_the_mailbox_is_judged_at_arrival(alpha: RunningNode, register: Register, clock: Clock) -> None:
    """The other side of the rule: a recipient offline for days still accepts what was sent
    with a valid certificate (checked against stored_at, not its own clock)."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "sent today")
        clock.advance(3 * DAY_MS)
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "sent today")]


@not_counting_prekeys
async def test_a_certificate_for_another_device_than_the_sessions_is_rejected(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        alice2 = make_device("alice2")
        await link_device(alice2, alice, alpha.url)
        other = _identity(alice2).public

        # a valid certificate of alice's device 2 on a session started by alice's device 1
        cert = _certificate(alpha.identity, ALICE, 2, other, clock())
        msg_id = await _send_sealed(alpha, alice, bob, cert, "wrong device", clock())
        await _rejected_and_nothing_stored(alpha, bob, msg_id, "belongs to another identity key")
        assert bob.state.session(ALICE, 1) is None and bob.state.session(ALICE, 2) is None

        # device 1's number with device 2's key
        cert = _certificate(alpha.identity, ALICE, 1, other, clock())
        msg_id = await _send_sealed(alpha, alice, bob, cert, "wrong key", clock())
        await _rejected_and_nothing_stored(alpha, bob, msg_id, "does not list")

        # a device the account does not have
        cert = _certificate(alpha.identity, ALICE, 9, _identity(alice).public, clock())
        msg_id = await _send_sealed(alpha, alice, bob, cert, "no such device", clock())
        await _rejected_and_nothing_stored(alpha, bob, msg_id, "does not list")

        # alice's real messages on the same session still arrive
        sent = await alice.send_text(BOB, "from device 1, honestly")
        assert sent.devices == 1
        assert texts(bob, await bob.receive()) == [(ALICE, "from device 1, honestly")]


# Prekeys -----------------------------------------------------------------------------------


async def test_registration_uploads_a_full_set_of_prekeys(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        assert await _counts(alpha, alice) == (TARGET, TARGET)
        bundle = await fetch_bundle(alpha, _identity(bob), ALICE)
        identity = _identity(alice).public
        signed = verify_prekey(bundle.signed_prekey, identity)
        one_time = verify_prekey(bundle.one_time, identity)
        pq = verify_prekey(bundle.pq_prekey, identity)
        assert (signed.kind, one_time.kind, pq.kind) == (X25519, X25519, MLKEM768)
        assert not pq.last_resort and one_time.key_id != signed.key_id
        # alice holds the secret of every key the node hands out
        for key in (signed, one_time, pq):
            assert alice.state.prekey(key.kind, key.key_id) is not None
        assert await _counts(alpha, alice) == (TARGET - 1, TARGET - 1)


async def test_prekeys_are_topped_up_when_the_node_runs_low(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await fetch_bundle(alpha, _identity(bob), ALICE, times=TARGET - LOW)
        assert await _counts(alpha, alice) == (LOW, LOW)
        await alice.receive()
        assert await _counts(alpha, alice) == (LOW, LOW)  # not low yet: nothing uploaded

        await fetch_bundle(alpha, _identity(bob), ALICE)
        assert await _counts(alpha, alice) == (LOW - 1, LOW - 1)
        await alice.receive()  # the next connection tops up
        assert await _counts(alpha, alice) == (TARGET, TARGET)
        # a session started from a new key works
        bundle = await fetch_bundle(alpha, _identity(bob), ALICE, times=LOW)
        assert verify_prekey(bundle.one_time, _identity(alice).public).key_id > TARGET
        await bob.send_text(ALICE, "on a topped-up key")
        assert texts(alice, await alice.receive()) == [(BOB, "on a topped-up key")]


async def test_signed_and_last_resort_prekeys_rotate_and_old_ones_still_decrypt(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        before = _current_prekey_ids(alpha, alice)
        # use up the ML-KEM one-time keys, so that bob's first message uses the last-resort key
        await fetch_bundle(alpha, _identity(carol), ALICE, times=TARGET)
        bundle = await fetch_bundle(alpha, _identity(carol), ALICE)
        assert verify_prekey(bundle.pq_prekey, _identity(alice).public).key_id == before[MLKEM768]
        await bob.send_text(ALICE, "in flight across the rotation")  # alice is offline

        clock.advance(ROTATE_MS + DAY_MS)
        await alice.send_text(CAROL, "a week later")  # any connection of alice's rotates
        after = _current_prekey_ids(alpha, alice)
        assert after[X25519] > before[X25519] and after[MLKEM768] > before[MLKEM768]
        bundle = await fetch_bundle(alpha, _identity(carol), ALICE, times=TARGET + 1)
        identity = _identity(alice).public
        assert verify_prekey(bundle.signed_prekey, identity).key_id == after[X25519]
        last_resort = verify_prekey(bundle.pq_prekey, identity)
        assert (last_resort.key_id, last_resort.last_resort) == (after[MLKEM768], True)
        # the old secrets are kept for the grace period ...
        assert alice.state.prekey(X25519, before[X25519]) is not None
        assert alice.state.prekey(MLKEM768, before[MLKEM768]) is not None
        result = await alice.receive()
        assert result.rejected == []
        assert texts(alice, result) == [(BOB, "in flight across the rotation")]

        # ... and dropped after it
        clock.advance(GRACE_MS + DAY_MS)
        await alice.receive()
        assert alice.state.prekey(X25519, before[X25519]) is None
        assert alice.state.prekey(MLKEM768, before[MLKEM768]) is None
        latest = _current_prekey_ids(alpha, alice)
        assert latest[X25519] > after[X25519]  # rotated again on that connection
        assert alice.state.prekey(X25519, after[X25519]) is not None  # replaced just now: in its grace period
        # a new contact starts a session on the newest keys
        dave = await register(alpha, "dave")
        await dave.send_text(ALICE, "hello alice")
        result = await alice.receive()
        assert result.rejected == [] and texts(alice, result) == [(f"dave@{NODE_NAME}", "hello alice")]


@not_counting_prekeys
async def test_a_message_sent_just_before_a_late_rotation_still_decrypts(alpha: RunningNode, register: Register, clock: Clock) -> None:
    """Grace runs from when a key was replaced, not from when it was made: a device offline for
    weeks rotates on its next connection, before it reads its mailbox."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        clock.advance(ROTATE_MS - DAY_MS)
        await bob.send_text(ALICE, "sent on day six")  # uses alice's first signed prekey
        clock.advance(limits.DEFAULT_ENVELOPE_TTL_MS - DAY_MS)  # still within the envelope's TTL
        assert len(await alpha.pending(ALICE)) == 1
        result = await alice.receive()  # rotates first, then reads
        assert result.rejected == []
        assert texts(alice, result) == [(BOB, "sent on day six")]


async def test_sessions_start_without_one_time_prekeys(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        await fetch_bundle(alpha, _identity(carol), ALICE, times=TARGET)
        assert await _counts(alpha, alice) == (0, 0)
        bundle = await fetch_bundle(alpha, _identity(carol), ALICE)
        assert bundle.one_time is None  # no X25519 one-time key left ...
        pq = verify_prekey(bundle.pq_prekey, _identity(alice).public)
        assert pq.last_resort  # ... and the ML-KEM key is the last-resort one

        # two contacts start sessions on the same last-resort key while alice is offline
        await bob.send_text(ALICE, "from bob")
        await carol.send_text(ALICE, "from carol")
        result = await alice.receive()
        assert result.rejected == []
        assert texts(alice, result) == [(BOB, "from bob"), (CAROL, "from carol")]
        assert alice.state.prekey(MLKEM768, pq.key_id) is not None  # a last-resort key is not used up
        assert await _counts(alpha, alice) == (TARGET, TARGET)  # and the receive topped up
        # both sessions go on in both directions
        await alice.send_text(BOB, "hi bob")
        await alice.send_text(CAROL, "hi carol")
        assert texts(bob, await bob.receive()) == [(ALICE, "hi bob")]
        assert texts(carol, await carol.receive()) == [(ALICE, "hi carol")]


# Sessions started by both sides ---------------------------------------------------------------


async def _converse(alice: Device, bob: Device, rounds: int) -> None:
    for i in range(rounds):
        await alice.send_text(BOB, f"a{i}")
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, f"a{i}")]
        await bob.send_text(ALICE, f"b{i}")
        result = await alice.receive()
        assert result.rejected == [] and texts(alice, result) == [(BOB, f"b{i}")]


@not_counting_prekeys
async def test_both_sides_start_a_session_at_once_then_receive_in_turn(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "hi, I am first")
        await bob.send_text(ALICE, "no, I am first")
        result = await bob.receive()  # bob adopts alice's session and answers with a receipt on it
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "hi, I am first")]
        result = await alice.receive()
        assert result.rejected == []
        assert [(s, k) for s, k, _f in shown(alice, result)] == [(BOB, "text"), (BOB, "receipt")]
        await _converse(alice, bob, 3)


@not_counting_prekeys
async def test_both_sides_start_a_session_at_once_with_more_messages_in_flight(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "a1")
        await bob.send_text(ALICE, "b1")
        await alice.send_text(BOB, "a2")  # alice has not heard from bob: still her own session
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "a1"), (ALICE, "a2")]
        await bob.send_text(ALICE, "b2")  # on the session bob adopted from alice
        await bob.send_text(ALICE, "b3")
        result = await alice.receive()
        assert result.rejected == []
        assert texts(alice, result) == [(BOB, "b1"), (BOB, "b2"), (BOB, "b3")]
        await _converse(alice, bob, 3)
        # the session each side replaced is kept (bounded), should the other still use it
        assert len(bob.state.previous_sessions(ALICE, 1)) == 1
        assert len(alice.state.previous_sessions(BOB, 1)) == 1
