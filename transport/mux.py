"""Several requests outstanding on one secure connection, answers matched by number.

``request(build)`` sends ``build(number)`` and waits for the frame that carries that number
back, whatever frame it is (an ``ErrorFrame`` included: the caller decides what it means).
``build`` runs when the request's turn on the socket has come, so whatever it numbers follows
the wire order. ``run()`` must be running: it reads every frame, shows each answer to
``on_answer`` (in the order received, even one whose requester gave up) and hands it to the
request with its number (an answer that comes after its requester gave up is then dropped);
a frame that answers no request
(no number, or request 0) goes to ``on_push``, which may refuse it with RemoteProtocolError.
The connection ends on an ``ErrorFrame`` with request 0 (the other side's refusal), a close, a
protocol error, an interrupted send or ``close()``: every pending request, and every later
one, then fails at once with ``LinkLost`` saying why.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from .ws_errors import CloseReason, ConnectionClosed

from sonet.core.client_api import ErrorFrame
from sonet.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, sole_exception
from sonet.core.wire import Frame

from .dial import describe_close
from .socket import CLOSE_GRACE_S, SecureSocket

__all__ = ["Mux", "LinkLost", "OnPush"]

#: what to do with a frame that answers no request
OnPush = Callable[[Frame], Awaitable[None]]

_SEND_ERRORS = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


class LinkLost(Exception):
    """The connection ended (before the answer came); the message says why. ``refusal`` is
    the other side's ``ErrorFrame`` with request 0 when it ended it so, ``close`` the
    WebSocket close reason once it closed, ``code`` a protocol error's code."""

    def __init__(
        self, message: str, *, refusal: ErrorFrame | None = None, close: CloseReason | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.close = close
        self.code = code

    def copy(self) -> LinkLost:
        """A fresh exception to raise (one instance raised many times piles up tracebacks)."""
        return LinkLost(str(self), refusal=self.refusal, close=self.close, code=self.code)


class Mux:
    def __init__(
        self,
        sock: SecureSocket,
        *,
        peer: str = "peer",
        on_push: OnPush | None = None,
        on_end: Callable[[], object] | None = None,
        on_answer: Callable[[Frame], object] | None = None,
    ) -> None:
        """``peer`` names the other side in messages; ``on_end()`` is called once ``run()``
        stops (e.g. to close a channel of pushed frames); ``on_answer(frame)`` sees every
        answer as it is read, before its requester does."""
        self.sock = sock
        self._peer = peer
        self._on_push = on_push or self._refuse_push
        self._on_end = on_end
        self._on_answer = on_answer
        self._numbers = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Frame]] = {}
        self._scope = trio.CancelScope()
        #: why the connection ended, None while it is usable
        self.lost: LinkLost | None = None
        #: set once ``run()`` has stopped: nothing will be read any more
        self.stopped = trio.Event()
        self._reading = False  # run() started: a send error waits for it to record why
        #: frames received so far: tells a silent peer from one slow request
        self.heard = 0

    async def _refuse_push(self, frame: Frame) -> None:
        raise RemoteProtocolError(f"unexpected {type(frame).__name__} from the {self._peer}", code="unexpected_frame")

    def close(self, reason: str) -> None:
        """End the connection for this side: the reader stops, requests fail with ``reason``."""
        self._end(LinkLost(reason))
        self._scope.cancel()

    def _end(self, lost: LinkLost) -> None:
        if self.lost is None:
            self.lost = lost
        for waiter in self._pending.values():
            waiter.close()
        self._pending.clear()

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        """Send ``build(number)`` and return the answer with that number. LinkLost if the
        connection ends first (or had ended); LocalProtocolError for a frame that must not
        be sent."""
        if self.lost is not None:
            raise self.lost.copy()
        number = next(self._numbers)
        send, receive = trio.open_memory_channel[Frame](1)
        self._pending[number] = send
        try:
            await self._sending(lambda: self.sock.send_built(lambda: build(number)))
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                raise (self.lost or LinkLost("the connection ended")).copy() from None
        finally:
            self._pending.pop(number, None)

    async def send(self, frame: Frame) -> None:
        """Send a frame that has no answer."""
        await self._sending(lambda: self.sock.send(frame))

    async def _sending(self, send: Callable[[], Awaitable[None]]) -> None:
        if self.lost is not None:
            raise self.lost.copy()
        try:
            await send()
        except _SEND_ERRORS:
            if self._reading:
                # The reader may still hold the refusal that explains the close (an ErrorFrame
                # then the close): let it record that first, rather than a bare "closed".
                with trio.move_on_after(CLOSE_GRACE_S):
                    await self.stopped.wait()
            self.close(f"the {self._peer} closed the connection")
            raise (self.lost or LinkLost("the connection ended")).copy() from None
        except LocalProtocolError:
            if self.sock.send_broken is None:
                raise
            # another send on this connection was interrupted (its sealed record never went
            # out): this one waited behind it and can never go either, so the link is lost
            self.close(f"the connection cannot send any more ({self.sock.send_broken})")
            raise (self.lost or LinkLost("the connection ended")).copy() from None
        finally:
            if self.sock.send_broken is not None:  # sealed, not sent: nothing more can go out
                self.close(f"the connection cannot send any more ({self.sock.send_broken})")

    async def run(self) -> None:
        """Read and route frames until the connection ends or ``close()``."""
        self._reading = True
        try:
            with self._scope:
                try:
                    while True:
                        frame = await self.sock.receive()
                        self.heard += 1
                        number = getattr(frame, "request", 0)
                        if isinstance(frame, ErrorFrame) and number == 0:
                            self._end(LinkLost(f"the {self._peer} ended the connection ({frame.code}: {frame.message})", refusal=frame))
                            await self._await_close()
                            return
                        if number:
                            if self._on_answer is not None:
                                self._on_answer(frame)
                            waiter = self._pending.pop(number, None)
                            if waiter is not None:  # else the requester gave up meanwhile
                                waiter.send_nowait(frame)
                        else:
                            await self._on_push(frame)
                except ConnectionClosed as exc:
                    self._end(LinkLost(f"the {self._peer} closed the connection ({describe_close(exc.reason)})", close=exc.reason))
                except ProtocolError as exc:
                    self._end(LinkLost(f"protocol error from the {self._peer}: {exc}", code=exc.code))
        finally:
            self._end(LinkLost("the connection was closed"))
            self.stopped.set()
            if self._on_end is not None:
                self._on_end()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Mux]:
        """``run()`` in the background for the body of the ``async with``; stopped after it.
        An error of the body comes out as itself (the reader never raises)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.run)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None

    async def _await_close(self) -> None:
        """After a refusal: the close that follows it, for ``lost.close`` (bounded)."""
        with trio.move_on_after(CLOSE_GRACE_S):
            try:
                while True:
                    await self.sock.receive()
            except ConnectionClosed as exc:
                if self.lost is not None:
                    self.lost.close = exc.reason
            except ProtocolError:
                pass
