"""What the in-process federation tests share: pinning real ``Node`` objects to each other (as
``sonet-node peer add`` does, through a second store connection), a three-node network (alpha
and gamma peer with beta; each reaches the other only through beta), raw peer links that act
as a peer node would (``dial_peer`` with a pinned key), outbox items queued straight into a
node's store, and polling for a condition under a hang guard (never a performance threshold).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from sonet.core import limits
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.federation_api import Transit
from sonet.core.wire import Frame
from sonet.federation.link import PeerLink, dial_peer
from sonet.federation.records import DeliveryRow, OutboundItem
from sonet.node.store import Quota
from tests.node.conftest import HANG_S, RunningNode, StartNode
from tests.node.kit import Account, opaque_envelope, wall_ms

__all__ = [
    "ALPHA",
    "BETA",
    "GAMMA",
    "Net",
    "triangle",
    "pin",
    "pin_node",
    "NOWHERE",
    "until",
    "new_key",
    "peer_link",
    "ask",
    "transit",
    "tracked",
    "queue_at",
    "deliveries",
    "mailbox_ids",
]

ALPHA, BETA, GAMMA = "alpha.example", "beta.example", "gamma.example"
#: a URL where no node listens (the pin of a peer that only dials in)
NOWHERE = "ws://127.0.0.1:1"


def new_key() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


async def pin(
    node: RunningNode,
    name: str,
    *,
    url: str = NOWHERE,
    fingerprint: str,
    via: str | None = None,
) -> None:
    async with node.store() as store:
        await store.add_peer(name=name, url=url, fingerprint=fingerprint, via=via, now=wall_ms())


async def pin_node(node: RunningNode, other: RunningNode, *, via: str | None = None) -> None:
    await pin(node, other.config.name, url=other.url, fingerprint=other.fingerprint, via=via)


async def until(check: Callable[[], Any], what: str) -> None:
    """Poll ``check()`` (sync or async) until it is true; fail after the hang guard."""
    with trio.move_on_after(HANG_S):
        while True:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return
            await trio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


@dataclass
class Net:
    alpha: RunningNode
    beta: RunningNode
    gamma: RunningNode
    alice: Account
    bob: Account
    carol: Account


async def triangle(start_node: StartNode, **config: Any) -> Net:
    """alpha - beta - gamma; alpha reaches gamma (and gamma alpha) only through beta."""
    alpha = await start_node(name=ALPHA, registration="open", **config)
    beta = await start_node(name=BETA, registration="open", **config)
    gamma = await start_node(name=GAMMA, registration="open", **config)
    await pin_node(alpha, beta)
    await pin_node(alpha, gamma, via=BETA)
    await pin_node(beta, alpha)
    await pin_node(beta, gamma)
    await pin_node(gamma, beta)
    await pin_node(gamma, alpha, via=BETA)
    return Net(alpha, beta, gamma, await alpha.enroll("alice"), await beta.enroll("bob"), await gamma.enroll("carol"))


@asynccontextmanager
async def peer_link(node: RunningNode, key: SigningKey, name: str) -> AsyncIterator[PeerLink]:
    """A raw link to ``node`` as peer ``name`` with identity ``key`` (pin it first)."""
    with trio.fail_after(HANG_S):
        async with dial_peer(node.url, identity=key, fingerprint=node.fingerprint, name=name) as link:
            yield link


async def ask(link: PeerLink, frame: Frame) -> Frame:
    """One request on a raw link, and the next frame that comes back."""
    with trio.fail_after(HANG_S):
        await link.send(frame)
        return await link.receive()


def transit(to: str, device: int = 1, *, origin: str, hops: int = limits.MAX_HOPS, msg_id: bytes | None = None, expires: int | None = None) -> Transit:
    """An envelope item for ``to``'s device, as node ``origin`` pushes it."""
    env = opaque_envelope((to, device), msg_id=msg_id, expires=expires)
    return Transit(origin=origin, dest=to.split("@")[1], hops=hops, envelope=env, report=None)


def tracked(node: RunningNode, sender: Account, to: str, device: int = 1, *, expires: int | None = None) -> OutboundItem:
    """The outbox item for an envelope ``sender``'s first device sends to ``to``'s ``device``."""
    federation = node.node.federation
    assert federation is not None
    env = opaque_envelope((to, device), expires=expires)
    return federation.outbound(env, sender_account=sender.address, sender_device=1, now=wall_ms())


async def queue_at(node: RunningNode, *items: OutboundItem, now: int | None = None) -> None:
    """Commit items to ``node``'s outbox (as a SendBatch does) and wake its workers; ``now``:
    when they were queued (the wall clock if None)."""
    quota = Quota(max_envelopes=node.config.mailbox_max_envelopes, max_bytes=node.config.mailbox_max_bytes)
    async with node.store() as store:
        await store.enqueue([], now=wall_ms() if now is None else now, quota=quota, outbound=items)
    assert node.node.federation is not None
    # Woken before the node reads the tables again: a worker then starts from the reload's
    # wake-up alone (a second one, after a worker already pushed and settled them, would
    # start it again: a push a test did not ask for).
    node.node.federation.wake({i.dest for i in items})
    await notice_outbox_writes(node)


async def notice_outbox_writes(node: RunningNode) -> None:
    """Have ``node`` read its outboxes again now, as its next commit or admin poll (every
    0.25 s) would: its SQLite store knows them from memory (node/store/outbox_log.py), and the
    items above came through another connection."""
    assert node.node.federation is not None
    await node.node.federation._store.admin_version()


async def deliveries(node: RunningNode, sender: Account, *items: OutboundItem) -> list[DeliveryRow]:
    async with node.store() as store:
        return await store.deliveries(sender.address, 1, [i.tracking.id for i in items if i.tracking])


async def mailbox_ids(node: RunningNode, account: str, device: int = 1) -> list[bytes]:
    return [item.id for item in await node.pending(account, device)]
