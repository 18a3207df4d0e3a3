"""The outbox worker's one wait (``_Worker.until``): it ends when its condition holds, is asked
again at each wake-up (a wake-up for something else does not end it), and pokes and nudges
both set their own event and wake it. The pushes and settles that wake it are covered by the
federation tests (a push answered, a settle done)."""

from __future__ import annotations

import trio
import trio.testing

from sonet.federation.outbox import _Worker


async def test_until_returns_at_once_when_the_condition_holds_and_is_a_checkpoint() -> None:
    worker = _Worker()
    with trio.CancelScope() as scope:
        scope.cancel()
        await worker.until(lambda: True)  # a checkpoint: the cancellation is delivered
    assert scope.cancelled_caught


async def test_a_wake_up_for_something_else_does_not_end_the_wait() -> None:
    worker = _Worker()
    ready = False
    ended = trio.Event()

    async def waiter() -> None:
        await worker.until(lambda: ready)
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        worker.wake()  # nothing it waits for changed
        await trio.testing.wait_all_tasks_blocked()
        assert not ended.is_set()
        ready = True
        worker.wake()
        with trio.fail_after(5):
            await ended.wait()


async def test_poke_and_nudge_set_their_events_and_end_a_wait_on_them() -> None:
    for signal in ("poke", "nudge"):
        worker = _Worker()
        ended = trio.Event()

        async def waiter(w: _Worker = worker, done: trio.Event = ended) -> None:
            await w.until(lambda: w.poked.is_set() or w.nudged.is_set())
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not ended.is_set()
            getattr(worker, signal)()
            with trio.fail_after(5):
                await ended.wait()
        assert worker.poked.is_set() == (signal == "poke")
        assert worker.nudged.is_set() == (signal == "nudge")
