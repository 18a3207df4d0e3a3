"""Writes queued behind a busy writer, so that they commit as one group: for the tests that
compare a group's outcome with the same writes one by one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio.testing

from sonet.node.store.group_commit import _run_group
from sonet.node.store.sqlite import SqliteStore

Write = Callable[[SqliteStore], Awaitable[Any]]


async def queued_as_one_group(store: SqliteStore, lead: Write, writes: Sequence[Write]) -> tuple[list[Any], list[int]]:
    """``lead`` and then ``writes``, each queued while the writer is busy (the lead runs alone
    in its group, those behind it form the next): what each of ``writes`` returned or raised,
    in order, and the size of each group the writer ran."""
    sizes: list[int] = []
    call = store._writes._call

    async def counted(fn: Any, *args: Any) -> Any:
        if fn is _run_group:
            sizes.append(len(args[0]))
        return await call(fn, *args)

    results: list[Any] = [None] * len(writes)

    async def one(k: int, write: Write) -> None:
        try:
            result = await write(store)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            result = exc
        if k >= 0:
            results[k] = result

    store._writes._call = counted  # type: ignore[method-assign]
    try:
        await store._limiter.acquire()  # the writer is busy: everything below queues up
        async with trio.open_nursery() as nursery:
            for k, write in [(-1, lead), *enumerate(writes)]:  # one at a time, so they queue in this order
                nursery.start_soon(one, k, write)
                await trio.testing.wait_all_tasks_blocked()
            store._limiter.release()
    finally:
        store._writes._call = call  # type: ignore[method-assign]
    return results, sizes
