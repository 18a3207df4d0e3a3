"""What the last commits stored into each queue a reader waits on (a destination's outbox, a
device's mailbox), kept in memory so that the reader a commit wakes gets those items without a
read on the store's thread.

Why: on the latency path, the outbox worker (the sending node) and a device's delivery task
(the receiving node) are each woken by a commit and then read back what it stored. Each such
read is a hand-off to a store thread and back, ~0.45 ms p50 on a busy 2-core machine against
~0.05 ms of SQL (docs/performance.md, "Store hand-offs per push" and "The committed tail of
each queue"). The SQLite store, the one writer of its file, knows what each commit stored.

An entry (key, ``after``, items) says: every row of that queue with seq > ``after`` that is
committed (and was unexpired when the entry was read, at ``read_at``) is in ``items``, in seq
order, and nothing else is. It is made only by a complete read from the database
(``end_read``), kept true by every commit of this store (``publish``, in commit order, before
the commit's callers wake anyone), and dropped whenever that cannot be shown:

- a commit added rows to the queue but their items were not captured (the entry appeared while
  the commit ran);
- a read was under way when a commit touched its queue (``Ticket.spoiled``): its result is
  returned but not kept;
- another connection wrote to the file (``reset``: PRAGMA data_version), a group failed, or an
  entry outgrew its caps.

The caps count what an item holds in memory: its bytes and ``overhead`` (its Python objects:
~260 B for a mailbox item, measured, which a 1-byte body would otherwise count as 1).

A read whose ``after`` is below the entry's goes to the database (a worker going back to items
it must try again), and so does one whose ``now`` is before ``read_at`` (the wall clock stepped
back: rows the entry left out as expired are unexpired for it), and one when no commit of this
store added to the entry since its last complete answer: the reader was then woken by something
else, e.g. a write by another connection (an operator's command; tests write that way too),
which this store sees only at its next commit (data_version) or admin_version poll. Everything
here runs on the trio thread; the store's writer thread only asks ``entry(key)`` (a dict
lookup, atomic under the GIL) and ``takes`` (reads of counters): a key that gets an entry
during a capture is the first case above.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .base import Page

__all__ = ["QueueTails", "Changes", "Entry", "Ticket", "Queued"]


class Queued(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def expires(self) -> int: ...


K = TypeVar("K", bound=Hashable)
I = TypeVar("I", bound=Queued)
X = TypeVar("X")


def _seq(item: Queued) -> int:
    return item.seq


class Ticket:
    """A read from the database under way for ``key``; ``spoiled`` once a commit touched the
    key meanwhile (the read's snapshot may or may not hold that commit: not kept)."""

    __slots__ = ("key", "spoiled")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.spoiled = False


@dataclass(slots=True)
class Entry(Generic[I]):
    after: int
    items: list[I] = field(default_factory=list)
    #: what ``items`` hold in memory (``QueueTails``: bytes and overhead)
    size: int = 0
    #: a commit added items since the last complete answer (see ``answer``)
    fresh: bool = False
    #: the ``now`` of the read that made it (what had expired by then is not in ``items``)
    read_at: int = 0


@dataclass(slots=True)
class Changes(Generic[K, I]):
    """One commit's changes to one kind of queue (``QueueTails.publish``); each entry named
    is the one the capture saw (``QueueTails.entry``)."""

    touched: set[K] = field(default_factory=set)
    added: dict[K, tuple[Entry[I], list[I]]] = field(default_factory=dict)
    gone_keys: set[K] = field(default_factory=set)
    gone: dict[K, tuple[Entry[I], list[int]]] = field(default_factory=dict)


class QueueTails(Generic[K, I]):
    """The entries of one kind of queue. ``size(item)``: its bytes (as the read's byte cap
    counts them); with ``overhead`` per item, what it holds in memory, which the caps count.
    Caps: ``max_items`` and ``max_bytes`` per entry, ``total_bytes`` in all, ``max_entries``
    (the least recently read goes first)."""

    def __init__(
        self,
        *,
        size: Callable[[I], int],
        max_items: int,
        max_bytes: int,
        total_bytes: int,
        max_entries: int,
        overhead: int = 0,
    ) -> None:
        self._size = size
        self._overhead = overhead
        self.max_items = max_items
        self._max_bytes = max_bytes
        self._total_bytes = total_bytes
        self._max_entries = max_entries
        self._entries: dict[K, Entry[I]] = {}
        self._tickets: dict[K, list[Ticket]] = {}
        self._bytes = 0

    # The writer thread's one question ------------------------------------------------------

    def entry(self, key: K) -> Entry[I] | None:
        """The key's entry, if it has one: whether a commit's rows for it are worth capturing.
        The capture hands it back with them; an entry that is not the same one by then (made
        while the commit ran, from a read that may not hold it) is dropped, not added to.
        (Its ``after`` may be read: it only grows while the entry lives.)"""
        return self._entries.get(key)

    def takes(self, entry: Entry[I], count: int, size: int, captured: int) -> int | None:
        """What ``count`` new rows of ``size`` bytes in all would hold in ``entry``, or None if
        that is past its caps or, with what this capture took so far (``captured``), past the
        total: their items are not copied (on the writer thread: the counters are read while
        they may change, which only ``publish``, that checks them again, relies on)."""
        cost = size + count * self._overhead
        if len(entry.items) + count > self.max_items or entry.size + cost > self._max_bytes:
            return None
        if self._bytes + captured + cost > self._total_bytes:
            return None
        return cost

    # Readers ---------------------------------------------------------------------------------

    def answer(self, key: K, *, after: int, limit: int, max_bytes: int | None, now: int) -> Page[I] | None:
        """What a read of the database would return (the same caps, the same ``complete``),
        or None if the entry cannot say: no entry, ``after`` below it, ``now`` before it was
        read, or no commit of this store added to it since its last complete answer. A reader that asks again then was
        woken by something else (a write by another connection, which a test or an operator's
        command may make and then wake it): the database is read, as it was before."""
        entry = self._entries.get(key)
        if entry is None or after < entry.after or now < entry.read_at or not entry.fresh:
            return None
        self._entries[key] = self._entries.pop(key)  # most recently read last
        if after > entry.after:  # the reader is past these: they are not asked for again
            cut = bisect_right(entry.items, after, key=_seq)
            passed = sum(self._cost(item) for item in entry.items[:cut])
            entry.size -= passed
            self._bytes -= passed
            del entry.items[:cut]
            entry.after = after
        page: Page[I] = Page()
        total = 0
        for item in entry.items:
            if len(page) == limit:
                break
            if item.expires <= now:
                continue
            total += self._size(item)
            if page and max_bytes is not None and total > max_bytes:
                return page  # stopped by the byte cap: not complete
            page.append(item)
        page.complete = len(page) < limit
        entry.fresh = not page.complete  # the reader reads on at once: the rest is known
        return page

    def begin_read(self, key: K) -> Ticket:
        ticket = Ticket(key)
        self._tickets.setdefault(key, []).append(ticket)
        return ticket

    def end_read(self, ticket: Ticket, *, after: int, now: int, page: Page[I] | None) -> None:
        """The read of ``ticket`` (past ``after``, at ``now``) returned ``page`` (None: it
        failed). A complete read that no commit touched meanwhile becomes the key's entry."""
        key: K = ticket.key  # type: ignore[assignment]
        tickets = self._tickets.get(key, [])
        if ticket in tickets:
            tickets.remove(ticket)
            if not tickets:
                del self._tickets[key]
        if page is None or ticket.spoiled or not page.complete:
            return
        self._drop(key)
        entry: Entry[I] = Entry(after, list(page), sum(self._cost(item) for item in page), read_at=now)
        if entry.size > self._max_bytes or len(entry.items) > self.max_items:
            return
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self._max_entries or self._bytes > self._total_bytes:
            self._drop(next(iter(self._entries)))

    # Commits -----------------------------------------------------------------------------------

    def publish(self, changes: Changes[K, I]) -> None:
        """One commit of this store, in commit order (``Changes``): the keys it
        deleted rows of (``gone_keys``) and, for those that had an entry, the rows past where
        the entry started (``gone``); the keys it added rows to (``touched``) and, for those
        that had an entry, the rows' items in seq order (``added``). Each with the entry the
        capture saw."""
        for key in changes.gone_keys:
            gone = self._entry_seen(key, changes.gone.get(key))
            if gone is None:
                continue
            entry, seqs = gone
            for seq in seqs:
                i = bisect_left(entry.items, seq, key=_seq)
                if i < len(entry.items) and entry.items[i].seq == seq:
                    cost = self._cost(entry.items.pop(i))
                    entry.size -= cost
                    self._bytes -= cost
        for key in changes.touched:
            added = self._entry_seen(key, changes.added.get(key))
            if added is None:
                continue
            entry, items = added
            last = entry.items[-1].seq if entry.items else entry.after
            for item in items:
                if item.seq > last:  # a read that saw this commit already holds it
                    entry.items.append(item)
                    cost = self._cost(item)
                    entry.size += cost
                    self._bytes += cost
                    entry.fresh = True
            if entry.size > self._max_bytes or len(entry.items) > self.max_items or self._bytes > self._total_bytes:
                self._drop(key)

    def reset(self) -> None:
        """Nothing known any more (another connection wrote, or a group failed)."""
        self._entries.clear()
        self._bytes = 0
        for tickets in self._tickets.values():
            for ticket in tickets:
                ticket.spoiled = True

    # -------------------------------------------------------------------------------------------

    def _cost(self, item: I) -> int:
        return self._size(item) + self._overhead

    def _entry_seen(self, key: K, seen: tuple[Entry[I], list[X]] | None) -> tuple[Entry[I], list[X]] | None:
        """A commit changed ``key``'s queue: a read under way is spoiled; the key's entry with what
        the capture took for it (``seen``), if it is the entry the capture saw. Any other entry is
        dropped (no capture: past its caps; another entry: made while the commit ran)."""
        self._spoil(key)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if seen is None or seen[0] is not entry:
            self._drop(key)
            return None
        return seen

    def _spoil(self, key: K) -> None:
        for ticket in self._tickets.get(key, ()):
            ticket.spoiled = True

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def __len__(self) -> int:
        return len(self._entries)
