"""sonet.transport.lazy_lock.LazyLock: mutual exclusion as a trio.Lock, with no lock object
kept while nobody holds or awaits it (what an idle connection keeps: nothing)."""

from __future__ import annotations

import trio
import trio.testing

from sonet.transport.lazy_lock import LazyLock

HANG_S = 20  # hang guard, never a performance threshold


async def test_holders_take_turns_and_no_lock_is_kept_once_all_are_done() -> None:
    lock = LazyLock()
    inside: list[int] = []
    order: list[str] = []
    gate = trio.Event()

    async def hold(name: str) -> None:
        async with lock:
            inside.append(1)
            assert len(inside) == 1  # never two at once
            order.append(name)
            await gate.wait()
            inside.pop()

    assert lock._lock is None and not lock.locked()
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(hold, name)
                await trio.testing.wait_all_tasks_blocked()
            assert lock.locked() and order == ["a"]
            gate.set()
    assert sorted(order) == ["a", "b", "c"]
    assert lock._lock is None and not lock.locked()


async def test_a_waiter_cancelled_leaves_the_lock_usable_and_then_dropped() -> None:
    lock = LazyLock()
    release = trio.Event()

    async def holder() -> None:
        async with lock:
            await release.wait()

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as waiting:
                waiting.deadline = trio.current_time()  # cancelled while it waits
                async with lock:
                    raise AssertionError("the lock was held by another task")
            assert waiting.cancelled_caught and lock.locked()
            release.set()
        assert not lock.locked()
        async with lock:  # usable again, by anyone
            assert lock.locked()
    assert lock._lock is None
