"""A ``trio.Lock`` that exists only while it is held or awaited: an idle connection keeps none
(a trio.Lock and its ParkingLot are ~340 bytes; memory per idle connection,
docs/performance.md)."""

from __future__ import annotations

from types import TracebackType

import trio

__all__ = ["LazyLock"]


class LazyLock:
    """``async with lock:`` as with a ``trio.Lock``; the lock is made by the first task that
    takes it and dropped by the last one that releases it (a waiter it was handed to keeps it)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock: trio.Lock | None = None

    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def __aenter__(self) -> None:
        lock = self._lock
        if lock is None:
            lock = self._lock = trio.Lock()
        try:
            await lock.acquire()
        except BaseException:
            # cancelled before it took the lock (trio checks that first, even for a free lock):
            # a lock nobody holds would otherwise stay for the connection's life
            if not lock.locked() and self._lock is lock:
                self._lock = None
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        lock = self._lock
        assert lock is not None
        lock.release()
        if not lock.locked():  # nobody waited for it (a waiter would own it now)
            self._lock = None
