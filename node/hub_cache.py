"""The hub's decoded group states, kept between submissions (docs/groups.md "What each node keeps").

Decoding a hub state (``HubGroup.from_bytes``: the public ratchet tree, every leaf's credential)
costs ~0.19 s CPU for a 1,500-device group, far more than ordering one message. So the node
keeps the ``HubGroup`` it ordered with last, per group, and takes it again for the next
submission instead of decoding the stored state.

Which copy is current: every state the hub writes gets a fresh random tag, stored beside it
(``hosted_groups.state_tag``); a kept copy is used only while its tag is the stored one. So a
transaction that ordered and then rolled back (the copy moved on, the database did not), a
restart (nothing kept), another writer of the same database (another tag, or none: a state
written without a new tag loses its tag, migration ``_GROUP_BODIES``) and another store in the
same process (its own tags) all simply decode again. A copy is taken out while it is used
(``take``) and kept again only after ordering went through (``keep``): an ordering that failed
half-way never leaves a copy behind.

Nor is the state written again for an application message, which changes only the sequence
number (``hosted_groups.seq``, which a decoded state takes over): ordering one costs its own
checks, not encoding and storing the group's tree (node/store/sqlite_groups.py ``_order``).

Bounded by groups and by bytes (the size of the state's encoding; a decoded state holds about
``MEMORY_FACTOR`` times that in memory), the least recently used dropped first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from sonet.core.groups.hub import HubGroup

__all__ = ["HubCache", "HUBS", "new_tag", "MEMORY_FACTOR"]

#: about how much more memory a decoded hub state takes than its encoding (measured at 1,500 devices)
MEMORY_FACTOR = 3

#: what one node process keeps by default: a few large groups or many small ones
DEFAULT_MAX_GROUPS = 256
DEFAULT_MAX_BYTES = 32 << 20  # of encoded state (~96 MiB in memory: ~14 groups of 1,500 devices)

TAG_LEN = 16


def new_tag() -> bytes:
    """A fresh tag for a state about to be written."""
    return os.urandom(TAG_LEN)


class HubCache:
    """Decoded ``HubGroup`` states by group id, each with the tag of the stored state it is.
    Thread-safe: every store's writer thread may use it."""

    def __init__(self, *, max_groups: int = DEFAULT_MAX_GROUPS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_groups < 1 or max_bytes < 1:
            raise ValueError("a hub cache holds at least one group and one byte")
        self.max_groups, self.max_bytes = max_groups, max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[bytes, HubGroup, int]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def take(self, group: bytes, tag: bytes | None) -> HubGroup | None:
        """The kept state of ``group`` if it is the stored one (``tag``), taken out of the
        cache; None otherwise (the caller decodes the stored state)."""
        with self._lock:
            entry = self._entries.pop(group, None)
            if entry is not None:
                self._bytes -= entry[2]
            if entry is None or tag is None or entry[0] != tag:
                self.misses += 1
                return None
            self.hits += 1
            return entry[1]

    def keep(self, group: bytes, tag: bytes, hub: HubGroup, size: int) -> None:
        """Keep ``hub``, the state just stored with ``tag`` (``size``: its encoding's length);
        one larger than the whole cache is not kept."""
        with self._lock:
            old = self._entries.pop(group, None)
            if old is not None:
                self._bytes -= old[2]
            if size > self.max_bytes:
                return
            self._entries[group] = (tag, hub, size)
            self._bytes += size
            while len(self._entries) > self.max_groups or self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def drop(self, group: bytes) -> None:
        with self._lock:
            entry = self._entries.pop(group, None)
            if entry is not None:
                self._bytes -= entry[2]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The encoded size of the states kept."""
        return self._bytes


#: the node process's cache (every store shares it: tags keep their states apart)
HUBS = HubCache()
