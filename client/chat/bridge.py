"""Trio as a guest on textual's asyncio loop: one thread runs both.

textual runs on asyncio; the SDK runs on trio. ``trio.lowlevel.start_guest_run`` lets trio run
its tasks as callbacks of the asyncio loop (only its wait for I/O happens on a helper thread), so
the device's state (sqlite, one connection, not thread-safe) is only ever used from the app's
thread, by both sides. The app hands work to trio with :meth:`TrioGuest.call` (an asyncio future
of the result); trio code talks back by posting textual messages (``App.post_message``), which
is safe from any task since it is the same thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["TrioGuest", "GuestEnded"]

T = TypeVar("T")


class GuestEnded(Exception):
    """The trio side is not running (any more): nothing can be handed to it."""


class TrioGuest:
    """Runs ``main(guest)`` as a trio guest of the running asyncio loop.

    Work handed over with :meth:`call` goes through a trio memory channel (fed from asyncio with
    ``TrioToken.run_sync_soon``) to a dispatcher task in the guest's nursery. ``serial`` work runs
    one after the other, in the order handed over (the texts the user sends keep their order);
    the rest runs at once, each in its own task."""

    def __init__(self, main: Callable[[TrioGuest], Awaitable[None]]) -> None:
        self._main = main
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._send: trio.MemorySendChannel[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any], bool]] | None = None
        self._done: asyncio.Future[outcome.Outcome[None]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: stop() came before the run had its token: it ends as soon as it begins
        self._stopping = False
        #: work handed over before the run began: handed to the dispatcher when it does
        self._early: list[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any], bool]] = []
        #: the futures of work handed over and not finished
        self._outstanding: set[asyncio.Future[Any]] = set()

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.done()

    def start(self) -> None:
        """Start the guest run on the current (running) asyncio loop."""
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        trio.lowlevel.start_guest_run(
            self._run,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            done_callback=self._finished,
            # asyncio owns signal.set_wakeup_fd; the terminal is raw, so Ctrl-C is a key anyway
            host_uses_signal_set_wakeup_fd=True,
        )

    def _finished(self, result: outcome.Outcome[None]) -> None:
        for future in list(self._outstanding):  # handed over, never run: nobody waits forever
            future.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(result)

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        if self._stopping:
            return
        send, receive = trio.open_memory_channel[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any], bool]](1000)
        for early in self._early:
            send.send_nowait(early)
        self._early.clear()
        self._send = send
        serial_send, serial_receive = trio.open_memory_channel[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]](1000)
        try:
            with trio.CancelScope() as self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._serial, serial_receive)
                    nursery.start_soon(self._dispatch, receive, serial_send, nursery)
                    await self._main(self)
                    nursery.cancel_scope.cancel()  # main returned: the session is over
        finally:
            send.close()  # what is handed over from now on fails at once (GuestEnded)

    async def _dispatch(self, receive: trio.MemoryReceiveChannel, serial: trio.MemorySendChannel, nursery: trio.Nursery) -> None:
        async for fn, future, is_serial in receive:
            if is_serial:
                serial.send_nowait((fn, future))
            else:
                nursery.start_soon(_settle, fn, future)

    async def _serial(self, receive: trio.MemoryReceiveChannel) -> None:
        async for fn, future in receive:
            await _settle(fn, future)

    def call(self, fn: Callable[[], Awaitable[T]], *, serial: bool = False) -> asyncio.Future[T]:
        """Run ``fn()`` in the trio guest; the future gets its result or its exception (and is
        cancelled if the guest ends first)."""
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        if not self.running:
            future.set_exception(GuestEnded("the device session has ended"))
            return future
        self._outstanding.add(future)
        future.add_done_callback(self._outstanding.discard)
        if self._send is None:  # started, not begun yet
            self._early.append((fn, future, serial))
            return future
        assert self._token is not None
        send = self._send

        def hand_over() -> None:
            try:
                send.send_nowait((fn, future, serial))
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.WouldBlock):
                if not future.done():
                    future.set_exception(GuestEnded("the device session is busy or closing"))

        try:
            self._token.run_sync_soon(hand_over)
        except trio.RunFinishedError:
            future.set_exception(GuestEnded("the device session has ended"))
        return future

    async def stop(self) -> outcome.Outcome[None] | None:
        """Cancel the trio run and wait until it has finished (every task ended, connections
        closed); its outcome (None if it never started)."""
        if self._done is None:
            return None
        self._stopping = True
        if not self._done.done() and self._token is not None and self._cancel is not None:
            try:
                self._token.run_sync_soon(self._cancel.cancel)
            except trio.RunFinishedError:
                pass
        return await self._done

    async def wait(self) -> outcome.Outcome[None] | None:
        """Wait until the trio run ends by itself; its outcome."""
        return None if self._done is None else await asyncio.shield(self._done)


async def _settle(fn: Callable[[], Awaitable[Any]], future: asyncio.Future[Any]) -> None:
    """Run ``fn`` and put what came of it in ``future`` (an error is the caller's to show)."""
    try:
        result = await fn()
    except trio.Cancelled:
        if not future.done():
            future.cancel()
        raise
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(result)
