"""Gossip of signed tree heads between direct peers (ARCHITECTURE §7), so that two views of
one node's directory meet somewhere and the split is detected.

Sending: ``changed()`` (this node signed a new head) sends this node's head to every direct
peer from a background task, at once (coalesced: one round in flight, at most one waiting;
peers in backoff wait for the periodic round); every ``gossip_interval_s`` each direct peer
gets this node's head and the heads of the other nodes it witnessed.

Receiving (``received``): of the heads a peer Q sends, only those of configured peers other
than this node count, the last one per node; each is checked by the witness in the background
(``Witness.check``), and Q's own head also starts Q's witness round (``Witness.greet``, at most
one per ``GREET_GAP_S`` unless the head is newer).

Greeting (``hello``): a node that starts, or finds a peer added or changed, sends that peer its
own head, so the peer witnesses it at once rather than at its next round.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
import trio

from sonet.core import limits
from sonet.core.client_api import Ping, Pong, SignedHead
from sonet.core.federation_api import Gossip, Noted, SeenHead

from .errors import FederationError
from .peers import Peer
from .pool import LinkPool
from .ports import KeyDirectory, StoreFailure
from .routes import Routes
from .settings import FederationSettings
from .witness import Witness

__all__ = ["Gossiper"]

log = logging.getLogger("sonet.federation")


class Gossiper:
    def __init__(
        self,
        *,
        name: str,
        directory: KeyDirectory | None,
        witness: Witness,
        pool: LinkPool,
        routes: Callable[[], Awaitable[Routes]],
        settings: FederationSettings,
    ) -> None:
        """``directory``: this node's (``head()``), or None for a node without one."""
        self._name = name
        self._directory = directory
        self._witness = witness
        self._pool = pool
        self._routes = routes
        self._settings = settings
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tell_changes)
            task_status.started()
            while True:
                await trio.sleep(self._settings.gossip_interval_s)
                await self._send(everything=True)

    def changed(self) -> None:
        """This node signed a new head: tell the direct peers now (never blocks)."""
        self._changed.set()

    async def received(self, peer: str, heads: Iterable[SeenHead]) -> None:
        """Heads ``peer`` has seen. Raises the store's errors (the peer table)."""
        routes = await self._routes()
        latest = {seen.node: seen.head.head for seen in heads if seen.node != self._name and routes.peer(seen.node)}
        for node, head in latest.items():
            self._witness.check(node, head, f"gossip:{peer}")
        if peer in latest:
            self._witness.greet(peer)  # its own head: witness it (a newer one was checked above)

    async def hello(self, peer: Peer) -> None:
        """Greet direct peer ``peer`` (this node started, or ``peer``'s entry is new or changed)
        with this node's head: ``peer`` witnesses it at once (``received``), so a head signed
        while it could not be told gets its cosignature now, not at ``peer``'s next round. A
        node without a directory (or that cannot read its head now) says Ping. Either way
        ``peer``'s backoff towards this node ends (its inbound link opened)."""
        frame: Gossip | Ping = Ping(request=0)
        if self._directory is not None:
            try:
                frame = Gossip(request=0, heads=(SeenHead(node=self._name, head=await self._directory.head()),))
            except StoreFailure as exc:
                log.warning("cannot read this node's directory head to greet %s with it: %s", peer.name, exc)
        await self._tell(peer, frame)

    async def _tell_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            await self._send(everything=False)

    async def _send(self, *, everything: bool) -> None:
        heads: list[SeenHead] = []
        try:
            if self._directory is not None:
                heads.append(SeenHead(node=self._name, head=await self._directory.head()))
            routes = await self._routes()
        except StoreFailure as exc:
            log.warning("cannot gossip directory heads now: %s", exc)
            return
        if everything:
            room = limits.MAX_GOSSIP_HEADS - len(heads)
            heads += [SeenHead(node=r.node, head=SignedHead(head=r.head, cosignatures=())) for r in self._witness.witnessed()[:room]]
        if not heads:
            return
        frame = Gossip(request=0, heads=tuple(heads))
        async with trio.open_nursery() as nursery:
            for peer in routes.direct():
                if everything or not self._pool.backing_off(peer.name):
                    nursery.start_soon(self._tell, peer, frame)

    async def _tell(self, peer: Peer, frame: Gossip | Ping) -> None:
        try:
            answer = await self._pool.request(peer, frame)
        except FederationError as exc:
            # a failure of the link the pool logged already (one line per backoff), at the same
            # millisecond and in the same words: not a second line
            log.log(logging.DEBUG if exc.logged else logging.INFO, "could not gossip directory heads to %s: %s", peer.name, exc)
            return
        if not isinstance(answer, (Noted, Pong)):
            log.info("%s did not take the gossiped directory heads: %s", peer.name, getattr(answer, "message", type(answer).__name__))
