"""Ephemeral envelopes between nodes (typing, presence): pushed, never stored (issue 17 item 5).

Sending: a device's ephemeral envelopes for accounts of another node leave at once, best
effort, in ``EphemeralPush`` frames (core/federation_api.py) to the destination's next hop.
Nothing waits in the outbox and nothing is retried: a notice that cannot go now (no route, the
hop backing off or not answering, ``MAX_IN_FLIGHT`` pushes already on their way to it) is
dropped and counted in ``stats`` - a typing indicator that arrives late is worse than none.

Receiving (on an admitted link from configured peer ``peer``): each peer has two token buckets,
envelopes and their bytes (``settings.ephemeral_rate`` / ``ephemeral_bytes_rate``); over either
the push is refused ``rate_limited`` and nothing of it is delivered (the link counts it towards
its refusals in a row). For this node: each unexpired envelope goes to the recipient device's
connections open now (node/mailbox.py ``push_ephemeral``) and is forgotten. For another node:
passed on under the rules of stored items (federation/routes.py: between configured peers,
never back where it came from, while hops are left), with one hop fewer; refused otherwise
(``not_relaying``, ``unroutable``, ``hop_limit``). Either way the answer is ``Noted`` at once:
no receiver tells the sender whether anyone was listening.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import trio

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.client_api import ErrorFrame
from sonet.core.envelope import Envelope
from sonet.core.federation_api import EphemeralPush, Noted

from .errors import FederationError
from .pool import LinkPool
from .ports import StoreFailure
from .ratelimit import Limiter
from .routes import Routes
from .settings import FederationSettings

__all__ = ["Ephemerals", "MAX_IN_FLIGHT", "PushEphemeral"]

log = logging.getLogger("sonet.federation")

#: ephemeral pushes on their way to one next hop at once; more are dropped
MAX_IN_FLIGHT = 8

#: hands one envelope to the connections of (account, device) open now (node/mailbox.py)
PushEphemeral = Callable[[tuple[str, int], Envelope], None]


class Ephemerals:
    def __init__(
        self,
        *,
        name: str,
        pool: LinkPool,
        routes: Callable[[], Awaitable[Routes]],
        push: PushEphemeral | None,
        clock_ms: Callable[[], int],
        settings: FederationSettings,
    ) -> None:
        """``push``: None on a node that delivers nothing itself (tests of relays)."""
        self._name = name
        self._pool = pool
        self._routes = routes
        self._push = push
        self._clock_ms = clock_ms
        self._count = Limiter(settings.ephemeral_rate)
        self._bytes = Limiter(settings.ephemeral_bytes_rate)
        self._in_flight: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        #: envelopes sent on (sent), handed to local connections (delivered), dropped here on
        #: the way out (dropped), pushes refused for a peer's rate (rate_limited)
        self.stats: Counter[str] = Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the sending tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # Sending ------------------------------------------------------------------------------------

    def send(self, envelopes: Iterable[Envelope]) -> None:
        """Send ephemeral envelopes for accounts of other nodes on their way (never blocks)."""
        by_dest: dict[str, list[Envelope]] = {}
        for env in envelopes:
            by_dest.setdefault(parse_address(env.to, remote=True).node, []).append(env)
        for dest, envs in by_dest.items():
            for start in range(0, len(envs), limits.MAX_EPHEMERAL_PER_PUSH):
                chunk = tuple(envs[start : start + limits.MAX_EPHEMERAL_PER_PUSH])
                self._forward(EphemeralPush(request=0, origin=self._name, dest=dest, hops=limits.MAX_HOPS, envelopes=chunk))

    def _forward(self, push: EphemeralPush) -> None:
        if self._nursery is None or self._in_flight[push.dest] >= MAX_IN_FLIGHT:
            self.stats["dropped"] += len(push.envelopes)
            return
        self._in_flight[push.dest] += 1
        self._nursery.start_soon(self._go, push)

    async def _go(self, push: EphemeralPush) -> None:
        try:
            if not await self._went(push):
                self.stats["dropped"] += len(push.envelopes)
        finally:
            self._in_flight[push.dest] -= 1
            if not self._in_flight[push.dest]:
                del self._in_flight[push.dest]

    async def _went(self, push: EphemeralPush) -> bool:
        try:
            hop = (await self._routes()).next_hop(push.dest)
        except StoreFailure:
            return False
        if hop is None or self._pool.backing_off(hop.name):
            return False  # no waiting: the outbox's items wait, a typing notice does not
        try:
            answer = await self._pool.request(hop, push)
        except FederationError as exc:
            log.debug("ephemeral push to %s dropped: %s", push.dest, exc)
            return False
        if not isinstance(answer, Noted):
            log.debug("ephemeral push to %s refused by %s: %s", push.dest, hop.name, getattr(answer, "code", type(answer).__name__))
            return False
        self.stats["sent"] += len(push.envelopes)
        return True

    # Receiving ----------------------------------------------------------------------------------

    def allow(self, peer: str, push: EphemeralPush) -> bool:
        """Spend ``peer``'s tokens for ``push`` (a push costs at most a full bucket)."""
        now = self._clock_ms()
        size = sum(len(env.body) for env in push.envelopes)
        count_ok = self._count.allow(peer, now, min(len(push.envelopes), self._count.rate.burst))
        if not (count_ok and self._bytes.allow(peer, now, min(size, self._bytes.rate.burst))):
            self.stats["rate_limited"] += 1
            return False
        return True

    async def receive(self, peer: str, push: EphemeralPush) -> Noted | ErrorFrame:
        """Deliver or pass on ``push`` from ``peer`` (its tokens spent by ``allow``)."""
        if push.dest == self._name:
            now = self._clock_ms()
            for env in push.envelopes:
                if env.expires > now and self._push is not None:
                    account = str(parse_address(env.to, remote=True))
                    self._push((account, env.device), env if env.to == account else dataclasses.replace(env, to=account))
                    self.stats["delivered"] += 1
            return Noted(request=push.request)
        try:
            routes = await self._routes()
        except StoreFailure:
            return ErrorFrame(request=push.request, code="unavailable", message=f"{self._name} cannot read its peer table right now")
        if not routes.may_relay(origin=push.origin, link_peer=peer, dest=push.dest):
            return ErrorFrame(request=push.request, code="not_relaying", message=f"{self._name} does not relay for {peer} to {push.dest}")
        hop = routes.next_hop(push.dest)
        if hop is None or hop.name == peer:  # never hand it back where it came from
            return ErrorFrame(request=push.request, code="unroutable", message=f"{self._name} has no route to {push.dest}")
        if push.hops == 0:
            return ErrorFrame(request=push.request, code="hop_limit", message="the push passed through too many relays")
        self._forward(dataclasses.replace(push, request=0, hops=push.hops - 1))
        return Noted(request=push.request)
