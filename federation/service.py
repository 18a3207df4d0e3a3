"""The node's federation service: what node/ uses of federation (ARCHITECTURE §6).

INTERFACE CONTRACT (the node's client handlers are written against exactly this):

``Federation(name=, identity=, policy=, store=, local=, delivered=, clock_ms=, rng=, quota=,
envelope_ttl_ms=, settings=, status=, directory=)``; what it needs of the node is typed in
federation/ports.py:
  name      this node's name;  identity  its SigningKey;  policy  its CryptoPolicy
  store     ``FederationStore``: the part of the node's Store federation uses. What it raises
            when it cannot do its job now (``StoreFailure``: "database is locked", a full disk)
            never stops the node: a background task logs one line and tries again at its next
            interval, a peer's request is answered ``unavailable``, a remote method raises
            FederationError ``unavailable``.
  local     ``LocalAnswer``: answers a FetchDevices / FetchBundles / FetchKeyPackages for an
            account of THIS node with Devices / Bundles / KeyPackages, or an ErrorFrame (same
            request number)
  delivered ``Delivered``: called with the (account, device) mailboxes that got new envelopes
            from a peer
  clock_ms  ms since the epoch;  rng  os.urandom-like (jitter)
  quota     the node's mailbox Quota, for what peers push
  envelope_ttl_ms  caps the expiry of envelopes this node stores or relays (default 30 days)
  settings  FederationSettings (retries, request deadline, rate limits; defaults for production)
  status    the FederationStatus the gate counts admissions and refusals in (default: a new one)
  directory ``KeyDirectory``: this node's key directory (node/directory.py NodeDirectory).
            Peers get its heads, proofs and cosign it. None: this node keeps no directory (it
            still witnesses its peers).

``await nursery.start(federation.run)``  runs outbox workers and link upkeep until cancelled
                                          (start it before serving ``/federation``).
``federation.gate``                       the PeerGate for the ``/federation`` route.
``await federation.serve(link, done)``  serves one admitted inbound link.
``directory_changed()``                   this node signed a new head: gossip it to the direct
                                          peers now (in the background; never blocks)

Witnessing (federation/witness.py, gossip.py): every configured peer's head is fetched, checked
against the last one this node cosigned (consistency proof), cosigned and handed back, every
``settings.witness_interval_s``, at once when a peer gossips a new head and when it greets this
node with its head (it started, or was added; rate-limited per peer); heads are gossiped to the
direct peers (own head at once, all witnessed ones every ``gossip_interval_s``). A node
caught showing two views of its directory - on signed evidence only: a "fork" (two heads of one
size, different roots) or an "inconsistent" pair (a consistency proof that does not verify) -
is recorded in the store and refused from then on; errors and timeouts are never evidence.

For the client handlers (node/client_keys.py, node/client_messages.py, ...):

``await remote_devices(account) -> Devices``      cached for limits.REMOTE_DEVICES_TTL_MS (and
                                                   served up to a day stale while that node
                                                   cannot answer: sends to it queue)
``await remote_bundles(account, devices, *, one_time=True) -> Bundles``   never cached (one-time
                                                   keys; ``one_time`` False: without them)
``await remote_key_packages(account, *, one_time=True) -> KeyPackages``   never cached either
                                                   (one-time KeyPackages; ``one_time`` False:
                                                   last-resort ones only)
                                                   All three: the head in the answer's proof must
                                                   verify with the node's key ("invalid"), and
                                                   is compared with the witnessed head: a fork
                                                   is a split ("split_view"). Cosigning a newer
                                                   head of a node drops its cached device lists.
``await remote_head(node) -> Head``                node's newest signed head, its cosignatures
``await remote_consistency(node, first, second) -> Consistency``   its consistency proof
``await node_key(node) -> bytes``                  VerifyKey bytes, checked against the pin
                                                   (the only lookup a split node still gets)
                                                   Every lookup that goes out to a peer is
                                                   first charged to the device that asked
                                                   (federation/lookup_charge.py); answers from
                                                   the cache or a stored key cost nothing
``outbound(env, *, sender_account, sender_device, now, access=b"") -> OutboundItem``   (pure; a
                                                   SEALED envelope for an account of another
                                                   node; ``access`` the recipient's access token
                                                   the device gave, checked by the destination)
``wake(dests)``                                    new items were committed for these nodes
``send_ephemeral(envelopes)``                      ephemeral envelopes for other nodes: sent on
                                                   now, best effort, never stored (dropped when
                                                   they cannot go now: federation/ephemeral.py)
``queued_note(dest) -> tuple[str, str] | None``    why items for dest wait: the last failed
                                                   attempt, or ("unroutable", ...) while dest
                                                   has no route (they wait for a peer-table
                                                   change, e.g. a re-added peer, or expiry)
``snapshot() -> dict``                             for run.json / ``sonet-node status --json``;
                                                   per peer also witnessed_size and split, and
                                                   "directory": {"witnessed": [{node,
                                                   tree_size, root_hash, at}], "splits": [{node,
                                                   kind, source, detected_at}]}
``version``                                        changes whenever ``snapshot()`` may have

Every failure of the remote methods raises ``FederationError(code, message)`` (a ``Refusal``,
core/errors.py); codes:
``unknown_node`` (not a configured peer, nor routable), ``unreachable`` (cannot connect or
timed out), ``wrong_identity`` (the peer presented another key than pinned), ``not_relaying``
(a relay refused), ``rate_limited``, ``invalid`` (a malformed answer, or a directory head that
does not verify), ``unavailable`` (this node's store failed, or the remote node's did),
``split_view`` (the node showed two versions of its key directory), or the remote node's own
ErrorFrame code (e.g. ``unknown_account``; one this version does not register is ``invalid``).
Answer frames carry request number 0: the caller
renumbers them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.blob_api import BlobChunk, BlobGet
from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    ErrorFrame,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchGroupTree,
    FetchHead,
    FetchKeyPackages,
    FetchNodeKey,
    GroupTree,
    Head,
    KeyPackages,
    NodeKey,
    SignedHead,
)
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.envelope import Envelope
from sonet.core.errors import ProtocolError
from sonet.core.handshake import HandshakeComplete
from sonet.core.keydir import TreeHead, decode_cosignature, decode_head
from sonet.core.wire import Frame
from sonet.transport import events

from .ephemeral import Ephemerals, PushEphemeral
from .errors import FederationError
from .gossip import Gossiper
from .inbound import Inbound
from .link import PeerGate, PeerLink, serve_link
from .lookup_charge import charge_lookup
from .message_requests import MessageRequests
from .outbox import Outboxes
from .peers import Peer, find_peer
from .pool import LinkPool
from .ports import Delivered, FederationStore, KeyDirectory, LocalAnswer, StoreFailure
from .records import OutboundItem, Quota
from .routes import Routes
from .settings import FederationSettings
from .status import NO_LINK, FederationStatus, directory_section, peer_entry
from .transit import envelope_item
from .witness import TRANSIENT_CODES, Witness

__all__ = ["Federation", "FederationError", "LocalAnswer", "Delivered"]

log = logging.getLogger("sonet.federation")

#: remote accounts whose device lists are cached at most (the oldest go first)
MAX_CACHED_ACCOUNTS = 4096
#: how long past its freshness a cached device list still serves while its node cannot answer
STALE_DEVICES_MS = 24 * 3600 * 1000


class Federation:
    def __init__(
        self,
        *,
        name: str,
        identity: SigningKey,
        policy: CryptoPolicy,
        store: FederationStore,
        local: LocalAnswer,
        delivered: Delivered,
        clock_ms: Callable[[], int],
        rng: Callable[[int], bytes],
        quota: Quota,
        envelope_ttl_ms: int = limits.DEFAULT_ENVELOPE_TTL_MS,
        settings: FederationSettings | None = None,
        status: FederationStatus | None = None,
        directory: KeyDirectory | None = None,
        requests: MessageRequests | None = None,
        push_ephemeral: PushEphemeral | None = None,
    ) -> None:
        """``requests``: the node's message-request allowance, shared with its device handlers
        (default: one of this service's own); ``push_ephemeral((account, device), envelope)``
        hands an ephemeral envelope from a peer to that device's connections open now."""
        settings = settings or FederationSettings()
        if requests is None:
            requests = MessageRequests.for_node(identity, quota, envelope_ttl_ms=envelope_ttl_ms)
        self.name = name
        self._identity = identity
        self._policy = policy
        self._store = store
        self._clock_ms = clock_ms
        self._ttl_ms = envelope_ttl_ms
        self._settings = settings
        self.status = status or FederationStatus()
        self.gate = PeerGate(load_peers=store.peers, status=self.status, clock_ms=clock_ms, store_errors=(StoreFailure,))
        self._routes = Routes(name, [])
        self._loads = self._applied = 0
        self._pool = LinkPool(
            name=name,
            identity=identity,
            policy=policy,
            remember_key=self._remember_key,
            clock_ms=clock_ms,
            rng=rng,
            settings=settings,
        )
        self._outboxes = Outboxes(
            name=name,
            store=store,
            pool=self._pool,
            routes=self._last_routes,
            clock_ms=clock_ms,
            settings=settings,
        )
        self._witness = Witness(
            name=name,
            identity=identity,
            store=store,
            ask=self._ask,
            node_key=self.node_key,
            routes=self.routes,
            clock_ms=clock_ms,
            settings=settings,
            cosigned=self._forget_devices,
        )
        self._gossip = Gossiper(
            name=name,
            directory=directory,
            witness=self._witness,
            pool=self._pool,
            routes=self.routes,
            settings=settings,
        )
        self._ephemerals = Ephemerals(
            name=name, pool=self._pool, routes=self.routes, push=push_ephemeral, clock_ms=clock_ms, settings=settings
        )
        self._inbound = Inbound(
            name=name,
            identity=identity,
            store=store,
            pool=self._pool,
            routes=self._last_routes,
            local=local,
            delivered=delivered,
            wake=self.wake,
            quota=quota,
            envelope_ttl_ms=envelope_ttl_ms,
            clock_ms=clock_ms,
            settings=settings,
            directory=directory,
            gossiped=self._gossip.received,
            node_key=self.node_key,
            requests=requests,
            ephemerals=self._ephemerals,
        )
        self._devices: dict[str, tuple[int, Devices]] = {}
        self._counts: dict[str, int] = {}
        self._changes = 0
        self._nursery: trio.Nursery | None = None

    @property
    def version(self) -> int:
        return self.status.version + self._pool.version + self._witness.version + self._changes

    # Running ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._pool.run)
            await nursery.start(self._ephemerals.run)
            self._nursery = nursery
            # Greets every direct peer: a node that restarted says so to its peers at once (they
            # witness its head now), and their backoff towards it ends.
            await self._refresh_routes()
            await nursery.start(self._outboxes.run)
            await nursery.start(self._witness.run)
            await nursery.start(self._gossip.run)
            nursery.start_soon(self._upkeep)
            task_status.started()

    async def routes(self) -> Routes:
        """The peer table as it is now (``sonet-node peer add/remove`` write it while the node
        runs). A change closes stale links, wakes every waiting outbox worker (one without a
        route may have one now), greets the direct peers that are new (or changed): a peer
        waiting for this node notices it now, and witnesses new peers at once. Raises the
        store's errors."""
        self._loads += 1
        ticket = self._loads
        routes = Routes(self.name, await self._store.peers())
        if ticket > self._applied and routes != self._routes:  # a late, older read changes nothing
            self._applied = ticket
            old, self._routes = self._routes, routes
            self._changes += 1
            self._pool.update(routes)
            self._outboxes.nudge()
            for peer in routes.peers:
                known = old.peer(peer.name)
                if known is None or (known.url, known.fingerprint, known.via) != (peer.url, peer.fingerprint, peer.via):
                    self._witness.nudge(peer.name)
                    if self._nursery is not None and peer.via is None:
                        self._nursery.start_soon(self._hello, peer)
        return routes

    async def _last_routes(self) -> Routes:
        """The peer table as last read, for what runs per push or relayed request (the outbox
        workers; a peer's pushes and the lookups it asks this node to pass on): no store read
        on that path. It is read again every ``refresh_s``, whenever ``routes()`` is asked (a
        link served, a lookup of this node's own), and at once when a running node sees
        `sonet-node peer add|remove` (``refresh_routes``, node/admin_watch.py)."""
        return self._routes

    async def refresh_routes(self) -> None:
        """Read the peer table again now (a store error waits for the next time)."""
        await self._refresh_routes()

    async def _upkeep(self) -> None:
        while True:
            try:
                counts = await self._store.outbox_counts()
            except StoreFailure as exc:
                log.warning("cannot count the outbox items, trying again in %g s: %s", self._settings.refresh_s, exc)
            else:
                if counts != self._counts:
                    self._counts = counts
                    self._changes += 1
            await trio.sleep(self._settings.refresh_s)
            await self._refresh_routes()

    async def _refresh_routes(self) -> None:
        """Re-read the peer table in the background; a store error waits for the next time."""
        try:
            await self.routes()
        except StoreFailure as exc:
            log.warning("cannot read the peer table, trying again in %g s: %s", self._settings.refresh_s, exc)

    async def _hello(self, peer: Peer) -> None:
        # with this node's head: the peer witnesses it at once (federation/gossip.py); a failure
        # is recorded by the pool and its outbox items wait for the backoff
        await self._gossip.hello(peer)

    async def _remember_key(self, peer: Peer, key: VerifyKey) -> None:
        if peer.key != key.to_bytes():
            await self._store_key(peer.name, peer.fingerprint, key.to_bytes())

    async def _store_key(self, name: str, fingerprint: str, key: bytes) -> None:
        """Remember a key checked against the pin. Only a cache (it is asked for again when
        missing): a store error is logged and the link or lookup goes on."""
        try:
            await self._store.set_peer_key(name, fingerprint=fingerprint, key=key)
        except StoreFailure as exc:
            log.warning("cannot remember the identity key of %s: %s", name, exc)

    async def serve(self, link: PeerLink, done: HandshakeComplete) -> None:
        """Serve one inbound link the gate admitted."""
        try:
            routes = await self.routes()
        except StoreFailure as exc:
            log.warning("closing an inbound federation link: cannot read the peer table: %s", exc)
            await link.aclose(code=1011, reason="unavailable")
            return
        peer = find_peer(routes.peers, fingerprint=done.peer.fingerprint)
        if peer is None:  # removed since the gate admitted it
            await link.aclose(code=1008, reason="unknown_peer")
            return
        if self._pool.inbound(peer.name) >= self._settings.max_inbound_links:
            # each link may hold many requests and frames in memory: one peer gets a few links
            log.info("refused another federation link from %s: it already holds %d", peer.name, self._settings.max_inbound_links)
            await link.aclose(code=1008, reason="too_many_links")
            return
        self.status.link_opened()
        self._pool.inbound_opened(peer.name)
        try:
            handler = self._inbound.handler(peer.name, done.peer)
            await serve_link(link, handler, pipelined=handler)
        finally:
            self._pool.inbound_closed(peer.name)
            self.status.link_closed()

    # For the client handlers ----------------------------------------------------------------------

    def outbound(
        self, env: Envelope, *, sender_account: str, sender_device: int, now: int, access: bytes = b"", checked: bool = False
    ) -> OutboundItem:
        """``checked``: ``env`` came out of a decoded frame (transit.envelope_item)."""
        return envelope_item(
            env, origin=self.name, sender_account=sender_account, sender_device=sender_device, now=now, ttl_ms=self._ttl_ms,
            access=access, checked=checked,
        )  # fmt: skip

    def send_ephemeral(self, envelopes: Iterable[Envelope]) -> None:
        """Ephemeral envelopes (typing, presence) for accounts of other nodes: sent on now, best
        effort, never stored (federation/ephemeral.py); never blocks."""
        self._ephemerals.send(envelopes)

    def directory_changed(self) -> None:
        """This node signed a new directory head: tell the direct peers now (they witness it)."""
        self._gossip.changed()

    def wake(self, dests: Iterable[str]) -> None:
        self._outboxes.wake(dests)

    @property
    def outboxes(self) -> Outboxes:
        """The outbox workers (node/cluster.py gives them the leases of a shared database)."""
        return self._outboxes

    def queued_note(self, dest: str) -> tuple[str, str] | None:
        return self._outboxes.note(dest)

    async def expire_outbox(self) -> None:
        """Settle expired outbox items now, not at the next expiry tick (node/expiry.py: an
        item's expiry came; a disappearing message leaves the outbox and relay queues then)."""
        await self._outboxes.expire()

    async def remote_devices(self, account: str) -> Devices:
        account, node = self._remote(account)
        self._witness.refuse(node)
        now = self._clock_ms()
        cached = self._devices.get(account)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = await self._ask(node, FetchDevices(request=0, account=account))
        except FederationError as exc:
            # The node is down or busy: queue for the devices it listed lately rather than
            # refuse to send (its node reports any device that is gone as a failure).
            if cached is not None and exc.code in TRANSIENT_CODES and now < cached[0] + STALE_DEVICES_MS:
                return cached[1]
            raise
        if not isinstance(answer, Devices) or answer.account != account:
            raise FederationError("invalid", f"{node} answered the device lookup for {account} with something else")
        await self._witness.vet(node, answer.proof.head.head)
        answer = dataclasses.replace(answer, request=0)
        self._devices.pop(account, None)
        if len(self._devices) >= MAX_CACHED_ACCOUNTS:
            self._devices = {a: e for a, e in self._devices.items() if e[0] + STALE_DEVICES_MS > now}
            while len(self._devices) >= MAX_CACHED_ACCOUNTS:
                del self._devices[next(iter(self._devices))]
        self._devices[account] = (now + limits.REMOTE_DEVICES_TTL_MS, answer)
        return answer

    async def remote_bundles(self, account: str, devices: Iterable[int], *, one_time: bool = True) -> Bundles:
        account, node = self._remote(account)
        self._witness.refuse(node)
        answer = await self._ask(node, FetchBundles(request=0, account=account, devices=tuple(devices), one_time=one_time))
        if not isinstance(answer, Bundles) or answer.account != account:
            raise FederationError("invalid", f"{node} answered the bundle lookup for {account} with something else")
        await self._witness.vet(node, answer.proof.head.head)
        self._seen_entry(account, answer.proof.index)
        return dataclasses.replace(answer, request=0)

    def _seen_entry(self, account: str, index: int) -> None:
        """An answer proved ``account``'s directory entry at ``index``."""
        cached = self._devices.get(account)
        if cached is not None and cached[1].proof.index < index:
            # the account changed since its device list was cached: the next lookup asks again
            # (a device that saw the newer entry would refuse the older one as stale)
            del self._devices[account]

    async def remote_key_packages(self, account: str, *, one_time: bool = True) -> KeyPackages:
        account, node = self._remote(account)
        self._witness.refuse(node)
        answer = await self._ask(node, FetchKeyPackages(request=0, account=account, one_time=one_time))
        if not isinstance(answer, KeyPackages) or answer.account != account:
            raise FederationError("invalid", f"{node} answered the KeyPackage lookup for {account} with something else")
        await self._witness.vet(node, answer.proof.head.head)
        self._seen_entry(account, answer.proof.index)
        return dataclasses.replace(answer, request=0)

    async def remote_group_tree(self, hub: str, group: bytes, epoch: int, offset: int) -> GroupTree:
        """A chunk of the ratchet tree ``hub`` keeps for ``group`` at ``epoch`` (never cached;
        the joining device checks the whole tree against its Welcome)."""
        answer = await self._ask(hub, FetchGroupTree(request=0, group=group, hub=hub, epoch=epoch, offset=offset))
        if not isinstance(answer, GroupTree) or (answer.group, answer.epoch, answer.offset) != (group, epoch, offset):
            raise FederationError("invalid", f"{hub} answered the group tree lookup with something else")
        return dataclasses.replace(answer, request=0)

    async def remote_blob(self, node: str, blob: bytes, offset: int) -> BlobChunk:
        """A chunk of attachment ``blob`` that ``node`` holds, from ``offset`` (never kept here:
        the device checks the whole file against the digests its message carries)."""
        answer = await self._ask(node, BlobGet(request=0, node=node, blob=blob, offset=offset))
        if not isinstance(answer, BlobChunk) or (answer.blob, answer.offset) != (blob, offset):
            raise FederationError("invalid", f"{node} answered the attachment lookup with something else")
        return dataclasses.replace(answer, request=0)

    async def remote_head(self, node: str) -> Head:
        self._witness.refuse(node)
        answer = await self._ask(node, FetchHead(request=0, node=node))
        if not isinstance(answer, Head) or answer.node != node:
            raise FederationError("invalid", f"{node} answered the head lookup with something else")
        await self._witness.vet(node, answer.head.head)
        return dataclasses.replace(answer, request=0)

    async def remote_consistency(self, node: str, first: int, second: int) -> Consistency:
        self._witness.refuse(node)
        answer = await self._ask(node, FetchConsistency(request=0, node=node, first=first, second=second))
        if not isinstance(answer, Consistency) or (answer.node, answer.first, answer.second) != (node, first, second):
            raise FederationError("invalid", f"{node} answered the consistency lookup with something else")
        return dataclasses.replace(answer, request=0)

    def _forget_devices(self, node: str, head: TreeHead) -> None:
        """``node`` took this node's cosignature of ``head``: forget the cached device lists of
        its accounts that ``head`` can contradict (proven at an older head: a leaf it adds may
        be the account's newer entry, and the witness does not see which accounts they are) or
        that lack the cosignature (proven at ``head`` without it: ``node`` now shows it).
        Lists proven at a newer head, or at ``head`` with this node's cosignature, stay."""
        kept = {}
        for account, entry in self._devices.items():
            if account.rpartition("@")[2] != node or self._outlives(entry[1].proof.head, head):
                kept[account] = entry
        self._devices = kept

    def _outlives(self, proven: SignedHead, cosigned: TreeHead) -> bool:
        """Whether a list proven at ``proven`` stays true after a cosign of ``cosigned`` (the
        list was vetted when cached: only its size and cosigners are read here)."""
        try:
            size = decode_head(proven.head).size
            if size != cosigned.size:
                return size > cosigned.size
            return any(c.witness == self.name and c.size == size for c in map(decode_cosignature, proven.cosignatures))
        except ProtocolError:
            return False

    async def is_peer(self, node: str) -> bool:
        """Whether ``node`` is a configured peer (items queued for it have a way to go)."""
        return (await self._lookup_routes()).peer(node) is not None

    async def node_key(self, node: str) -> bytes:
        if node == self.name:
            return self._identity.public.to_bytes()
        peer = (await self._lookup_routes()).peer(node)
        if peer is None:
            raise FederationError("unknown_node", f"{node} is not a peer of this node")
        if peer.key is not None:  # stored only after it was checked against the pin
            return peer.key
        answer = await self._ask(node, FetchNodeKey(request=0, node=node))
        if not isinstance(answer, NodeKey) or answer.node != node:
            raise FederationError("invalid", f"the key lookup for {node} was answered with something else")
        try:
            key = VerifyKey.from_bytes(answer.key)
            self._policy.require(key.mode, f"the identity key of {node}")
        except ProtocolError as exc:
            raise FederationError("invalid", f"the identity key given for {node} is unusable: {exc}") from None
        if key.fingerprint != peer.fingerprint:
            events.emit("wrong_identity", peer=node, code="wrong_identity", direction="key_lookup")
            raise FederationError("wrong_identity", f"the identity key given for {node} is not the one pinned for it")
        await self._store_key(node, peer.fingerprint, answer.key)
        return answer.key

    def _remote(self, account: str) -> tuple[str, str]:
        address = parse_address(account, remote=True)
        if address.node == self.name:
            raise ValueError(f"{account} is an account of this node")
        return str(address), address.node

    async def _ask(self, node: str, frame: Frame) -> Frame:
        """``frame``'s answer from ``node``, over its route; an ErrorFrame is raised."""
        routes = await self._lookup_routes()
        if routes.peer(node) is None:
            raise FederationError("unknown_node", f"{node} is not a peer of this node")
        hop = routes.next_hop(node)
        if hop is None:
            raise FederationError("unknown_node", f"no route to {node}: its relay is not a direct peer of this node")
        charge_lookup(node)  # it goes out now: the device that asked pays (federation/lookup_charge.py)
        answer = await self._pool.request(hop, frame)
        if isinstance(answer, ErrorFrame):
            raise FederationError(answer.code, answer.message)
        return answer

    async def _lookup_routes(self) -> Routes:
        """``routes()`` for the remote methods: a store error is FederationError("unavailable")."""
        try:
            return await self.routes()
        except StoreFailure as exc:
            log.warning("cannot read the peer table: %s", exc)
            raise FederationError("unavailable", f"{self.name} cannot read its peer table right now; try again later") from None

    # Status ------------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Counters of inbound links; per configured peer: url, via, route, the state of the
        link its items take (for a peer behind a relay: the relay's), queued items, the size of
        its witnessed head and its split; what was witnessed and the splits caught."""
        routes, counts, witness = self._routes, self._counts, self._witness
        peers = []
        for peer in routes.peers:
            hop = routes.next_hop(peer.name)
            link = NO_LINK | {"link": "unroutable"} if hop is None else self._pool.describe(hop.name)
            if hop is not None and link["link"] not in ("connected", "connecting"):
                ends = link["next_attempt_at"]  # of the backoff
                link["next_attempt_at"] = self._next_attempt(hop.name, ends if isinstance(ends, int) else None, routes.queued(hop.name, counts))
            entry = peer_entry(
                routes,
                peer,
                counts,
                link | {"inbound_links": self._pool.inbound(peer.name)},
                witnessed_size=witness.witnessed_size(peer.name),
                split=witness.split_kind(peer.name),
            )
            peers.append(entry)
        directory = directory_section(witness.witnessed(), witness.splits())
        return {**self.status.snapshot(), "outbox": sum(counts.values()), "peers": peers, "directory": directory}

    def _next_attempt(self, hop: str, backoff_ends: int | None, queued: int) -> int | None:
        """When this node dials direct peer ``hop`` next by itself (ms since the epoch): items
        wait for it: at the end of its backoff (now if none); at the latest at the next witness
        round (which dials it whatever the backoff; not for a node whose split view was caught).
        None: nothing is planned (an item queued for it, or a lookup, dials it)."""
        planned = []
        if queued:
            planned.append(backoff_ends if backoff_ends is not None else self._clock_ms())
        if self._witness.next_round_at is not None and self._witness.split_kind(hop) is None:
            planned.append(self._witness.next_round_at)
        return min(planned, default=None)
