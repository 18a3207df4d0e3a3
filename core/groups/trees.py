"""Ratchet trees by reference (docs/groups.md "Trees by reference").

A Welcome that carries the ratchet tree grows by ~1.5 KB per member device (suite 0x004D), so
commits send Welcomes without it. The hub keeps the public tree of each epoch that a Welcome
was issued for (it has it: its ``PublicGroup`` after the commit) and hands it out in chunks
(``FetchGroupTree`` -> ``GroupTree``, core/client_api.py). The hub need not be trusted with it:
the joining device checks the tree against the GroupInfo inside the Welcome (signature by the
committer's leaf, tree hash, parent hashes: ``Group.join`` with ``ratchet_tree``), so a wrong
tree makes the join fail, never a wrong group.

What a hub keeps is bounded per group: the trees of at most ``MAX_KEPT_TREES`` epochs and
``MAX_KEPT_TREE_BYTES`` in all (the oldest dropped first), each for the node's item TTL (the
Welcome it serves expires then too). A joiner that comes back after its tree was dropped cannot
join by that Welcome (docs/groups.md "Not yet").
"""

from __future__ import annotations

from .. import limits
from ..errors import RemoteProtocolError
from ..client_api import GroupTree

__all__ = ["CHUNK_BYTES", "MAX_TREE_BYTES", "MAX_KEPT_TREES", "MAX_KEPT_TREE_BYTES", "tree_chunk", "TreeDownload"]

#: one GroupTree answer's chunk
CHUNK_BYTES = limits.GROUP_TREE_CHUNK_BYTES
#: a whole tree (a hub does not keep a larger one; ~5.5 MB for 2,000 devices, every parent filled)
MAX_TREE_BYTES = limits.MAX_GROUP_TREE_BYTES
#: trees a hub keeps per group (epochs that had a Welcome), the oldest dropped first
MAX_KEPT_TREES = 64
#: bytes of trees a hub keeps per group, the oldest dropped first: ~12 trees of a 1,500-device
#: group, so its joiners have ~12 adding commits' time to fetch theirs
MAX_KEPT_TREE_BYTES = 64 * 1024 * 1024


def tree_chunk(tree: bytes, offset: int) -> tuple[int, bytes]:
    """(total, chunk): the part of ``tree`` from ``offset`` on that one answer carries;
    ValueError for an offset not inside the tree."""
    if not 0 <= offset < len(tree):
        raise ValueError(f"offset {offset} is not inside the tree of {len(tree)} bytes")
    return len(tree), tree[offset : offset + CHUNK_BYTES]


class TreeDownload:
    """The chunks of one tree as a device fetches them, in order: ``offset`` is where the next
    one starts; ``add`` takes an answer (RemoteProtocolError for one that is not the next part of
    this tree); ``done`` once the whole tree came."""

    def __init__(self, group: bytes, epoch: int) -> None:
        self.group, self.epoch = group, epoch
        self._parts: list[bytes] = []
        self.offset = 0
        self.total: int | None = None

    @property
    def done(self) -> bool:
        return self.total is not None and self.offset == self.total

    def add(self, answer: GroupTree) -> None:
        if (answer.group, answer.epoch, answer.offset) != (self.group, self.epoch, self.offset):
            raise RemoteProtocolError("the node answered with another part of the group tree than asked", code="invalid")
        if self.total is not None and answer.total != self.total:
            raise RemoteProtocolError("the group tree's size changed between its parts", code="invalid")
        if answer.total > MAX_TREE_BYTES or not answer.chunk or len(answer.chunk) > CHUNK_BYTES:
            raise RemoteProtocolError("a group tree part out of bounds", code="invalid")
        if answer.offset + len(answer.chunk) != answer.total and len(answer.chunk) != CHUNK_BYTES:
            raise RemoteProtocolError("a group tree part shorter than a chunk before its end", code="invalid")
        self.total = answer.total
        self._parts.append(answer.chunk)
        self.offset += len(answer.chunk)
        if self.offset > self.total:
            raise RemoteProtocolError("the group tree's parts are longer than the tree", code="invalid")

    def tree(self) -> bytes:
        if not self.done:
            raise RemoteProtocolError("the group tree is not complete", code="invalid")
        return b"".join(self._parts)
