"""The ``/client`` API towards accounts of other nodes: lookups through the federation service,
SendBatch into the outbox, FetchNodeKey, FetchStatus, and ``answer_local`` for peers' queries.

A real node runs in-process (tests/node/conftest.py) with a fake federation service plugged
into its ClientContext (the interface of federation/service.py): canned answers, scripted
failures, and a record of what the handlers asked of it. What is committed is read back from
the node's store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import trio

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.client_api import (
    Accepted,
    Bundle,
    Bundles,
    DeviceEntry,
    Consistency,
    DeviceMismatch,
    Devices,
    DirectoryProof,
    EnvelopeStatus,
    ErrorFrame,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchHead,
    FetchNodeKey,
    FetchStatus,
    Head,
    NodeKey,
    Ping,
    Pong,
    PublishPrekeys,
    SendBatch,
    SignedHead,
    Statuses,
)
from sonet.core.envelope import Envelope, Kind
from sonet.core.federation_api import REFUSALS
from sonet.core.keydir import MerkleTree, encode_entry, leaf_hash, sign_head, verify_directory_proof
from sonet.core.wire import Frame, decode_frame, encode_frame, packb
from sonet.federation.errors import FederationError
from sonet.node.client_context import ClientContext
from sonet.node.client_keys import answer_local
from sonet.node.store import OutboundItem, StatusUpdate, Tracking

from .conftest import HANG_S, NODE_NAME, NodeParams, RunningNode, StartNode
from .kit import Account, Member, NodeError, new_identity, opaque_envelope, prekey, wall_ms

ALICE = f"alice@{NODE_NAME}"
BETA = "beta.example"
BOB = f"bob@{BETA}"


@dataclass
class FakeFederation:
    """The client-facing half of federation/service.py's ``Federation``, scripted by tests."""

    devices: dict[str, Devices] = field(default_factory=dict)
    bundles: dict[str, Bundles] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    heads: dict[str, SignedHead] = field(default_factory=dict)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: raised by every remote method while set
    error: FederationError | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    woken: list[set[str]] = field(default_factory=list)
    #: what send_ephemeral was handed
    ephemeral: list[Envelope] = field(default_factory=list)

    def _fail(self) -> None:
        if self.error is not None:
            raise self.error

    async def remote_devices(self, account: str) -> Devices:
        self.calls.append(("remote_devices", account))
        self._fail()
        if account not in self.devices:
            raise FederationError("unknown_account", f"no account {account} on {parse_address(account).node}")
        return self.devices[account]

    async def remote_bundles(self, account: str, devices: tuple[int, ...], *, one_time: bool = True) -> Bundles:
        self.calls.append(("remote_bundles", account, devices))
        self._fail()
        return self.bundles[account]

    async def node_key(self, node: str) -> bytes:
        self.calls.append(("node_key", node))
        self._fail()
        if node not in self.keys:
            raise FederationError("unknown_node", f"{node} is not a configured peer")
        return self.keys[node]

    async def remote_head(self, node: str) -> Head:
        self.calls.append(("remote_head", node))
        self._fail()
        if node not in self.heads:
            raise FederationError("unknown_node", f"{node} is not a configured peer")
        return Head(request=0, node=node, head=self.heads[node])

    async def remote_consistency(self, node: str, first: int, second: int) -> Consistency:
        self.calls.append(("remote_consistency", node, first, second))
        self._fail()
        return Consistency(request=0, node=node, first=first, second=second, proof=(bytes(32),) * 2)

    def outbound(
        self, env: Envelope, *, sender_account: str, sender_device: int, now: int, access: bytes = b"", checked: bool = False
    ) -> OutboundItem:
        self.calls.append(("outbound", env, sender_account, sender_device, now))
        return OutboundItem(
            dest=parse_address(env.to).node,
            key=env.id + env.device.to_bytes(4, "big") + env.to.encode(),
            expires=env.expires,
            data=encode_frame(SendBatch(request=1, envelopes=(env,))),
            tracking=Tracking(sender_account=sender_account, sender_device=sender_device, id=env.id, account=env.to, device=env.device),
        )

    def wake(self, dests: Iterable[str]) -> None:
        self.woken.append(set(dests))

    def send_ephemeral(self, envelopes: Iterable[Envelope]) -> None:
        self.ephemeral.extend(envelopes)

    def queued_note(self, dest: str) -> tuple[str, str] | None:
        return self.notes.get(dest)


@dataclass
class Federated:
    """A running node whose ClientContext carries ``fake`` (None: a node that does not federate)."""

    node: RunningNode
    fake: FakeFederation | None
    ctx: ClientContext


@pytest.fixture
def start_federated(start_node: StartNode, node_params: NodeParams) -> Callable[..., Any]:
    """``await start_federated(fake)`` -> Federated: ``start_node`` with ``fake`` as what the
    node's device handlers reach other nodes through, and their context."""

    async def start(fake: FakeFederation | None, **config: Any) -> Federated:
        node_params.client_federation = lambda ctx: fake
        running = await start_node(**config)
        assert running.node.context is not None
        return Federated(node=running, fake=fake, ctx=running.node.context)

    return start


def remote_proof(address: str, identity: bytes, device_list: bytes) -> DirectoryProof:
    """What the account's node proves about it: a one-leaf log signed by a stand-in node key
    (this node passes remote answers on unchanged; the device verifies them)."""
    leaf = encode_entry(account=address, identity=identity, device_list=device_list, prev=-1, at=wall_ms())
    root = MerkleTree([leaf_hash(leaf)]).root()
    head = sign_head(new_identity(), node=parse_address(address).node, size=1, root=root, at=wall_ms())
    return DirectoryProof(leaf=leaf, index=0, path=(), head=SignedHead(head=head, cosignatures=()))


def remote_account(address: str = BOB, devices: int = 2) -> tuple[Account, Devices]:
    """An account of another node with ``devices`` devices, and the Devices its node answers
    (request 0: the federation service's answers are renumbered by the handler)."""
    account = Account(address=address)
    for device in range(1, devices + 1):
        member = Member.new(address)
        member.device_id = device
        account.devices[device] = member
    account.version = 1
    device_list = account.sign_list(account.fingerprints(), version=1)
    listed = Devices(
        request=0,
        account=address,
        account_identity=account.identity_bytes,
        device_list=device_list,
        devices=tuple(DeviceEntry(device=d, record=m.record) for d, m in sorted(account.devices.items())),
        proof=remote_proof(address, account.identity_bytes, device_list),
    )
    return account, listed


async def send(conn: Any, *envelopes: Envelope) -> Frame:
    return await conn.request(lambda n: SendBatch(request=n, envelopes=envelopes))


async def deliveries(at: RunningNode, sender: Member, ids: Iterable[bytes]) -> list[tuple[bytes, str, int, str, str]]:
    async with at.store() as store:
        rows = await store.deliveries(sender.account, sender.device_id, list(ids))
    return [(r.id, r.dest, r.device, r.state, r.code) for r in rows]


async def outbox(at: RunningNode, dest: str = BETA) -> list[Envelope]:
    async with at.store() as store:
        items = await store.outbox(dest, limit=1000, max_bytes=10**9, now=wall_ms())
    return [env for item in items for env in decode_frame(item.data).envelopes]  # type: ignore[attr-defined]


# Lookups for accounts of other nodes --------------------------------------------------------


async def test_remote_devices_and_bundles_come_from_the_federation_renumbered(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        bob, fake.devices[BOB] = remote_account()
        fake.bundles[BOB] = Bundles(
            request=0,
            account=BOB,
            account_identity=bob.identity_bytes,
            device_list=fake.devices[BOB].device_list,
            bundles=(Bundle(device=2, record=bob.device(2).record, signed_prekey=prekey(bob.device(2).identity, "x25519", 1), pq_prekey=None, one_time=None),),
            proof=fake.devices[BOB].proof,
        )
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            await conn.request(lambda n: Ping(request=n))  # numbers after 1: renumbering shows
            devices = await conn.request(lambda n: FetchDevices(request=n, account="Bob@Beta.Example"))
            assert devices == replace(fake.devices[BOB], request=2)
            bundles = await conn.request(lambda n: FetchBundles(request=n, account=BOB, devices=(2,)))
            assert bundles == replace(fake.bundles[BOB], request=3)
        assert fake.calls == [("remote_devices", BOB), ("remote_bundles", BOB, (2,))]


async def test_remote_lookup_failures_are_one_clear_error_and_the_connection_stays(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            with pytest.raises(NodeError) as err:  # the remote node's own refusal passes through
                await conn.request(lambda n: FetchDevices(request=n, account=BOB))
            assert (err.value.code, str(err.value)) == ("unknown_account", f"unknown_account: no account {BOB} on {BETA}")
            fake.error = FederationError("wrong_identity", f"cannot reach {BETA}: it presented a different identity key than pinned")
            for build in (
                lambda n: FetchDevices(request=n, account=BOB),
                lambda n: FetchBundles(request=n, account=BOB, devices=()),
                lambda n: FetchNodeKey(request=n, node=BETA),
            ):
                with pytest.raises(NodeError) as err:
                    await conn.request(build)
                assert err.value.code == "wrong_identity"
                assert str(err.value).endswith("it presented a different identity key than pinned")
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
            # malformed addresses never reach the federation service
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchDevices(request=n, account="bob@-beta"))
            assert err.value.code == "bad_address"
        assert ("remote_devices", "bob@-beta") not in fake.calls


async def test_without_federation_other_nodes_are_unknown(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_federated(None)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            for build in (
                lambda n: FetchDevices(request=n, account=BOB),
                lambda n: FetchNodeKey(request=n, node=BETA),
                lambda n: FetchHead(request=n, node=BETA),
                lambda n: FetchConsistency(request=n, node=BETA, first=1, second=1),
                lambda n: SendBatch(request=n, envelopes=(opaque_envelope((BOB, 1)),)),
                lambda n: SendBatch(request=n, envelopes=(opaque_envelope((BOB, 1), kind=Kind.EPHEMERAL),)),
            ):
                with pytest.raises(NodeError) as err:
                    await conn.request(build)
                assert err.value.code == "unknown_node" and "federation is not configured" in str(err.value)
        assert await outbox(alpha.node) == []


# Sending to accounts of other nodes ------------------------------------------------------------


async def test_a_batch_for_another_node_is_queued_with_the_local_copies_in_one_commit(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        _bob, fake.devices[BOB] = remote_account()
        alpha = await start_federated(fake, envelope_ttl_ms=3600_000)
        alice = await alpha.node.enroll("alice")
        laptop = await alpha.node.link(alice)
        msg_id = os.urandom(16)
        far = wall_ms() + limits.DEFAULT_ENVELOPE_TTL_MS
        envs = [opaque_envelope((BOB, d), msg_id=msg_id, expires=far) for d in (1, 2)]
        own = opaque_envelope(laptop, msg_id=msg_id)
        async with alpha.node.raw(alice.first) as conn:
            reply = await send(conn, replace(envs[0], to="BOB@beta.example"), envs[1], own)
        # stored counts the new mailbox envelopes only
        assert isinstance(reply, Accepted) and reply.stored == 1
        assert [i.id for i in await alpha.node.pending(ALICE, laptop.device_id)] == [msg_id]
        queued = await outbox(alpha.node)
        assert [(e.to, e.device, e.body) for e in queued] == [(BOB, 1, envs[0].body), (BOB, 2, envs[1].body)]
        # capped at this node's envelope TTL, like its own mailboxes
        assert all(e.expires <= wall_ms() + 3600_000 for e in queued)
        made = [call[2:] for call in fake.calls if call[0] == "outbound"]  # (sender account, device, now)
        assert [m[:2] for m in made] == [(ALICE, 1), (ALICE, 1)] and all(m[2] <= wall_ms() for m in made)
        assert fake.woken == [{BETA}]
        assert await deliveries(alpha.node, alice.first, [msg_id]) == [(msg_id, BETA, 1, "queued", ""), (msg_id, BETA, 2, "queued", "")]


async def test_a_stale_view_of_a_remote_account_gets_a_device_mismatch_and_nothing_is_stored(
    start_federated: Callable[..., Any],
) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=2)
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        laptop = await alpha.node.link(alice)
        async with alpha.node.raw(alice.first) as conn:
            reply = await send(conn, opaque_envelope((BOB, 1)), opaque_envelope((BOB, 3)), opaque_envelope(laptop))
            assert isinstance(reply, DeviceMismatch)
            assert (reply.account, reply.missing, reply.extra) == (BOB, (2,), (3,))
        assert await outbox(alpha.node) == [] and await alpha.node.pending(ALICE, laptop.device_id) == []
        assert fake.woken == []


async def test_remote_typing_goes_to_federation_unstored_and_a_failed_lookup_stores_nothing(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=1)
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        laptop = await alpha.node.link(alice)
        async with alpha.node.raw(alice.first) as conn:
            typing = opaque_envelope((BOB, 1), kind=Kind.EPHEMERAL)
            reply = await send(conn, replace(typing, to="BOB@beta.example"))
            assert isinstance(reply, Accepted) and reply.stored == 0
            # the devices are checked as for any envelope; nothing is queued or woken
            assert fake.calls == [("remote_devices", BOB)] and fake.woken == []
            assert [(e.id, e.to, e.kind) for e in fake.ephemeral] == [(typing.id, BOB, Kind.EPHEMERAL)]
            stale = await send(conn, opaque_envelope((BOB, 2), kind=Kind.EPHEMERAL))
            assert isinstance(stale, DeviceMismatch) and len(fake.ephemeral) == 1
            fake.error = FederationError("unreachable", f"cannot reach {BETA}: connection refused")
            with pytest.raises(NodeError) as err:
                await send(conn, opaque_envelope(laptop), opaque_envelope((BOB, 1)))
            assert err.value.code == "unreachable" and str(err.value).endswith("connection refused")
        assert await outbox(alpha.node) == [] and await alpha.node.pending(ALICE, laptop.device_id) == []


async def test_a_full_local_mailbox_refuses_the_remote_part_of_the_batch_too(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=1)
        alpha = await start_federated(fake, mailbox_max_envelopes=1)
        alice = await alpha.node.enroll("alice")
        laptop = await alpha.node.link(alice)
        async with alpha.node.raw(alice.first) as conn:
            assert isinstance(await send(conn, opaque_envelope(laptop)), Accepted)
            msg_id = os.urandom(16)
            with pytest.raises(NodeError) as err:
                await send(conn, opaque_envelope(laptop, msg_id=msg_id), opaque_envelope((BOB, 1), msg_id=msg_id))
            assert err.value.code == "mailbox_full"
        assert await outbox(alpha.node) == [] and await deliveries(alpha.node, alice.first, [msg_id]) == []
        assert fake.woken == [] and len(await alpha.node.pending(ALICE, laptop.device_id)) == 1


# Node keys ------------------------------------------------------------------------------------


async def test_node_keys_of_this_node_and_of_others(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        beta_key = new_identity().public.to_bytes()
        fake = FakeFederation(keys={BETA: beta_key})
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            own = await conn.request(lambda n: FetchNodeKey(request=n, node="Alpha.Example"))
            assert own == NodeKey(request=1, node=NODE_NAME, key=alpha.node.identity.public.to_bytes())
            other = await conn.request(lambda n: FetchNodeKey(request=n, node=BETA))
            assert other == NodeKey(request=2, node=BETA, key=beta_key)
            for node_name, code in (("gamma.example", "unknown_node"), ("not a name", "bad_address"), ("", "bad_address")):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: FetchNodeKey(request=n, node=node_name))
                assert err.value.code == code
        assert fake.calls == [("node_key", BETA), ("node_key", "gamma.example")]
        # only registered devices may ask
        async with alpha.node.raw(new_identity()) as stranger:
            with pytest.raises(NodeError) as err:
                await stranger.request(lambda n: FetchNodeKey(request=n, node=BETA))
            assert err.value.code == "not_registered"


async def test_directory_heads_and_consistency_of_other_nodes_come_from_the_federation(
    start_federated: Callable[..., Any],
) -> None:
    with trio.fail_after(HANG_S):
        _bob, listed = remote_account()
        fake = FakeFederation(heads={BETA: listed.proof.head})
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            head = await conn.request(lambda n: FetchHead(request=n, node="Beta.Example"))
            assert head == Head(request=1, node=BETA, head=listed.proof.head)
            proof = await conn.request(lambda n: FetchConsistency(request=n, node=BETA, first=2, second=5))
            assert proof == Consistency(request=2, node=BETA, first=2, second=5, proof=(bytes(32),) * 2)
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchHead(request=n, node="gamma.example"))
            assert err.value.code == "unknown_node"
            fake.error = FederationError("split_view", f"{BETA} showed two different versions of its key directory")
            for build in (lambda n: FetchHead(request=n, node=BETA), lambda n: FetchConsistency(request=n, node=BETA, first=1, second=2)):
                with pytest.raises(NodeError) as err:
                    await conn.request(build)
                assert err.value.code == "split_view"
        assert fake.calls == [
            ("remote_head", BETA),
            ("remote_consistency", BETA, 2, 5),
            ("remote_head", "gamma.example"),
            ("remote_head", BETA),
            ("remote_consistency", BETA, 1, 2),
        ]


# Delivery status ------------------------------------------------------------------------------


async def test_fetch_status_follows_the_rows_of_the_sending_device_only(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = FakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=2)
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        laptop = await alpha.node.link(alice)
        msg_id, unknown = os.urandom(16), os.urandom(16)
        async with alpha.node.raw(alice.first) as conn:
            await send(conn, opaque_envelope((BOB, 1), msg_id=msg_id), opaque_envelope((BOB, 2), msg_id=msg_id), opaque_envelope(laptop, msg_id=msg_id))
            status = await conn.request(lambda n: FetchStatus(request=n, ids=(msg_id, unknown)))
            assert isinstance(status, Statuses) and status.request == 2
            # the node and device number: the home node keeps no record of the account
            assert [(s.id, s.node, s.device, s.state, s.code, s.message) for s in status.items] == [
                (msg_id, BETA, 1, "queued", "", ""),
                (msg_id, BETA, 2, "queued", "", ""),
            ]
            # why it has not arrived yet, when the federation service knows
            fake.notes[BETA] = ("unreachable", f"cannot reach {BETA}: connection refused")
            status = await conn.request(lambda n: FetchStatus(request=n, ids=(msg_id,)))
            assert {(s.state, s.code, s.message) for s in status.items} == {("queued", *fake.notes[BETA])}

            # the outbox worker's outcomes: device 1 accepted, device 2 was removed meanwhile
            now = wall_ms()
            async with alpha.node.store() as store:
                seqs = [i.seq for i in await store.outbox(BETA, limit=10, max_bytes=10**9, now=now)]
                await store.outbox_done(
                    BETA,
                    seqs,
                    now=now,
                    statuses=[
                        StatusUpdate(id=msg_id, account=BOB, device=1, state="accepted", code="", at=now),
                        StatusUpdate(id=msg_id, account=BOB, device=2, state="failed", code="unknown_device", at=now),
                    ],
                )
            status = await conn.request(lambda n: FetchStatus(request=n, ids=(msg_id,)))
            assert list(status.items) == [
                EnvelopeStatus(id=msg_id, node=BETA, device=1, state="accepted", code="", message="", at=now),
                EnvelopeStatus(id=msg_id, node=BETA, device=2, state="failed", code="unknown_device", message=REFUSALS["unknown_device"], at=now),
            ]
            empty = await conn.request(lambda n: FetchStatus(request=n, ids=()))
            assert isinstance(empty, Statuses) and empty.items == ()
        # another device of the same account sees none of it
        async with alpha.node.raw(laptop) as other:
            status = await other.request(lambda n: FetchStatus(request=n, ids=(msg_id,)))
            assert isinstance(status, Statuses) and status.items == ()


async def test_fetch_status_refuses_malformed_requests_and_strangers(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_federated(FakeFederation())
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(new_identity()) as stranger:
            with pytest.raises(NodeError) as err:
                await stranger.request(lambda n: FetchStatus(request=n, ids=(bytes(16),)))
            assert err.value.code == "not_registered"
        for ids in ([bytes(15)], [bytes(16)] * (limits.MAX_STATUS_IDS + 1)):
            async with alpha.node.raw(alice.first) as conn:
                # built by hand: the encoder refuses to produce what the node must reject
                await conn.send_encoded(packb([FetchStatus.TAG, 1, ids]))
                await conn.closed.wait()
                assert isinstance(conn.error, NodeError) and conn.error.code == "bad_input"
        async with alpha.node.raw(alice.first) as conn:  # the node serves on
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)


# Queries from peers for this node's accounts -----------------------------------------------


async def test_answer_local_serves_peers_with_the_same_checks_as_devices(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_federated(FakeFederation())
        alice = await alpha.node.enroll("alice")
        ctx = alpha.ctx
        x25519 = prekey(alice.first.identity, "x25519", 7)
        async with alpha.node.raw(alice.first) as conn:
            await conn.request(lambda n: PublishPrekeys(request=n, signed_prekey=prekey(alice.first.identity, "x25519", 1), pq_last_resort=None, one_time=(x25519,), pq_one_time=()))

        devices = await answer_local(ctx, FetchDevices(request=9, account="ALICE@alpha.example"))
        assert isinstance(devices, Devices) and (devices.request, devices.account) == (9, ALICE)
        assert [d.device for d in devices.devices] == [1]
        # peers get the same directory proof as devices do
        proven = verify_directory_proof(devices.proof, node=NODE_NAME, node_key=alpha.node.identity.public, account=ALICE)
        assert (devices.account_identity, devices.device_list) == (proven.entry.identity, proven.entry.device_list)

        refused = await answer_local(ctx, FetchBundles(request=10, account=ALICE, devices=(1, 2)))
        assert isinstance(refused, ErrorFrame) and (refused.request, refused.code) == (10, "unknown_recipient")
        bundles = await answer_local(ctx, FetchBundles(request=11, account=ALICE, devices=()))
        assert isinstance(bundles, Bundles) and bundles.request == 11 and bundles.proof == devices.proof
        [bundle] = bundles.bundles
        assert bundle.one_time == x25519  # the refused request handed out nothing
        again = await answer_local(ctx, FetchBundles(request=12, account=ALICE, devices=(1,)))
        assert isinstance(again, Bundles) and again.bundles[0].one_time is None  # handed out once

        for frame, code in (
            (FetchDevices(request=13, account=f"nobody@{NODE_NAME}"), "unknown_account"),
            (FetchDevices(request=14, account=BOB), "unknown_node"),
            (FetchBundles(request=15, account="not an address", devices=()), "bad_address"),
            (FetchNodeKey(request=16, node=NODE_NAME), "unexpected_frame"),
        ):
            answer = await answer_local(ctx, frame)
            assert isinstance(answer, ErrorFrame) and (answer.request, answer.code) == (frame.request, code), answer
