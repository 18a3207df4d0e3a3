"""Review of the checks no longer repeated (1c1f2da, bcb3f6a, 2ac74ff): whatever skips a
check() sees only what this node checked before, every byte from the network is still decoded
with every cap and check(), and the per-push token judgement answers each envelope as a
judgement of its own would."""

from __future__ import annotations

import dataclasses
import os

import msgspec
import pytest

from sonet.core import limits
from sonet.core.client_api import CLIENT_FRAMES, Deliver, Delivery, SendBatch
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Push, PushResult, Transit
from sonet.core.wire import decode_frame, encode_frame, encoded
from sonet.federation.message_requests import PER_PEER
from sonet.federation.transit import decode_transit, envelope_item, read_queued, relayed_item
from tests.node.conftest import StartNode
from tests.node.kit import access_token

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit

NOW = 1_700_000_000_000
TTL = 30 * 24 * 3600 * 1000


def envelope(to: str, *, device: int = 1, expires: int = NOW + 60_000, body: bytes = b"sealed", kind: int = Kind.SEALED) -> Envelope:
    return Envelope(v=ENVELOPE_VERSION, id=os.urandom(16), to=to, device=device, expires=expires, kind=kind, body=body)


def as_received(frame: Push | SendBatch) -> Push | SendBatch:
    """``frame`` as its receiver decodes it (every cap and check())."""
    frames = FEDERATION_FRAMES if isinstance(frame, Push) else CLIENT_FRAMES
    return decode_frame(encode_frame(frame), frames)  # type: ignore[return-value]


EDGES = [
    envelope("bob@beta.example"),
    envelope("  BOB@Beta.Example "),  # normalised on the way
    envelope("\u212aim@beta.example"),  # KELVIN SIGN lowers to an ASCII k: "kim"
    envelope("b" * limits.MAX_ACCOUNT_LEN + "@beta.example"),
    envelope("bob@beta.example", device=2**31 - 1, expires=2**63 - 1),  # the expiry is capped
    envelope("bob@beta.example", body=b"x" * limits.MAX_ENVELOPE_BODY),
]


@pytest.mark.parametrize("env", EDGES, ids=range(len(EDGES)))
def test_an_envelope_a_send_batch_took_makes_an_item_the_destination_takes_in_full(env: Envelope) -> None:
    # the device's bytes are decoded with every check; the item made without the envelope's
    # check() again is the same, and the next hop's decoder (every check) takes it
    try:
        batch = as_received(SendBatch(request=1, envelopes=(env,)))
    except LocalProtocolError:
        pytest.skip("not an envelope a device can send")
    taken = batch.envelopes[0]  # type: ignore[union-attr]
    make = dict(origin="alpha.example", sender_account="alice@alpha.example", sender_device=1, now=NOW, ttl_ms=TTL)
    checked, plain = envelope_item(taken, checked=True, **make), envelope_item(taken, **make)  # type: ignore[arg-type]
    assert (checked.data, checked.key, checked.expires, checked.tracking) == (plain.data, plain.key, plain.expires, plain.tracking)
    pushed = as_received(Push(request=1, items=(encoded(Transit, checked.data),)))
    assert pushed.items == (decode_transit(plain.data),)  # type: ignore[union-attr]


def test_a_relayed_item_read_back_unchecked_is_checked_in_full_by_the_next_node() -> None:
    # beta relays what alpha pushed: it stores it (checked), reads it back without the
    # check()s and splices its bytes into its own push; gamma decodes that push in full
    item = transit("carol@gamma.example", origin="alpha.example")
    received = as_received(Push(request=1, items=(item,))).items[0]  # type: ignore[union-attr]
    queued = relayed_item(received, now=NOW, ttl_ms=TTL)
    onward = read_queued(queued.data)
    assert onward == dataclasses.replace(item, hops=item.hops - 1) == decode_transit(queued.data)
    assert as_received(Push(request=2, items=(encoded(Transit, queued.data),))).items == (onward,)  # type: ignore[union-attr]
    # bytes that would fail a check() (a damaged row; a check tightened since the item was
    # queued) read back typed, but the next node refuses the push that carries them
    for bad in (
        dataclasses.replace(onward, access=b"short"),
        dataclasses.replace(onward, envelope=dataclasses.replace(onward.envelope, id=b"short")),  # type: ignore[type-var]
        dataclasses.replace(onward, envelope=dataclasses.replace(onward.envelope, kind=Kind.EPHEMERAL)),  # type: ignore[type-var]
    ):
        data = msgspec.msgpack.encode(bad)
        assert read_queued(data) == bad
        with pytest.raises(RemoteProtocolError):
            decode_transit(data)
        with pytest.raises(RemoteProtocolError):
            as_received(Push(request=3, items=(encoded(Transit, data),)))


def test_a_deliver_made_without_the_envelopes_checks_is_decoded_in_full_by_the_device() -> None:
    good = envelope("bob@beta.example")
    frame = Deliver(items=(Delivery(envelope=good, stored_at=NOW),))
    assert decode_frame(encode_frame(frame, nested_checked=True), CLIENT_FRAMES) == frame
    for bad in (dataclasses.replace(good, id=b"short"), dataclasses.replace(good, kind=9), dataclasses.replace(good, to="nobody")):
        data = encode_frame(Deliver(items=(Delivery(envelope=bad, stored_at=NOW),)), nested_checked=True)
        with pytest.raises(RemoteProtocolError):  # (core/channel.py decodes every frame so)
            decode_frame(data, CLIENT_FRAMES)
    # the frame's own types and caps still hold on the node's side
    with pytest.raises(LocalProtocolError):
        encode_frame(Deliver(items=(Delivery(envelope=dataclasses.replace(good, body="text"), stored_at=NOW),)), nested_checked=True)  # type: ignore[arg-type]


async def test_each_envelope_of_a_push_gets_the_token_judgement_it_would_get_alone(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob, carol = await beta.enroll("bob"), await beta.enroll("carol")
    assert (await beta.link(bob)).device_id == 2
    async with beta.raw(bob.first) as conn:
        bobs = (await access_token(conn, bob.address)).token
    async with beta.raw(carol.first) as conn:
        carols = (await access_token(conn, carol.address)).token
    forged = bobs[:-1] + bytes([bobs[-1] ^ 1])
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    mailboxes = [(bob.address, 1), (bob.address, 2), (carol.address, 1)]

    def item(to: str, device: int, token: bytes) -> Transit:
        return dataclasses.replace(transit(to, device, origin="peer.example"), access=token)

    async with peer_link(beta, key, "peer.example") as link:
        # spend the peer's allowance of message requests for every mailbox: from now on only
        # a valid token gets an envelope in
        for n, (to, device) in enumerate(mailboxes):
            strangers = tuple(item(to, device, b"") for _ in range(int(PER_PEER.burst) + 1))
            answer = await ask(link, Push(request=n + 1, items=strangers))
            assert isinstance(answer, PushResult) and answer.outcomes[-1] == "message_request_limit"
        cases = [
            (bob.address, 1, bobs, "ok"),
            (carol.address, 1, bobs, "message_request_limit"),  # bob's token is not carol's
            (bob.address, 1, forged, "message_request_limit"),
            (bob.address.replace("bob", "BOB"), 2, bobs, "ok"),  # another spelling of the same account
            (bob.address, 2, bobs, "ok"),  # a token is the account's, for each of its devices
            (carol.address, 1, carols, "ok"),
            (bob.address, 2, forged, "message_request_limit"),
            (carol.address, 1, b"", "message_request_limit"),
            (bob.address, 1, bobs, "ok"),
        ]
        answer = await ask(link, Push(request=9, items=tuple(item(to, d, t) for to, d, t, _ in cases)))
    assert answer == PushResult(request=9, outcomes=tuple(outcome for *_, outcome in cases))
    assert len(await mailbox_ids(beta, bob.address, 1)) == int(PER_PEER.burst) + 2
    assert len(await mailbox_ids(beta, bob.address, 2)) == int(PER_PEER.burst) + 2
    assert len(await mailbox_ids(beta, carol.address, 1)) == int(PER_PEER.burst) + 1


# An outbox row that fails a check() it passed when queued --------------------------------

from .net import ALPHA, deliveries, pin_node, queue_at, tracked, until  # noqa: E402


async def test_an_outbox_row_that_fails_its_checks_does_not_stop_the_items_behind_it(start_node: StartNode) -> None:
    # The outbox reads its rows back without their check()s (decode_stored); a row that would
    # fail one (a damaged database, or a check tightened by an upgrade since the row was
    # queued) goes out as it is and the destination refuses the whole push. Before 1c1f2da it
    # was dropped when read; it must not hold back every item behind it until it expires.
    alpha = await start_node(name=ALPHA, registration="open", federation_retry_base_s=0.01, federation_retry_max_s=0.05)
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    first, last = tracked(alpha, alice, bob.address), tracked(alpha, alice, bob.address)
    good = read_queued(first.data)
    bad = dataclasses.replace(good, envelope=dataclasses.replace(good.envelope, id=b"short"))  # type: ignore[type-var]
    damaged = msgspec.structs.replace(first, key=b"damaged", data=msgspec.msgpack.encode(bad), tracking=None)
    await queue_at(alpha, first, damaged, last)

    async def accepted() -> bool:
        return [r.state for r in await deliveries(alpha, alice, first, last)] == ["accepted"] * 2

    await until(accepted, "the items around the damaged one accepted")
    assert sorted(await mailbox_ids(beta, bob.address)) == sorted([first.tracking.id, last.tracking.id])  # type: ignore[union-attr]
    async with alpha.store() as store:
        assert await store.outbox_counts() == {}  # the damaged row was dropped
