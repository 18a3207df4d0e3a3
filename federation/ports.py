"""What federation needs from the node it runs in (federation/ never imports node/).

- ``FederationStore``: the part of the node's store federation reads and writes (node/store's
  ``Store`` fulfils it); ``StoreFailure``: the error it raises when it cannot do its job now (a
  locked database, a full disk). That is never the peer's fault and never stops the node: a
  background task logs one line and tries again at its next interval, a peer's request is
  answered ``unavailable``, a remote method raises FederationError ``unavailable``.
- ``KeyDirectory``: the node's key directory, whose heads and proofs peers fetch and cosign
  (node/directory.py ``NodeDirectory``).
- ``LocalAnswer``: answers a lookup for an account of this node; ``Delivered``: told which
  mailboxes got envelopes from a peer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from sonet.core.client_api import SignedHead
from sonet.core.crypto import VerifyKey
from sonet.core.errors import Refusal
from sonet.core.wire import Frame

from .peers import Peer
from .records import GroupReceived, NewEnvelope, OutboundItem, QueuedItem, Quota, SplitRow, StatusUpdate, WitnessRow

__all__ = ["StoreFailure", "Page", "Queued", "FederationStore", "KeyDirectory", "LocalAnswer", "Delivered", "Received"]

#: one item a peer pushed, as federation classified it for ``FederationStore.receive``
Received = NewEnvelope | OutboundItem | StatusUpdate | GroupReceived

#: the answer (Devices / Bundles / KeyPackages, or an ErrorFrame with the same request number)
#: to a FetchDevices / FetchBundles / FetchKeyPackages for an account of this node
LocalAnswer = Callable[[Frame], Awaitable[Frame]]
#: called with the (account, device) mailboxes that got new envelopes from a peer
Delivered = Callable[[Iterable[tuple[str, int]]], None]


T = TypeVar("T")


class Page(list[T]):
    """What one read of a queue returned, in order. ``complete``: the read stopped at neither
    its count nor its byte cap, so it held every item there was past where it started; a
    reader that is woken for each new item need not look again until it is woken."""

    complete: bool = False


class StoreFailure(Refusal):
    """The store cannot do what it was asked; the base of node/store's ``StoreError``."""

    code = "store_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(code or type(self).code, message)


class Queued(Protocol):
    """A store write with its place in the order of writes (``FederationStore.receive`` hands
    it to ``queued``): the ``after`` of the next one, which then runs after it and not at all if
    it failed (node/store/group_commit.py)."""

    @property
    def failed(self) -> bool: ...


class FederationStore(Protocol):
    """What federation uses of the node's store (node/store/base.py documents each method).
    Every method may raise ``StoreFailure``."""

    # the peer table
    async def peers(self) -> list[Peer]: ...

    async def set_peer_key(self, name: str, *, fingerprint: str, key: bytes) -> bool: ...

    # this node's accounts (to count the prekey bundles a lookup may hand out)
    async def devices(self, account: str) -> Sequence[object]: ...

    # what peers push, and the outboxes towards them
    async def receive(
        self,
        items: Sequence[Received],
        *,
        now: int,
        quota: Quota,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
    ) -> list[str]: ...

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int, after: int = 0) -> Page[QueuedItem]: ...

    async def expired_outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[QueuedItem]: ...

    async def outbox_done(
        self,
        dest: str,
        seqs: Sequence[int],
        *,
        now: int,
        statuses: Sequence[StatusUpdate] = (),
        reports: Sequence[OutboundItem] = (),
        failed: Mapping[int, str] | None = None,
    ) -> None: ...

    async def outbox_counts(self) -> dict[str, int]: ...

    async def outbox_destinations(self) -> list[str]: ...

    async def expire_outbox(self, *, now: int) -> None: ...

    # what this node witnessed of its peers' key directories
    async def witnessed_all(self) -> list[WitnessRow]: ...

    async def set_witnessed(self, row: WitnessRow) -> None: ...

    async def splits(self) -> list[SplitRow]: ...

    async def record_split(self, row: SplitRow) -> bool: ...


class KeyDirectory(Protocol):
    """This node's key directory, as its peers see it."""

    async def head(self) -> SignedHead:
        """The newest signed head, with the cosignatures collected so far."""
        ...

    async def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """The proof that the tree of size ``first`` is a prefix of the one of size
        ``second``; ValueError for sizes it cannot prove."""
        ...

    async def add_cosignature(self, witness: str, key: VerifyKey, cosignature: bytes) -> None:
        """Keep ``witness``'s cosignature of one of this node's heads; VerifyError unless it
        verifies with ``key``."""
        ...
