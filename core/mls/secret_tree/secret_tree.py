"""The secret tree of RFC 9420 §9: the epoch's encryption_secret at the root of a tree shaped
like the ratchet tree, each node's children derived from it,

    left  = ExpandWithLabel(secret, "tree", "left", KDF.Nh)
    right = ExpandWithLabel(secret, "tree", "right", KDF.Nh)

and each leaf's secret split into its sender's handshake and application ratchets:

    handshake_ratchet_secret[0]   = ExpandWithLabel(leaf_secret, "handshake", "", KDF.Nh)
    application_ratchet_secret[0] = ExpandWithLabel(leaf_secret, "application", "", KDF.Nh)

Derivation is lazy: a leaf's ratchets are made the first time that sender is used, walking down
from the lowest node secret still held. A node's secret is deleted once its children are
derived and a leaf's once its ratchets are (§9.2), so the tree holds O(log n) secrets per
sender used, never the whole tree up front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ...errors import LocalProtocolError, RemoteProtocolError
from ...limits import MLS_MAX_SKIPPED_GENERATIONS, MLS_OUT_OF_ORDER_WINDOW
from ..tree_math import direct_path, leaf_to_node, left, right, root
from .ratchet import RatchetKey, RatchetKind, SenderRatchet

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["SecretTree", "MAX_LEAVES"]

T = TypeVar("T")

#: leaf indices are uint32
MAX_LEAVES = 1 << 32


def _full_width(leaf_count: int) -> int:
    """The leaves of the full tree that holds ``leaf_count`` (the next power of two)."""
    if not 1 <= leaf_count <= MAX_LEAVES:
        raise LocalProtocolError(f"MLS: a secret tree of {leaf_count} leaves")
    return 1 << (leaf_count - 1).bit_length()


class SecretTree:
    """The senders' ratchets of one epoch. ``leaf_count`` is the ratchet tree's number of leaves
    (a group size is rounded up to the full tree that holds it)."""

    __slots__ = ("_cs", "_leaves", "_nodes", "_ratchets", "_window", "_max_skipped")

    def __init__(
        self,
        cs: CipherSuite,
        encryption_secret: bytes,
        leaf_count: int,
        *,
        window: int = MLS_OUT_OF_ORDER_WINDOW,
        max_skipped: int = MLS_MAX_SKIPPED_GENERATIONS,
    ) -> None:
        if len(encryption_secret) != cs.nh:
            raise LocalProtocolError(f"MLS: encryption_secret of {len(encryption_secret)} bytes, the suite needs {cs.nh}")
        self._cs = cs
        self._leaves = _full_width(leaf_count)
        self._nodes: dict[int, bytes] = {root(self._leaves): encryption_secret}  # node secrets not yet split
        self._ratchets: dict[tuple[int, RatchetKind], SenderRatchet] = {}
        self._window = window
        self._max_skipped = max_skipped

    @property
    def leaf_count(self) -> int:
        return self._leaves

    @property
    def held_node_secrets(self) -> int:
        """How many node secrets the tree holds now (bounded: see the module's docstring)."""
        return len(self._nodes)

    def ratchet(self, leaf: int, kind: RatchetKind) -> SenderRatchet:
        """The ``kind`` ratchet of the sender at ``leaf`` (derived on first use)."""
        found = self._ratchets.get((leaf, kind))
        if found is None:
            self._split_leaf(leaf)
            found = self._ratchets[(leaf, kind)]
        return found

    def next_key(self, leaf: int, kind: RatchetKind) -> RatchetKey:
        """The key of our own next message (we are the sender at ``leaf``)."""
        return self.ratchet(leaf, kind).next_key()

    def open_with(self, leaf: int, kind: RatchetKind, generation: int, use: Callable[[RatchetKey], T]) -> T:
        """``use(key)`` with the key of a received message (see ``SenderRatchet.open_with``)."""
        return self.ratchet(leaf, kind).open_with(generation, use)

    def _split_leaf(self, leaf: int) -> None:
        if not 0 <= leaf < self._leaves:
            raise RemoteProtocolError(f"MLS: sender leaf {leaf} is outside a tree of {self._leaves} leaves")
        target = leaf_to_node(leaf)
        path = [target, *direct_path(target, self._leaves)]  # bottom-up
        start = next((i for i, x in enumerate(path) if x in self._nodes), None)
        if start is None:  # only a leaf whose ratchets exist has no held ancestor
            raise LocalProtocolError(f"MLS: the secret of leaf {leaf} is gone")
        cs = self._cs
        secret = self._nodes.pop(path[start])
        for i in range(start, 0, -1):  # descend towards the leaf, keeping the other child
            node, on_path = path[i], path[i - 1]
            lsecret = cs.expand_with_label(secret, b"tree", b"left", cs.nh)
            rsecret = cs.expand_with_label(secret, b"tree", b"right", cs.nh)
            if on_path == left(node):
                secret, self._nodes[right(node)] = lsecret, rsecret
            else:
                secret, self._nodes[left(node)] = rsecret, lsecret
        for kind in RatchetKind:
            self._ratchets[(leaf, kind)] = SenderRatchet(
                cs,
                cs.expand_with_label(secret, kind.value, b"", cs.nh),
                window=self._window,
                max_skipped=self._max_skipped,
            )

    def __repr__(self) -> str:  # never show key material
        return f"SecretTree(leaves={self._leaves}, <secret>)"
