"""The in-memory tails of the store's queues (node/store/queue_tails.py), sans I/O: an entry
answers as a read of the database would, or not at all."""

from __future__ import annotations

from dataclasses import dataclass

from sonet.node.store.base import Page
from sonet.node.store.queue_tails import Changes, QueueTails

NOW = 1_000


@dataclass(frozen=True)
class Item:
    seq: int
    expires: int = NOW + 100
    data: bytes = b"x" * 10


def tails(**caps: int) -> QueueTails[str, Item]:
    options = {"max_items": 100, "max_bytes": 10_000, "total_bytes": 100_000, "max_entries": 10} | caps
    return QueueTails(size=lambda item: len(item.data), **options)


def page(*items: Item, complete: bool = True) -> Page[Item]:
    out: Page[Item] = Page(items)
    out.complete = complete
    return out


def read(t: QueueTails[str, Item], key: str = "q", after: int = 0, limit: int = 10, max_bytes: int | None = None) -> Page[Item] | None:
    return t.answer(key, after=after, limit=limit, max_bytes=max_bytes, now=NOW)


def installed(t: QueueTails[str, Item], *items: Item, key: str = "q", after: int = 0) -> None:
    """The entry a complete read of ``items`` makes."""
    t.end_read(t.begin_read(key), after=after, now=NOW, page=page(*items))


def committed(t: QueueTails[str, Item], *items: Item, key: str = "q") -> None:
    """A commit of this store that added ``items`` to the queue (captured with its entry)."""
    entry = t.entry(key)
    t.publish(Changes(touched={key}, added={} if entry is None else {key: (entry, list(items))}))


def touched_uncaptured(t: QueueTails[str, Item], key: str = "q") -> None:
    """A commit that added rows to the queue whose items were not captured."""
    t.publish(Changes(touched={key}))


def deleted(t: QueueTails[str, Item], *seqs: int, key: str = "q") -> None:
    """A commit that deleted rows of the queue (captured with its entry)."""
    entry = t.entry(key)
    t.publish(Changes(gone_keys={key}, gone={} if entry is None else {key: (entry, list(seqs))}))


def seqs(p: Page[Item] | None) -> list[int] | None:
    return None if p is None else [i.seq for i in p]


def test_a_commits_items_are_answered_once_then_the_database_is_read() -> None:
    t = tails()
    assert read(t) is None  # nothing known before a complete read
    installed(t, Item(1), Item(2))
    assert read(t) is None  # nothing added since that read: whoever woke the reader, not a commit
    committed(t, Item(3), Item(4))
    answer = read(t, after=2)
    assert seqs(answer) == [3, 4] and answer is not None and answer.complete
    assert read(t, after=4) is None  # a second look without a commit: the database


def test_an_incomplete_answer_leaves_the_rest_to_be_answered() -> None:
    t = tails()
    installed(t)
    committed(t, Item(1), Item(2), Item(3))
    first = read(t, limit=2)
    assert seqs(first) == [1, 2] and first is not None and not first.complete
    rest = read(t, after=2, limit=2)
    assert seqs(rest) == [3] and rest is not None and rest.complete


def test_an_incomplete_read_or_a_failed_one_makes_no_entry() -> None:
    t = tails()
    t.end_read(t.begin_read("q"), after=0, now=NOW, page=page(Item(1), complete=False))
    committed(t, Item(2))
    assert read(t) is None
    t.end_read(t.begin_read("q"), after=0, now=NOW, page=None)
    committed(t, Item(3))
    assert read(t) is None


def test_a_read_below_the_entry_goes_to_the_database() -> None:
    t = tails()
    installed(t, Item(5), after=4)
    committed(t, Item(6))
    assert read(t, after=3) is None
    assert seqs(read(t, after=5)) == [6]
    committed(t, Item(7))
    assert read(t, after=4) is None  # the reader moved past 5: the entry starts there now
    assert seqs(read(t, after=5)) == [6, 7]


def test_the_caps_and_complete_are_those_of_the_database_read() -> None:
    t = tails()
    installed(t)
    committed(t, *(Item(n) for n in range(1, 6)))
    capped = read(t, limit=3)
    assert seqs(capped) == [1, 2, 3] and capped is not None and not capped.complete
    exact = read(t, limit=5)
    assert seqs(exact) == [1, 2, 3, 4, 5] and exact is not None and not exact.complete  # (LIMIT reached)
    by_bytes = read(t, max_bytes=25)
    assert seqs(by_bytes) == [1, 2] and by_bytes is not None and not by_bytes.complete
    first = read(t, max_bytes=5)  # always the first one, however big
    assert seqs(first) == [1] and first is not None and not first.complete


def test_expired_items_are_not_answered() -> None:
    t = tails()
    installed(t, Item(1, expires=NOW))
    committed(t, Item(2))
    assert seqs(read(t)) == [2]


def test_a_commit_during_a_read_spoils_it() -> None:
    t = tails()
    ticket = t.begin_read("q")
    touched_uncaptured(t)
    t.end_read(ticket, after=0, now=NOW, page=page(Item(1)))
    committed(t, Item(2))
    assert read(t) is None
    ticket = t.begin_read("q")
    deleted(t, 9)  # a deletion too
    t.end_read(ticket, after=0, now=NOW, page=page(Item(1)))
    committed(t, Item(2))
    assert read(t) is None
    ticket = t.begin_read("q")
    touched_uncaptured(t, "other")  # another queue's commit does not
    t.end_read(ticket, after=0, now=NOW, page=page(Item(1)))
    committed(t, Item(2))
    assert seqs(read(t)) == [1, 2]


def test_rows_added_but_not_captured_drop_the_entry() -> None:
    # the entry appeared while the commit ran: its rows were not captured, so nothing is known
    t = tails()
    installed(t, Item(1))
    committed(t, Item(2))
    touched_uncaptured(t)
    assert read(t) is None


def test_an_entry_made_while_the_commit_ran_is_dropped_not_added_to() -> None:
    # the capture saw one entry; a read under way then made another, which may lack the commit
    t = tails()
    installed(t, Item(1))
    seen = t.entry("q")
    assert seen is not None
    installed(t, Item(1))
    t.publish(Changes(touched={"q"}, added={"q": (seen, [Item(2)])}))
    assert read(t) is None
    installed(t, Item(1), Item(2))
    seen = t.entry("q")
    assert seen is not None
    installed(t, Item(1), Item(2))
    t.publish(Changes(gone_keys={"q"}, gone={"q": (seen, [2])}))
    committed(t, Item(3))
    assert read(t) is None


def test_a_commit_the_read_already_saw_is_not_added_twice() -> None:
    t = tails()
    installed(t, Item(1), Item(2))
    committed(t, Item(2), Item(3))
    assert seqs(read(t)) == [1, 2, 3]


def test_deleted_rows_leave_the_entry() -> None:
    t = tails()
    installed(t, Item(1), Item(2), Item(3))
    deleted(t, 2, 7)
    deleted(t, 1, key="other")
    committed(t, Item(8))
    assert seqs(read(t)) == [1, 3, 8]


def test_an_entry_past_its_caps_is_dropped() -> None:
    t = tails(max_items=3)
    installed(t, Item(1), Item(2))
    committed(t, Item(3), Item(4))
    assert read(t) is None
    t = tails(max_bytes=25)
    installed(t, Item(1), Item(2))
    committed(t, Item(3))
    assert read(t) is None
    t = tails(max_items=1)
    installed(t, Item(1), Item(2))  # a read bigger than an entry is not kept
    committed(t, Item(3))
    assert read(t) is None


def test_the_least_recently_read_entry_goes_first() -> None:
    t = tails(max_entries=2)
    installed(t, key="a")
    installed(t, key="b")
    committed(t, Item(1), key="a")
    read(t, key="a")
    installed(t, key="c")
    for key in "abc":
        committed(t, Item(2), key=key)
    assert read(t, key="b") is None
    assert read(t, key="a") is not None and read(t, key="c") is not None
    t = tails(total_bytes=25)
    installed(t, Item(1), key="a")
    installed(t, Item(1), Item(2), key="b")
    committed(t, Item(3), key="a")
    committed(t, Item(3), key="b")
    assert read(t, key="a") is None and len(t) == 0  # b's growth went past the total: dropped too


def test_reset_forgets_everything_and_spoils_reads_under_way() -> None:
    t = tails()
    installed(t, Item(1))
    ticket = t.begin_read("r")
    t.reset()
    t.end_read(ticket, after=0, now=NOW, page=page(Item(1)))
    committed(t, Item(2))
    committed(t, Item(2), key="r")
    assert read(t) is None and read(t, key="r") is None and len(t) == 0
