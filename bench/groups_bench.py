"""A 1,500-device group over three nodes (issue 16 item 7), suite 0x004D, in this process.

Three nodes are three real SQLite stores (node/store, the code a node runs for group items:
ordering at the hub, delivery into member mailboxes, outboxes between nodes); the federation
between them is this module moving each outbox's items into the destination's ``receive``, as
the federation's outbox worker pushes them. Every device is one leaf with its own keys
(identity key, MLS signature key, KeyPackage); devices are spread evenly over the nodes, one
account each. The hub is alpha, where the creator is.

Not every device runs a full MLS client: that would be 1,500 joins of ~0.4 s CPU each. Three
observers (the creator at alpha, the first device added on beta and on gamma) process every
commit as members do; one joiner per adding commit joins by its Welcome with the ratchet tree
fetched from the hub's store in chunks (as ``FetchGroupTree`` does) and checked against the
Welcome. The other devices' mailboxes are drained (acknowledged) after each step, as devices
reading their mail would, so the stores hold what is in flight.

Figures (``groups_`` prefix; ``_ms`` wall time, ``_cpu_ms`` CPU time of the process):
``create_ms``: from the creator's first commit to the last device's Welcome in its mailbox
(``devices - 1`` adds in commits of ``MAX_ADDS_PER_COMMIT``, each ordered at the hub, fanned out
and delivered, the observers' processing and the joins included, the devices' reading of their
mailboxes not); ``create_nodes_ms``: the nodes' part of it (submit to the last mailbox write);
``message_ms``: one application message from a member on beta to every member
mailbox (beta -> hub alpha -> one copy per node -> each node's mailboxes); ``envelopes_<node>``
/ ``bytes_<node>``: what that message put in the mailboxes of each node (one mailbox envelope
per member device there, as devices are delivered it; one copy per node in transit:
``transit_copies``), ``body_bytes_<node>``: what the node stored for it (one body per item per
node, shared by the mailbox rows: node/store/sqlite_group_bodies.py);
``commit_process_ms``: an observer's processing of the last adding commit (``Group.process`` +
merge); ``path_commit_bytes`` / ``path_commit_process_ms`` / ``hub_order_path_ms``: a member's
commit with an UpdatePath (the first after the adds encrypts to nearly every device), its
processing by another member (from its mailbox) and its ordering (verification) by a decoded
hub state in memory; ``path_commit_nodes_ms``: that commit through the nodes (submitted on
gamma, ordered at the hub, fanned out, delivered into every member mailbox);
``path_commit_stored_bytes_per_node``: the body bytes the node storing most stored for it (its
body once; the mailbox rows, one per member device, hold none); ``tree_bytes``: the public tree a joiner
fetched last; ``join_ms``: that joiner's fetch + ``Group.join``.
``handover_ms``: the creator moves the hub from alpha to beta (after the message, before the
path commit, which beta then orders): the commit ordered at alpha and fanned out, the state
sent in HANDOVER parts (``handover_state_bytes``, ``handover_parts``) and adopted by beta;
``handover_adopt_ms``: ``HubGroup.adopt`` of those parts alone (assembly and decoding);
``handover_message_ms``: the next message through the new hub into every mailbox.

Ceilings (``<figure>_ceiling``, same run): the MLS work alone, without the stores and routing:
the same adds ordered by a ``HubGroup`` in memory (``create``), one application message
encrypted and decrypted once (``message``), so each ratio is what the node path costs on top.

``--quick``: 150 devices (three adding commits), a few seconds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.federation_api import OK
from sonet.core.groups.credential import SUITE_ID, make_credential
from sonet.core.groups.handover import split_state
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import MAX_ADDS_PER_COMMIT, MAX_HANDOVER_BYTES, GroupItem, ItemKind
from sonet.core.groups.state import GroupExtension, group_context_extensions, leaf_capabilities
from sonet.core.groups.trees import CHUNK_BYTES
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Lifetime
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import ApplicationMessage, Group, StagedCommit
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import Add, GroupContextExtensions
from sonet.core.wire import decode_struct
from sonet.federation.records import GroupReceived, Quota
from sonet.federation.transit import decode_transit
from sonet.node.store import SqliteStore

__all__ = ["measure", "build", "Sim"]

CS = cipher_suite(SUITE_ID)
NODES = ("alpha.bench", "beta.bench", "gamma.bench")
HUB = NODES[0]
TTL_MS = 7 * 24 * 3600 * 1000
QUOTA = Quota(max_envelopes=100_000, max_bytes=1 << 34)
rng = os.urandom


@dataclass
class SimDevice:
    account: str
    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    group: Group | None = None

    @property
    def node(self) -> str:
        return self.account.split("@", 1)[1]

    @classmethod
    def new(cls, account: str) -> SimDevice:
        identity = SigningKey.generate(CryptoMode.CLASSICAL, rng)
        signature_priv, signature_pub = CS.signature_key_pair(rng)
        credential = make_credential(
            account=account, device=1, fingerprint=identity.public.fingerprint, identity=identity, signature_key=signature_pub
        )
        encryption_priv, encryption_pub = CS.hpke_key_pair(rng)
        init_priv, init_pub = CS.hpke_key_pair(rng)
        leaf = LeafNode(
            encryption_pub, signature_pub, Credential.basic(credential.to_identity()), leaf_capabilities(),
            LeafNodeSource.KEY_PACKAGE, Lifetime(0, 2**64 - 1),
        ).signed(CS, signature_priv)  # fmt: skip
        key_package = KeyPackage(CS.id, init_pub, leaf).signed(CS, signature_priv)
        return cls(account, key_package, init_priv, encryption_priv, signature_priv)

    @property
    def g(self) -> Group:
        assert self.group is not None
        return self.group


@dataclass
class Sim:
    """Three nodes' stores and the devices; ``pump`` moves outbox items between the nodes."""

    stores: dict[str, SqliteStore]
    devices: list[SimDevice]
    group_id: bytes = field(default_factory=lambda: rng(16))
    now: int = field(default_factory=lambda: int(time.time() * 1000))
    transit_copies: int = 0
    refs: int = 0
    #: where devices send (the group context's hub)
    hub: str = HUB

    def on(self, node: str) -> list[SimDevice]:
        return [d for d in self.devices if d.node == node]

    async def submit(self, device: SimDevice, message: MLSMessage, *, welcome: bytes = b"") -> bytes:
        """``device`` submits ``message`` to its home node (as GroupSubmit does); its ref."""
        ref = rng(16)
        item = GroupItem(
            kind=ItemKind.SUBMIT, ref=ref, group=self.group_id, epoch=device.g.epoch, seq=0, message=message.to_bytes(), welcome=welcome,
            members=(), outcome="", hub="",
        )  # fmt: skip
        await self.stores[device.node].group_submit(
            item, account=device.account, device_id=1, hub=self.hub, node=device.node, now=self.now, ttl_ms=TTL_MS, quota=QUOTA
        )
        await self.pump()
        return ref

    async def pump(self) -> None:
        """Push every outbox item to its destination (and what that queues, until none is left)."""
        moved = True
        while moved:
            moved = False
            for node, store in self.stores.items():
                for dest in NODES:
                    if dest == node:
                        continue
                    while queued := await store.outbox(dest, limit=1024, max_bytes=3 << 20, now=self.now):
                        received = [self._received(node, dest, q.data) for q in queued]
                        outcomes = await self.stores[dest].receive(received, now=self.now, quota=QUOTA)
                        if any(o != OK for o in outcomes):
                            raise RuntimeError(f"{dest} refused group items from {node}: {outcomes}")
                        await store.outbox_done(dest, [q.seq for q in queued], now=self.now)
                        moved = True

    def _received(self, origin: str, dest: str, data: bytes) -> GroupReceived:
        transit = decode_transit(data)
        assert transit.group is not None and transit.dest == dest
        if transit.group.kind == ItemKind.ORDERED:
            self.transit_copies += 1
        return GroupReceived(item=transit.group, origin=transit.origin, node=dest, ttl_ms=TTL_MS)

    async def mailbox(self, device: SimDevice) -> list[GroupItem]:
        store = self.stores[device.node]
        items = await store.pending(device.account, 1, after_seq=0, limit=10_000, now=self.now)
        return [decode_struct(GroupItem, i.body) for i in items if i.kind == 3]

    async def drain(self) -> None:
        """Every device reads and acknowledges its mailbox (the observers process first), all
        at once as connected devices do (the store commits concurrent acks together)."""

        async def read(store: SqliteStore, device: SimDevice) -> None:
            items = await store.pending(device.account, 1, after_seq=0, limit=10_000, now=self.now)
            if items:
                await store.ack(device.account, 1, [i.id for i in items], now=self.now)

        async with trio.open_nursery() as nursery:
            for device in self.devices:
                nursery.start_soon(read, self.stores[device.node], device)

    async def fetch_tree(self, epoch: int) -> bytes:
        """The tree the hub keeps for ``epoch``, chunk by chunk (what FetchGroupTree answers)."""
        parts, offset, total = [], 0, None
        while total is None or offset < total:
            found = await self.stores[HUB].group_tree(self.group_id, epoch, offset=offset, length=CHUNK_BYTES, now=self.now)
            if found is None:
                raise RuntimeError(f"the hub keeps no tree of epoch {epoch}")
            total, chunk = found
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)


async def _open(tmp: Path, n: int) -> Sim:
    devices = [SimDevice.new(f"d{i:05d}@{NODES[i % 3]}") for i in range(n)]
    stores = {node: await SqliteStore.open(tmp / f"{node}.db") for node in NODES}
    sim = Sim(stores, devices)
    for device in devices:
        await stores[device.node].register_account(
            account=device.account, fingerprint=f"fp-{device.account}", record=b"bench device record", account_identity=b"bench identity",
            device_list=b"bench device list v1", invite_hash=None, now=sim.now,
        )  # fmt: skip
    return sim


async def build(sim: Sim, observers: list[SimDevice], figures: dict) -> None:
    """The creator (devices[0]) makes the group and adds every other device, in commits of
    MAX_ADDS_PER_COMMIT; the observers and each commit's last joiner run MLS."""
    creator = sim.devices[0]
    creator.group = Group.create(
        CS, sim.group_id, creator.key_package.leaf_node, signature_priv=creator.signature_priv, encryption_priv=creator.encryption_priv,
        rng=rng, extensions=group_context_extensions(GroupExtension(HUB, (creator.account,))),
    )  # fmt: skip
    info = MLSMessage(WireFormat.GROUP_INFO, creator.g.group_info(with_ratchet_tree=False, external_pub=False)).to_bytes()
    hub = HubGroup.create(node=HUB, group=sim.group_id, group_info=info, ratchet_tree=creator.g.ratchet_tree_bytes())
    await sim.stores[HUB].create_group(account=creator.account, device_id=1, group=sim.group_id, state=hub.to_bytes(), now=sim.now)
    members = [creator]
    wall, cpu = time.perf_counter(), time.process_time()
    joins: list[float] = []
    drained = 0.0  # devices reading their mail: not the group's creation
    nodes = 0.0  # the nodes' part: ordering at the hub, fan-out, delivery into every mailbox
    for start in range(1, len(sim.devices), MAX_ADDS_PER_COMMIT):
        batch = sim.devices[start : start + MAX_ADDS_PER_COMMIT]
        staged, message, welcome = creator.g.commit(rng, proposals=[Add(d.key_package) for d in batch], ratchet_tree_in_welcome=False)
        assert welcome is not None
        welcome_bytes = MLSMessage(WireFormat.WELCOME, welcome).to_bytes()
        t0 = time.perf_counter()
        await sim.submit(creator, message, welcome=welcome_bytes)
        nodes += time.perf_counter() - t0
        creator.g.merge(staged)
        for observer in observers:
            if observer.group is not None and observer is not creator:
                t0 = time.perf_counter()
                result = observer.g.process((await sim.mailbox(observer))[-1].message)
                assert isinstance(result, StagedCommit)
                observer.g.merge(result)
                figures["groups_commit_process_ms"] = (time.perf_counter() - t0) * 1000
        joiners = [d for d in batch if d in observers] or [batch[-1]]
        for joiner in joiners:
            t0 = time.perf_counter()
            item = (await sim.mailbox(joiner))[-1]
            tree = await sim.fetch_tree(creator.g.epoch)
            joiner.group = Group.join(
                CS, MLSMessage.from_bytes(item.welcome), joiner.key_package, init_priv=joiner.init_priv,
                encryption_priv=joiner.encryption_priv, signature_priv=joiner.signature_priv, ratchet_tree=tree,
            )  # fmt: skip
            joins.append(time.perf_counter() - t0)
            figures["groups_tree_bytes"] = len(tree)
            if joiner not in observers:
                joiner.group = None  # it joined and checked; it runs no further
        members += batch
        t0 = time.perf_counter()
        await sim.drain()
        drained += time.perf_counter() - t0
    figures["groups_create_ms"] = (time.perf_counter() - wall - drained) * 1000
    figures["groups_create_cpu_ms"] = (time.process_time() - cpu) * 1000
    figures["groups_create_nodes_ms"] = nodes * 1000
    figures["groups_join_ms"] = statistics.median(joins) * 1000
    figures["groups_add_commits"] = len(range(1, len(sim.devices), MAX_ADDS_PER_COMMIT))


async def _stored(sim: Sim) -> dict[str, tuple[int, int]]:
    """(envelopes, body bytes) in each node's mailboxes now, as the devices are delivered them."""
    found = {}
    for node, store in sim.stores.items():
        count = size = 0
        for device in sim.on(node):
            for item in await store.pending(device.account, 1, after_seq=0, limit=10_000, now=sim.now):
                count, size = count + 1, size + len(item.body)
        found[node] = (count, size)
    return found


async def _stored_bytes(store: SqliteStore) -> int:
    """What a node's mailboxes hold on disk: the group bodies (once each) and every row's own body."""
    return await store._read(
        lambda conn: conn.execute("SELECT (SELECT coalesce(sum(size), 0) FROM group_bodies) + (SELECT coalesce(sum(length(body)), 0) FROM mailbox)").fetchone()[0]
    )


async def message(sim: Sim, sender: SimDevice, reader: SimDevice, figures: dict) -> None:
    """One application message from ``sender`` to every member mailbox."""
    copies = sim.transit_copies
    wall, cpu = time.perf_counter(), time.process_time()
    await sim.submit(sender, sender.g.encrypt(os.urandom(100), rng))
    figures["groups_message_ms"] = (time.perf_counter() - wall) * 1000
    figures["groups_message_cpu_ms"] = (time.process_time() - cpu) * 1000
    figures["groups_transit_copies"] = sim.transit_copies - copies
    stored = await _stored(sim)
    for node, (count, size) in stored.items():
        figures[f"groups_envelopes_{node.split('.')[0]}"] = count
        figures[f"groups_bytes_{node.split('.')[0]}"] = size
        figures[f"groups_body_bytes_{node.split('.')[0]}"] = await _stored_bytes(sim.stores[node])
    if sum(count for count, _ in stored.values()) != len(sim.devices):
        raise RuntimeError(f"the message reached {stored}, not {len(sim.devices)} mailboxes")
    got = reader.g.process((await sim.mailbox(reader))[-1].message)
    assert isinstance(got, ApplicationMessage)
    # ceiling: the MLS work alone, encrypt once and decrypt once
    t0 = time.perf_counter()
    sealed = sender.g.encrypt(os.urandom(100), rng)
    reader.g.process(sealed)
    figures["groups_message_ms_ceiling"] = (time.perf_counter() - t0) * 1000
    await sim.drain()


async def path_commit(sim: Sim, committer: SimDevice, reader: SimDevice, hub_state: bytes, figures: dict) -> None:
    """A member's commit with an UpdatePath: its size, the hub's ordering, its way through the
    nodes into every mailbox, a member's processing."""
    staged, commit, _ = committer.g.commit(rng, path=True)
    data = commit.to_bytes()
    figures["groups_path_commit_bytes"] = len(data)
    hub = HubGroup.from_bytes(hub_state)
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=rng(16), group=sim.group_id, epoch=committer.g.epoch, seq=0, message=data, welcome=b"", members=(),
        outcome="", hub="",
    )  # fmt: skip
    t0 = time.perf_counter()
    outcome = hub.order(item)
    figures["groups_hub_order_path_ms"] = (time.perf_counter() - t0) * 1000
    if outcome.code != OK:
        raise RuntimeError(f"the hub refused the path commit: {outcome.code}")
    before = {node: await _stored_bytes(store) for node, store in sim.stores.items()}
    t0 = time.perf_counter()
    await sim.submit(committer, commit)
    figures["groups_path_commit_nodes_ms"] = (time.perf_counter() - t0) * 1000
    stored = await _stored(sim)
    if sum(count for count, _ in stored.values()) != len(sim.devices):
        raise RuntimeError(f"the path commit reached {stored}, not {len(sim.devices)} mailboxes")
    figures["groups_path_commit_stored_bytes_per_node"] = max([await _stored_bytes(store) - before[node] for node, store in sim.stores.items()])
    received = (await sim.mailbox(reader))[-1].message
    t0 = time.perf_counter()
    result = reader.g.process(received)
    assert isinstance(result, StagedCommit)
    reader.g.merge(result)
    figures["groups_path_commit_process_ms"] = (time.perf_counter() - t0) * 1000
    committer.g.merge(staged)
    await sim.drain()


async def handover(sim: Sim, admin: SimDevice, observers: list[SimDevice], figures: dict) -> None:
    """``admin`` moves the hub from alpha to beta: the state goes in parts, beta adopts it and
    orders the next message."""
    new_hub = NODES[1]
    move = group_context_extensions(GroupExtension(new_hub, (admin.account,)))
    staged, commit, _ = admin.g.commit(rng, proposals=[GroupContextExtensions(move)])
    t0 = time.perf_counter()
    await sim.submit(admin, commit)
    figures["groups_handover_ms"] = (time.perf_counter() - t0) * 1000
    admin.g.merge(staged)
    for observer in observers:
        if observer is not admin:
            result = observer.g.process((await sim.mailbox(observer))[-1].message)
            assert isinstance(result, StagedCommit)
            observer.g.merge(result)
    sim.hub = new_hub
    states = {node: await _hub_state(store) for node, store in sim.stores.items()}
    if [node for node, state in states.items() if state is not None] != [new_hub]:
        raise RuntimeError("the group is not hosted by the new hub alone")
    old = await sim.stores[HUB]._read(lambda conn: bytes(conn.execute("SELECT state FROM hosted_groups").fetchone()[0]))
    hub = HubGroup.from_bytes(old)
    parts = split_state(group=sim.group_id, epoch=hub.epoch, seq=hub.seq, hub=new_hub, state=old)
    figures["groups_handover_state_bytes"] = len(old)
    figures["groups_handover_parts"] = len(parts)
    figures["groups_handover_over_one_item"] = len(old) > MAX_HANDOVER_BYTES
    t0 = time.perf_counter()
    HubGroup.adopt(node=new_hub, item=parts)
    figures["groups_handover_adopt_ms"] = (time.perf_counter() - t0) * 1000
    await sim.drain()
    t0 = time.perf_counter()
    ref = await sim.submit(observers[2], observers[2].g.encrypt(os.urandom(100), rng))
    figures["groups_handover_message_ms"] = (time.perf_counter() - t0) * 1000
    reached = 0
    for device in sim.devices:
        reached += sum(1 for i in await sim.mailbox(device) if i.ref == ref and i.hub == new_hub)
    if reached != len(sim.devices):
        raise RuntimeError(f"the message through the new hub reached {reached} mailboxes, not {len(sim.devices)}")
    await sim.drain()


async def _hub_state(store: SqliteStore) -> bytes | None:
    """The state of the group a node hosts now (not one it handed over)."""
    row = await store._read(lambda conn: conn.execute("SELECT state FROM hosted_groups WHERE moved_to IS NULL").fetchone())
    return None if row is None else bytes(row[0])


def ceiling_create(sim: Sim) -> float:
    """The same adds ordered by a HubGroup in memory, no stores: ms."""
    creator = SimDevice.new(sim.devices[0].account)
    creator.group = Group.create(
        CS, sim.group_id, creator.key_package.leaf_node, signature_priv=creator.signature_priv, encryption_priv=creator.encryption_priv,
        rng=rng, extensions=group_context_extensions(GroupExtension(HUB, (creator.account,))),
    )  # fmt: skip
    info = MLSMessage(WireFormat.GROUP_INFO, creator.g.group_info(with_ratchet_tree=False, external_pub=False)).to_bytes()
    hub = HubGroup.create(node=HUB, group=sim.group_id, group_info=info, ratchet_tree=creator.g.ratchet_tree_bytes())
    t0 = time.perf_counter()
    for start in range(1, len(sim.devices), MAX_ADDS_PER_COMMIT):
        batch = sim.devices[start : start + MAX_ADDS_PER_COMMIT]
        staged, message, welcome = creator.g.commit(rng, proposals=[Add(d.key_package) for d in batch], ratchet_tree_in_welcome=False)
        assert welcome is not None
        item = GroupItem(
            kind=ItemKind.SUBMIT, ref=rng(16), group=sim.group_id, epoch=creator.g.epoch, seq=0, message=message.to_bytes(),
            welcome=MLSMessage(WireFormat.WELCOME, welcome).to_bytes(), members=(), outcome="", hub="",
        )  # fmt: skip
        if hub.order(item).code != OK:
            raise RuntimeError("the in-memory hub refused an add")
        hub.public.tree.to_bytes()  # what the node keeps for the joiners
        creator.g.merge(staged)
    return (time.perf_counter() - t0) * 1000


async def run(n: int, tmp: Path) -> dict:
    figures: dict = {"groups_devices": n}
    t0 = time.process_time()
    sim = await _open(tmp, n)
    figures["groups_setup_cpu_s"] = round(time.process_time() - t0, 1)
    try:
        observers = [sim.devices[0], sim.devices[1], sim.devices[2]]  # one on each node
        await build(sim, observers, figures)
        figures["groups_create_ms_ceiling"] = ceiling_create(sim)
        await message(sim, observers[1], observers[2], figures)
        await handover(sim, observers[0], observers, figures)
        # the hub's state as stored (no Store method reads it: only the hub's ordering does)
        hub_state = await _hub_state(sim.stores[sim.hub])
        assert hub_state is not None
        await path_commit(sim, observers[2], observers[1], hub_state, figures)
    finally:
        for store in sim.stores.values():
            await store.close()
    return figures


def measure(quick: bool) -> dict:
    n = 150 if quick else 1500  # quick: three adding commits, so members process one
    with tempfile.TemporaryDirectory(prefix="sonet-groups-bench-") as tmp:
        return trio.run(run, n, Path(tmp))


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure("--quick" in sys.argv), indent=1))
