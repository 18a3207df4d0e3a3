"""Federation between in-process nodes without links, for the device SDK tests.

``Loopback`` plugs one service per node into the nodes' device handlers (``Node(client_federation=)``,
the interface node/client_context.py's ``ClientFederation``): lookups are answered by the other node's own ``answer_local``, node
keys are the other node's identity keys, and outbox items move only when a test calls
``flush()``, through the receiving node's ``Store.receive`` and the sending node's
``Store.outbox_done``, the way the federation runtime does it. Ephemeral envelopes (typing,
presence) go at once to the other node's connected devices, never stored. Tests script what goes wrong:
a node that cannot be reached (with the note the home node gives), a wrong node key.

Witnessing is immediate: before a node answers a lookup for a peer, the asking node cosigns
its newest directory head (as the federation's witnesses do within moments of a new head),
unless a test turns ``witnessing`` off. Heads and consistency proofs come from the other
node's own directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sonet.core.address import parse_address
from sonet.core.blob_api import BlobChunk, BlobGet
from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    ErrorFrame,
    FetchBundles,
    FetchDevices,
    FetchGroupTree,
    FetchKeyPackages,
    GroupTree,
    Head,
    KeyPackages,
    SendBatch,
)
from sonet.core.envelope import Envelope
from sonet.core.errors import RemoteProtocolError
from sonet.core.federation_api import OK
from sonet.core.keydir import cosign, verify_head
from sonet.core.wire import Frame, decode_frame, encode_frame
from sonet.federation.errors import FederationError
from sonet.federation.records import GroupReceived
from sonet.federation.transit import decode_transit
from sonet.node.client_context import ClientContext
from sonet.node.client_blobs import answer_blob
from sonet.node.client_keys import answer_local
from sonet.node.group_trees import answer_group_tree
from sonet.node.store import NewEnvelope, OutboundItem, StatusUpdate, Tracking

__all__ = ["Loopback"]


@dataclass
class Loopback:
    nodes: dict[str, ClientContext] = field(default_factory=dict)
    #: nodes that cannot be reached, with the (code, message) their peers note
    down: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: node name -> the key its peers hand out for it instead of its own (a wrong pin)
    keys: dict[str, bytes] = field(default_factory=dict)
    #: (asking node, what, about) for every lookup
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    #: the asking node cosigns the other's newest head before each lookup
    witnessing: bool = True

    def plug(self, ctx: ClientContext) -> _Service:
        """The loopback service of the node whose device handlers share ``ctx``."""
        self.nodes[ctx.name] = ctx
        return _Service(self, ctx.name)

    def _peer(self, node: str) -> ClientContext:
        if node in self.down:
            raise FederationError(*self.down[node])
        if node not in self.nodes:
            raise FederationError("unknown_node", f"{node} is not a configured peer")
        return self.nodes[node]

    async def flush(self) -> dict[str, list[str]]:
        """Push every outbox to its (reachable) destination once; the outcomes per destination."""
        outcomes: dict[str, list[str]] = {}
        for ctx in list(self.nodes.values()):
            for dest in await ctx.store.outbox_destinations():
                if dest in self.down:
                    continue
                outcomes.setdefault(dest, []).extend(await self._push(ctx, dest))
        return outcomes

    async def _push(self, ctx: ClientContext, dest: str) -> list[str]:
        receiver = self._peer(dest)
        now = ctx.clock_ms()
        items = await ctx.store.outbox(dest, limit=256, max_bytes=3 * 1024 * 1024, now=now)
        # envelopes travel as SendBatch frames, group items as Transit (node/group_routing.py)
        records: list[NewEnvelope | GroupReceived] = []
        envs: list[Envelope | None] = []
        for item in items:
            env = _envelope(item.data)
            envs.append(env)
            if env is not None:
                records.append(NewEnvelope(account=env.to, device_id=env.device, id=env.id, expires=env.expires, kind=env.kind, body=env.body))
            else:
                transit = decode_transit(item.data)
                assert transit.group is not None
                records.append(GroupReceived(item=transit.group, origin=transit.origin, node=dest, ttl_ms=receiver.envelope_ttl_ms))
        results = await receiver.store.receive(records, now=receiver.clock_ms(), quota=receiver.quota)
        mailboxes: set[tuple[str, int]] = set()
        for record, outcome in zip(records, results):
            if outcome == OK:
                mailboxes |= {(record.account, record.device_id)} if isinstance(record, NewEnvelope) else record.effects.mailboxes
        receiver.registry.notify(mailboxes)
        statuses = [
            StatusUpdate(
                id=e.id, account=e.to, device=e.device, state="accepted" if outcome == OK else "failed",
                code="" if outcome == OK else outcome, at=now,
            )
            for e, outcome in zip(envs, results)
            if e is not None
        ]
        await ctx.store.outbox_done(dest, [i.seq for i in items], now=now, statuses=statuses)
        return results


def _envelope(data: bytes) -> Envelope | None:
    """The envelope of an outbox item, or None for a group item (a Transit)."""
    try:
        batch = decode_frame(data)
    except RemoteProtocolError:
        return None
    assert isinstance(batch, SendBatch)
    [env] = batch.envelopes
    return env


@dataclass
class _Service:
    """One node's federation service (federation/service.py's interface) on the loopback."""

    net: Loopback
    name: str

    async def _ask(self, account: str, frame: Frame) -> Frame:
        node = parse_address(account, remote=True).node
        self.net.calls.append((self.name, type(frame).__name__, account))
        peer = self.net._peer(node)
        if self.net.witnessing:
            await self._witness(peer)
        answer = await answer_local(peer, frame)
        if isinstance(answer, ErrorFrame):
            raise FederationError(answer.code, answer.message)
        return answer

    async def remote_devices(self, account: str) -> Devices:
        answer = await self._ask(account, FetchDevices(request=0, account=account))
        assert isinstance(answer, Devices)
        return answer

    async def remote_bundles(self, account: str, devices: tuple[int, ...], *, one_time: bool = True) -> Bundles:
        answer = await self._ask(account, FetchBundles(request=0, account=account, devices=devices, one_time=one_time))
        assert isinstance(answer, Bundles)
        return answer

    async def remote_key_packages(self, account: str, *, one_time: bool = True) -> KeyPackages:
        answer = await self._ask(account, FetchKeyPackages(request=0, account=account, one_time=one_time))
        assert isinstance(answer, KeyPackages)
        return answer

    async def remote_group_tree(self, hub: str, group: bytes, epoch: int, offset: int) -> GroupTree:
        self.net.calls.append((self.name, "FetchGroupTree", hub))
        answer = await answer_group_tree(self.net._peer(hub), FetchGroupTree(request=0, group=group, hub=hub, epoch=epoch, offset=offset))
        if isinstance(answer, ErrorFrame):
            raise FederationError(answer.code, answer.message)
        assert isinstance(answer, GroupTree)
        return answer

    async def remote_blob(self, node: str, blob: bytes, offset: int) -> BlobChunk:
        self.net.calls.append((self.name, "BlobGet", node))
        answer = await answer_blob(self.net._peer(node), BlobGet(request=0, node=node, blob=blob, offset=offset))
        if isinstance(answer, ErrorFrame):
            raise FederationError(answer.code, answer.message)
        assert isinstance(answer, BlobChunk)
        return answer

    async def _witness(self, peer: ClientContext) -> None:
        me = self.net.nodes[self.name]
        await peer.directory.publish()
        head = verify_head((await peer.directory.head()).head, node_key=peer.node_key.public, node=peer.name)
        cosignature = cosign(me.node_key, witness=me.name, head=head, now=me.clock_ms())
        await peer.directory.add_cosignature(me.name, me.node_key.public, cosignature)

    async def remote_head(self, node: str) -> Head:
        self.net.calls.append((self.name, "FetchHead", node))
        return Head(request=0, node=node, head=await self.net._peer(node).directory.head())

    async def remote_consistency(self, node: str, first: int, second: int) -> Consistency:
        self.net.calls.append((self.name, "FetchConsistency", node))
        try:
            proof = await self.net._peer(node).directory.consistency(first, second)
        except ValueError as exc:
            raise FederationError("bad_request", str(exc)) from None
        return Consistency(request=0, node=node, first=first, second=second, proof=proof)

    async def is_peer(self, node: str) -> bool:
        return node in self.net.nodes and node != self.name

    async def node_key(self, node: str) -> bytes:
        self.net.calls.append((self.name, "FetchNodeKey", node))
        return self.net.keys.get(node) or self.net._peer(node).node_key.public.to_bytes()

    def outbound(
        self, env: Envelope, *, sender_account: str, sender_device: int, now: int, access: bytes = b"", checked: bool = False
    ) -> OutboundItem:
        return OutboundItem(
            dest=parse_address(env.to).node,
            key=env.id + env.device.to_bytes(4, "big") + env.to.encode(),
            expires=env.expires,
            data=encode_frame(SendBatch(request=1, envelopes=(env,))),
            tracking=Tracking(sender_account=sender_account, sender_device=sender_device, id=env.id, account=env.to, device=env.device),
        )

    def wake(self, dests: Iterable[str]) -> None:
        pass  # tests move the outboxes with Loopback.flush()

    def send_ephemeral(self, envelopes: Iterable[Envelope]) -> None:
        """Straight to the connections open now on the recipient's node (federation/ephemeral.py
        without the link); dropped while that node is down, as the runtime drops them."""
        for env in envelopes:
            address = parse_address(env.to)
            if address.node in self.net.nodes and address.node not in self.net.down:
                self.net.nodes[address.node].registry.push_ephemeral((str(address), env.device), env)

    def queued_note(self, dest: str) -> tuple[str, str] | None:
        return self.net.down.get(dest)
