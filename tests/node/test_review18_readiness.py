"""Review of /ready (node/ops/service.py) with a store call that cannot be cancelled (a worker
thread, as the PostgreSQL store's calls are, on a server that stopped answering): /ready says
so at its deadline instead of waiting for the thread, and does not pile up probes."""

from __future__ import annotations

import threading

import trio

from sonet.node.ops.service import Readiness

#: the probe's thread gives up after this long whatever happens (a guard, not a measure)
HANG_S = 60.0


async def test_ready_answers_at_its_deadline_while_the_store_hangs_in_a_thread() -> None:
    release = threading.Event()
    started, ended = [], []

    def hang() -> None:
        release.wait(HANG_S)
        ended.append(1)

    async def probe() -> None:
        started.append(1)
        await trio.to_thread.run_sync(hang)  # not abandoned on cancel

    async with trio.open_nursery() as nursery:
        readiness = Readiness(probe, deadline_s=0.05, nursery=nursery)
        first = await readiness.check()
        second = await readiness.check()
        still_hanging = not ended  # both answers came while the thread still ran
        release.set()
        while readiness._running is not None:
            await trio.sleep(0.01)
        recovered = await readiness.check()
    assert still_hanging
    assert first == second == "database unreachable: no answer within 0.05 s"
    assert len(started) == 2  # one probe for both answers while it hung, one after it ended
    assert recovered is None


async def test_a_failing_probe_in_the_nursery_is_named() -> None:
    async def fails() -> None:
        raise OSError("connection refused")

    async with trio.open_nursery() as nursery:
        assert await Readiness(fails, nursery=nursery).check() == "database unreachable: connection refused"
