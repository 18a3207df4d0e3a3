"""This node's key directory (ARCHITECTURE §7): the Merkle tree of its log, its signed heads,
and the proofs that go with every lookup.

The log itself lives in the store: every change to an account's identity key or device list
appends the account's leaf in the transaction of the change. ``NodeDirectory`` keeps the leaf
hashes in a ``core.keydir.MerkleTree`` and signs a new head (with the node identity key) when
the log grew: ``publish``, which the handlers call after each account change. A crash between a
change and its head loses nothing: ``start`` and the next lookup of that account publish it.

A lookup answer proves the account's newest leaf against the largest head covering it that a
witness cosigned, else against the newest head: clients that require cosignatures get the
best this node has. ``leaves`` hands out stretches of the log with the compact range before
them, so a device can audit every leaf (self-monitoring) between two heads it verified. The federation service is given this object as its ``directory``
(``head``, ``consistency``, ``add_cosignature``) and is told of each new head through
``on_new_head``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from sonet.core import limits
from sonet.core.client_api import DirectoryProof, SignedHead
from sonet.core.crypto import SigningKey, VerifyKey
from sonet.core.errors import VerifyError
from sonet.core.keydir import MerkleTree, TreeHead, decode_cosignature, sign_head, verify_cosignature, verify_head

from .store import HeadRow, Store, StoreError

__all__ = ["NodeDirectory"]

log = logging.getLogger("sonet.node.directory")


class NodeDirectory:
    def __init__(
        self,
        *,
        name: str,
        key: SigningKey,
        store: Store,
        clock_ms: Callable[[], int],
        on_new_head: Callable[[], None],
    ) -> None:
        self.name = name
        self._key = key
        self._store = store
        self._clock_ms = clock_ms
        self._on_new_head = on_new_head
        self._tree = MerkleTree()
        #: the size of the newest head in the store (-1: none yet, before ``start``)
        self._size = -1
        self._lock = trio.Lock()

    async def start(self) -> None:
        """Give accounts created before the directory existed their first leaf, load the log
        and sign a head if it has none for its current size (a size-0 head on a new node, so
        that there is always a head to witness). StoreError if the newest head is not this
        node's own (name and key): the database and node.key are not the same node's."""
        latest = await self._store.latest_head()
        if latest is not None:
            try:
                verify_head(latest.head, node_key=self._key.public, node=self.name)
            except VerifyError as exc:
                # devices and peers pin the key, and the heads they hold are signed by the
                # database's own: serving on would fork the directory and fail every check
                raise StoreError(
                    f"the key directory in this database was not signed by this node ({exc}): node.key, node.toml's "
                    "name and node.db are not the same node's; put back the node.key and node.toml that belong with "
                    "this node.db (the same backup), or restore all three from one backup (docs/operations.md)"
                ) from None
        added = await self._store.directory_backfill(now=self._clock_ms())
        if added:
            log.info("key directory: added %d accounts created before it existed", added)
        await self.publish()

    async def publish(self) -> None:
        """Sign and store a head for the leaves stored since the last one, if any; then tell
        ``on_new_head``. Safe to call concurrently: one signs, the others find nothing new.
        StoreError (and nothing signed) if the log no longer extends the newest head."""
        async with self._lock:
            # The head first: leaves are written before any head covering them, so the hashes
            # read afterwards cover it.
            latest = await self._store.latest_head()
            self._tree.extend(await self._store.directory_hashes(self._tree.size))
            if latest is not None:
                # Never sign a head that forks from our own last one (a damaged or edited log).
                if latest.size > self._tree.size or latest.root != self._tree.root(latest.size):
                    raise StoreError("the key directory log does not match this node's newest signed head")
                if latest.size == self._tree.size:
                    self._size = latest.size
                    return
            size, root = self._tree.size, self._tree.root()
            raw = sign_head(self._key, node=self.name, size=size, root=root, at=self._clock_ms())
            await self._store.put_head(size=size, root=root, head=raw)
            self._size = size
        log.debug("key directory: signed head of size %d", size)
        self._on_new_head()

    async def head(self) -> SignedHead:
        """The newest signed head with its cosignatures."""
        row = await self._store.latest_head()
        if row is None:
            raise StoreError("the key directory has no signed head yet")
        return _signed(row)

    async def proof(self, account: str) -> DirectoryProof | None:
        """The proof of ``account``'s newest leaf (None: no such account), against the largest
        cosigned head that covers it, else the newest head."""
        latest = await self._store.directory_latest(account)
        if latest is None:
            return None
        index, leaf = latest
        await self._cover(index)
        row = await self._store.cosigned_head(min_size=index + 1) or await self._store.latest_head()
        assert row is not None  # _cover made one
        await self._catch_up(row.size)  # (another process may have signed it)
        return self._prove(leaf, index, row)

    async def leaves(self, start: int, end: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """(the frontier of the tree of size ``start``, leaves ``start`` .. ``end - 1``): what
        a device auditing the log needs to get from one verified head to a later one.
        ValueError unless 0 <= start < end <= the newest head's size."""
        await self._catch_up(end)
        if not 0 <= start < end <= self._size:
            raise ValueError(f"a leaf range needs 0 <= start < end <= {max(self._size, 0)} (the newest head's size)")
        leaves = await self._store.directory_leaves(start, end)
        return tuple(self._tree.frontier(start)), tuple(leaves)

    async def witnesses(self) -> int:
        """How many configured peers witness this directory: those among the cosigners of its
        largest cosigned head (a peer only configured, or that never cosigned, does not count:
        devices that require a cosignature because of it would have none to get)."""
        row = await self._store.cosigned_head(min_size=0)
        if row is None:
            return 0
        peers = {p.name for p in await self._store.peers()}
        return len({decode_cosignature(c).witness for c in row.cosignatures} & peers)

    async def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """The RFC 9162 consistency proof between this node's trees of sizes ``first`` and
        ``second``; ValueError unless 0 < first <= second <= the newest head's size."""
        await self._catch_up(second)
        if not 0 < first <= second <= self._size:
            raise ValueError(
                f"consistency proofs need 0 < first <= second <= {max(self._size, 0)} (the newest head's size)"
            )
        return tuple(self._tree.consistency_proof(first, second))

    async def add_cosignature(self, witness: str, key: VerifyKey, cosignature: bytes) -> None:
        """Keep ``witness``'s cosignature of one of this node's heads. ``witness`` is the peer
        that handed it over (authenticated by the link), ``key`` its pinned key. VerifyError
        if it is not that peer's valid cosignature of a head this node signed."""
        claimed = decode_cosignature(cosignature)
        if claimed.witness != witness:
            raise VerifyError(f"{witness} handed over a cosignature by {claimed.witness}", code="cosignature_mismatch")
        await self._catch_up(claimed.size)
        if not 0 <= claimed.size <= self._size:
            raise VerifyError(f"no head of size {claimed.size} was signed by {self.name}", code="cosignature_mismatch")
        # A cosignature vouches for (node, size, root), not for a head's timestamp or bytes:
        # this tree's root at that size is what every head of that size signed.
        ours = TreeHead(node=self.name, size=claimed.size, root=self._tree.root(claimed.size), at=0, raw=b"")
        verify_cosignature(cosignature, witness_key=key, head=ours)
        await self._store.add_cosignature(size=claimed.size, witness=witness, cosignature=cosignature)

    async def _catch_up(self, size: int) -> None:
        """Another process of this node (a shared PostgreSQL database) may have signed a
        newer head than this one knows: read the log up to the newest head before refusing
        ``size`` as beyond it (only a signed head is taken: nothing is signed here). The log
        stays one: each leaf's index is taken in a serializable transaction, and a head signs
        what the log holds."""
        if size <= self._size and size <= self._tree.size:
            return
        async with self._lock:
            latest = await self._store.latest_head()  # first: the hashes read next cover it
            self._tree.extend(await self._store.directory_hashes(self._tree.size))
            if latest is None or latest.size <= self._size:
                return
            if self._tree.size >= latest.size and self._tree.root(latest.size) == latest.root:
                self._size = latest.size

    async def _cover(self, index: int) -> None:
        """Make sure a head covers leaf ``index`` (written, but its head may not be signed yet:
        a publish that failed, or a crash before it)."""
        if index >= self._size:
            await self.publish()

    def _prove(self, leaf: bytes, index: int, row: HeadRow) -> DirectoryProof:
        path = tuple(self._tree.inclusion_proof(index, row.size))
        return DirectoryProof(leaf=leaf, index=index, path=path, head=_signed(row))


def _signed(row: HeadRow) -> SignedHead:
    # A frame carries at most MAX_COSIGNATURES of them: plenty for any quorum a client asks for.
    return SignedHead(head=row.head, cosignatures=row.cosignatures[: limits.MAX_COSIGNATURES])
