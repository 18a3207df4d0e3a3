"""A device's long-lived connection to its home node (issue 19): ``Device.live()``.

One connection receives what the node pushes as it is stored (no polling): each batch is stored
on the device, then acknowledged (client/receiving.py), and reported as a ``Received`` event.
Sends go over the same connection (texts; replies, reactions, edits and deletes too:
client/gestures.py). When the connection ends the session says so
(``Offline``, with why and when it tries again), tries again with backoff (client/backoff.py)
and says ``Online`` when it is back; the texts written meanwhile were kept on the device
("pending", code "offline") and go first, in order, once each (``Device._connect`` sends them
with the ids they got when written: the node keeps one copy of an id), then a ``SentChanged``.

Rules:
- A receive batch and a send never interleave on the device's state (ratchets, group state):
  one ``trio.Lock`` around each. The session waits for pushed frames outside the lock, so a
  send is never held up by an idle connection.
- Structured: every task lives in the nursery of ``Device.live()``'s ``async with``; leaving
  it closes the connection. ``events()`` has one consumer; it ends when the session closes,
  or raises the error that ended it for good (this device was removed from its account, the
  device state cannot be used).
- While a 1:1 text is "sent"/"queued" (on its way to another node), the session asks the node
  where it is every ``SENT_REFRESH_S``; texts that wait on the device for a "not now" reason
  (the recipient's node is down) are tried again every ``WAITING_RETRY_S``.
- ``Received.messages`` are the inbox items not shown yet that the session did not report
  before (the first batch after it opens: all those not shown yet, as ``sonet recv`` shows
  them); the consumer marks them shown when it has shown them.
- Typing notices and read receipts are courtesies: dropped while the node is down.
- Presence (opt-in, client/presence.py): with it on, the session tells the allowed contacts
  "online" once connected and every ``PRESENCE_REFRESH_S``, and "offline" when it closes
  (waiting at most ``GOODBYE_S`` for that); with it off it sends none.

A send borrows the live connection through ``Device``'s own methods (``lent_connection``: a
context variable, so only the task that holds the lock sees it), so each send exists once.
``SentChanged`` ids (1:1 and group texts) are read with ``DeviceState.sent_message``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import trio

from sonet.core.address import parse_address
from sonet.core.client_api import Deliver
from sonet.core.errors import ProtocolError, sole_exception

from .backoff import Backoff
from .connection import ConnectError, Connection, NodeError
from .delivery import refresh_sent
from .gestures import GestureResult, Gestures
from .groups.events import GroupEvent
from .groups.store import GroupMessage
from .groups.waiting import send_waiting_group_messages
from .prekeys import maintain_prekeys, prekeys_left
from .presence import PRESENCE_REFRESH_S, presence_targets
from .receiving import Receiver
from .timer import erase_loop
from .state import InboxMessage

if TYPE_CHECKING:
    from .groups.api import GroupSendResult
    from .sdk import Device, SendResult

__all__ = [
    "Online", "Offline", "Received", "SentChanged", "Notice", "LiveEvent", "LiveSession", "open_live_session", "lent_connection",
    "SENT_REFRESH_S", "WAITING_RETRY_S", "KEYS_REFRESH_S",
]  # fmt: skip

#: how often the node is asked where the texts on their way to other nodes are
SENT_REFRESH_S = 3.0
#: how often the texts that wait on the device for a "not now" reason are tried again
WAITING_RETRY_S = 30.0
#: how often a long connection tops up the device's prekeys and KeyPackages (and rotates its
#: signed prekey when due): others use them up while it stays connected
KEYS_REFRESH_S = 600.0
#: the recent sent texts whose states the session follows for ``SentChanged``
SENT_WINDOW = 200
#: how long closing waits to tell the contacts "offline" (presence on only)
GOODBYE_S = 2.0


@dataclass(frozen=True, kw_only=True)
class Online:
    """Connected (again) to the home node."""

    node: str


@dataclass(frozen=True, kw_only=True)
class Offline:
    """The connection is down; the session tries again by itself in ``retry_in_s``."""

    reason: str
    retry_in_s: float


@dataclass(frozen=True, kw_only=True)
class Received:
    """One delivery batch, already stored on the device and acknowledged."""

    messages: list[InboxMessage]
    group_messages: list[GroupMessage]
    group_events: list[GroupEvent]
    rejected: list[str]
    identity_changes: list[str]


@dataclass(frozen=True, kw_only=True)
class SentChanged:
    """These sent messages changed state (pending -> sent, sent -> accepted/queued/failed,
    delivered/read by receipt), or these messages (sent or received) disappeared: their timer
    ran out (client/timer.py)."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True)
class Notice:
    """A line worth showing (a waiting text sent or given up, a self-monitoring finding)."""

    text: str


LiveEvent = Union[Online, Offline, Received, SentChanged, Notice]

#: (device, what its ``_connect`` yields in this task): the live connection, or why it is down
_LENT: ContextVar[tuple[object, Connection | ConnectError] | None] = ContextVar("sonet_live_lent", default=None)


def lent_connection(device: object) -> Connection | ConnectError | None:
    """What a live session lent ``device`` for the operation running in this task."""
    lent = _LENT.get()
    return lent[1] if lent is not None and lent[0] is device else None


class _Final(Exception):
    """Wraps the error that ends the session for good."""


class LiveSession:
    """See the module docstring; made by ``Device.live()``."""

    def __init__(self, device: Device, *, read_receipts: bool = False) -> None:
        self._device = device
        self._read_receipts = read_receipts
        #: connected to the home node now
        self.online = False
        #: how many times the session connected (once, while the node stays up)
        self.connections = 0
        self.backoff = Backoff(device._rng)
        self._conn: Connection | None = None
        self._lock = trio.Lock()
        self._events_send, self._events = trio.open_memory_channel[LiveEvent](math.inf)
        self._final: BaseException | None = None
        self._closed = False
        #: why the last connection ended (None before the first did)
        self._offline_reason: str | None = None
        #: what was reported and is not shown yet (so a batch reports only what is new)
        self._reported: set[bytes] = set()
        self._reported_group: set[tuple[bytes, int]] = set()
        self._reported_events: set[tuple[bytes, int]] = set()
        self._known_sent = self._sent_states()

    # The consumer's side -----------------------------------------------------------------

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Every event, in order, until the session closes (or the error that ended it)."""
        async for event in self._events:
            yield event
        if self._final is not None:
            raise self._final

    async def send_text(self, recipient: str, text: str) -> SendResult:
        """Over the live connection; while it is down (or if it drops mid-send), kept on the
        device ("pending", code "offline") and sent once, in order, when the node is back.
        Raises IdentityChanged like ``Device.send_text``."""
        self._check_open()
        async with self._lock:
            with self._lend():
                result = await self._device.send_text(recipient, text, keep_offline=True)
            self._known_sent = self._sent_states()  # the caller has the result: no SentChanged for it
        return result

    async def send_group(self, group: str, text: str) -> GroupSendResult:
        """Over the live connection ("queued": the hub's order comes back as a SentChanged);
        while it is down, kept on the device ("pending")."""
        self._check_open()
        async with self._lock:
            with self._lend():
                result = await self._device._groups().send(group, text, settle=False)
            self._known_sent = self._sent_states()
        return result

    async def reply(self, message_id: bytes, text: str) -> GestureResult:
        """``Device.reply`` over the live connection; kept on the device while it is down, as
        ``send_text`` (client/gestures.py)."""
        return await self._gesture(lambda g: g.reply(message_id, text))

    async def react(self, message_id: bytes, emoji: str, *, remove: bool = False) -> GestureResult:
        return await self._gesture(lambda g: g.react(message_id, emoji, remove=remove))

    async def edit(self, message_id: bytes, text: str) -> GestureResult:
        return await self._gesture(lambda g: g.edit(message_id, text))

    async def delete(self, message_id: bytes, *, everyone: bool = False) -> GestureResult:
        return await self._gesture(lambda g: g.delete(message_id, everyone=everyone))

    async def _gesture(self, make: Callable[[Gestures], Awaitable[GestureResult]]) -> GestureResult:
        self._check_open()
        async with self._lock:
            with self._lend():
                result = await make(Gestures(self._device, live=True))
            self._known_sent = self._sent_states()  # the caller has the result: no SentChanged for it
        return result

    async def send_typing(self, to: str, *, started: bool = True) -> None:
        """To an address or a group (its id or name); dropped while the node is down."""
        self._check_open()
        async with self._lock:
            if self._conn is None:
                return
            with self._lend():
                try:
                    if "@" in to:
                        await self._device.send_typing(to, started=started)
                    else:
                        await self._device.group_typing(to, started=started)
                except ConnectError:
                    pass  # the connection dropped: a typing notice is not worth keeping

    async def _announce(self, *, online: bool) -> None:
        """Presence to the allowed contacts (client/presence.py); nothing while it is off or
        the node is down."""
        if not presence_targets(self._device.state):
            return
        async with self._lock:
            if self._conn is None:
                return
            with self._lend():
                try:
                    await self._device.send_presence(online=online)
                except ConnectError:
                    pass  # the connection dropped: presence is a courtesy

    async def _goodbye(self) -> None:
        """"offline" to the allowed contacts as the session closes (shielded, bounded)."""
        if self._conn is None or not presence_targets(self._device.state):
            return
        with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_S):
            await self._announce(online=False)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """For the ``Device`` operations the session does not carry (group changes, lookups,
        safety numbers): they open a connection of their own, and must still not interleave
        with a receive batch or a send on the device's state. The session's events say what
        they changed (``SentChanged``, notices) once the block ends."""
        self._check_open()
        async with self._lock:
            yield
        self._report(None)

    async def send_read(self, conversation: str, ids: list[bytes]) -> None:
        """Read receipts for ``ids`` of a conversation (a 1:1 address, or a group's id or
        name) to their senders; dropped while the node is down."""
        self._check_open()
        if not ids:
            return
        state = self._device.state
        if "@" in conversation:
            by_sender = {str(parse_address(conversation)): list(ids)}
        else:
            group = self._device._groups().find(conversation)
            by_sender = state.group_message_senders(group.id, ids)
        async with self._lock:
            conn = self._conn
            if conn is None:
                return
            profile = state.profile()
            try:
                await self._device._receiver(profile).send_read(conn, by_sender)
            except ConnectError:
                pass  # the connection dropped: the receipt is a courtesy

    # Running -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._final is not None:
            raise self._final
        if self._closed:
            raise RuntimeError("the live session is closed")

    @contextmanager
    def _lend(self) -> Iterator[None]:
        """``Device`` methods called in this block use the live connection (or learn it is down)."""
        # (why it is down: the last connection's end, as the Offline event said it)
        lent: Connection | ConnectError = self._conn or ConnectError(self._offline_reason or "connecting")
        token = _LENT.set((self._device, lent))
        try:
            yield
        finally:
            _LENT.reset(token)

    def _emit(self, event: LiveEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except trio.ClosedResourceError:
            pass  # closing: nobody reads any more

    async def run(self) -> None:
        """Connect, receive, reconnect with backoff, until cancelled or a final error."""
        try:
            while True:
                try:
                    await self._connected()
                    reason = "the node closed the connection"
                except BaseException as exc:  # noqa: BLE001 - sorted out below; anything else goes on up
                    reason = self._why(exc)
                finally:
                    self._conn, self.online = None, False
                wait = self.backoff.next()
                self._offline_reason = reason
                self._emit(Offline(reason=reason, retry_in_s=wait))
                await trio.sleep(wait)
        except _Final as final:
            self._final = final.__cause__
        finally:
            self._events_send.close()

    def _why(self, exc: BaseException) -> str:
        """One line for an error that ends a connection; _Final for one that ends the session
        (this device was removed, its state cannot be used); a cancellation goes on up. When
        the connection drops, more than one task may fail with it: all their errors count."""
        errors = _leaves(exc)
        if any(not isinstance(e, Exception) for e in errors):  # Cancelled, KeyboardInterrupt
            raise exc
        for e in errors:
            if isinstance(e, NodeError) and e.code == "device_removed":
                raise _Final() from e
        for e in errors:
            if not isinstance(e, (ConnectError, NodeError, ProtocolError)):
                raise _Final() from e  # not the network's: the device state (or a bug)
        first = errors[0]
        return (str(first).splitlines() or [type(first).__name__])[0]

    async def _connected(self) -> None:
        """One connection, from connecting to its end (which raises why)."""
        device = self._device
        profile = device.state.profile()
        async with device._connect(profile) as conn:  # checks the account, sends the texts that waited
            self.connections += 1
            async with self._lock:
                receiver = device._receiver(profile)
                # what is queued, up to the node's Drained (prekeys and KeyPackages topped up first)
                await receiver.run(conn, wait=None, read_receipts=self._read_receipts)
                self._conn, self.online = conn, True
            self.backoff.reset()
            self._emit(Online(node=conn.welcome.node))
            if device.monitor_error is not None:
                self._emit(Notice(text=f"could not check your account's key-directory entries now: {device.monitor_error}"))
            self._report(receiver)
            frames_send, frames = trio.open_memory_channel[Deliver](math.inf)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, conn, frames_send)
                nursery.start_soon(self._keep_up, conn)
                # disappearing messages go at their time (client/timer.py); views redraw
                nursery.start_soon(erase_loop, device.state, device._clock, lambda ids: self._emit(SentChanged(ids=tuple(ids))))
                async for first in frames:
                    batch = [first]
                    while True:
                        try:
                            batch.append(frames.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    async with self._lock:
                        receiver = device._receiver(profile)
                        await receiver.take(conn, batch, read_receipts=self._read_receipts)
                    self._report(receiver)
                nursery.cancel_scope.cancel()
            raise conn.error or ConnectError("the node closed the connection")

    async def _keep_up(self, conn: Connection) -> None:
        """Now and then: the texts that wait on the device, where sent ones are, and the
        device's prekeys and KeyPackages (connecting topped them up first)."""
        device = self._device
        state = device.state
        retry_at = presence_at = 0.0
        keys_at = trio.current_time() + KEYS_REFRESH_S
        refused = ""
        while True:
            if trio.current_time() >= presence_at:  # "online" now, then again now and then
                presence_at = trio.current_time() + PRESENCE_REFRESH_S
                await self._announce(online=True)
            if trio.current_time() >= keys_at:
                keys_at = trio.current_time() + KEYS_REFRESH_S
                async with self._lock:
                    await self._top_up_keys(conn)
            if trio.current_time() >= retry_at and (state.pending_count() or state.unsent_group_messages()):
                retry_at = trio.current_time() + WAITING_RETRY_S
                async with self._lock:
                    profile = state.profile()
                    await device._send_waiting(conn, profile)
                    device.notices += await send_waiting_group_messages(conn, state, profile, rng=device._rng, clock=device._clock)
                self._report(None)
            if any(m.state in ("sent", "queued") for m in state.sent_messages(SENT_WINDOW)):
                try:
                    await refresh_sent(state, lambda: nullcontext(conn), SENT_WINDOW, now=device._clock())
                    refused = ""
                except (NodeError, ProtocolError) as exc:  # the node could not say now: ask again later
                    if str(exc) != refused:  # said once, not every few seconds
                        self._emit(Notice(text=f"could not ask the node where sent messages are: {exc}"))
                    refused = str(exc)
                self._report(None)
            await trio.sleep(SENT_REFRESH_S)

    async def _top_up_keys(self, conn: Connection) -> None:
        device = self._device
        state = device.state
        profile = state.profile()
        from .groups.keys import maintain_key_packages  # MLS: where a device makes KeyPackages

        try:
            await maintain_prekeys(conn, state, profile, device._rng, device._clock(), left=await prekeys_left(conn))
            await maintain_key_packages(conn, state, profile, device._rng, device._clock())
        except (NodeError, ProtocolError) as exc:  # tried again at the next refresh; others may wait on it
            self._emit(Notice(text=f"could not top up this device's keys on the node now: {exc}"))

    # Reporting ---------------------------------------------------------------------------

    def _report(self, receiver: Receiver | None) -> None:
        """Events for what changed on the device: new items, notices, sent states."""
        device = self._device
        state = device.state
        receipt_ids: set[bytes] = set()
        if receiver is not None:
            result = receiver.result()
            new = [m for m in result.messages if m.id not in self._reported]
            groups = [m for m in result.group_messages if (m.group, m.seq) not in self._reported_group]
            events = [e for e in result.group_events if (e.group, e.seq) not in self._reported_events]
            # remember what is reported and still not shown (the consumer marks them shown)
            self._reported = {m.id for m in result.messages}
            self._reported_group = {(m.group, m.seq) for m in result.group_messages}
            self._reported_events = {(e.group, e.seq) for e in result.group_events}
            if new or groups or events or result.rejected or result.identity_changes:
                self._emit(Received(
                    messages=new, group_messages=groups, group_events=events, rejected=result.rejected,
                    identity_changes=result.identity_changes,
                ))  # fmt: skip
            for m in new:
                if m.type == "receipt":
                    receipt_ids.update(bytes.fromhex(i) for i in m.fields.get("ids", ()))
        notices, device.notices = device.notices, []
        for line in notices:
            self._emit(Notice(text=line))
        alerts = state.alerts(unshown=True)
        for a in alerts:
            self._emit(Notice(text=f"{a.kind}: {a.text}"))
        state.mark_alerts_shown([a.id for a in alerts])
        now = self._sent_states()
        changed = {i for i, s in now.items() if self._known_sent.get(i) != s}
        # receipts for texts older than the window
        changed |= {i for i in receipt_ids - now.keys() if state.sent_message(i) is not None}
        self._known_sent = now
        if changed:  # newest first
            self._emit(SentChanged(ids=tuple(i for i in now if i in changed) + tuple(changed - now.keys())))

    def _sent_states(self) -> dict[bytes, tuple]:
        state = self._device.state
        states: dict[bytes, tuple] = {m.id: (m.state, m.code, m.delivered_at, m.read_at) for m in state.sent_messages(SENT_WINDOW)}
        for g in state.group_sent_messages(SENT_WINDOW):
            states[g.id] = (g.state, g.code, g.delivered, g.read)
        return states

    def _close(self) -> None:
        self._closed = True
        self._events_send.close()


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _pump(conn: Connection, frames: trio.MemorySendChannel[Deliver]) -> None:
    """Move what the node pushes to the session's own queue at once: the connection's buffer
    is bounded and drops a batch when full (it would come again only on the next connection)."""
    async with frames:
        async for frame in conn.deliveries:
            if isinstance(frame, Deliver):
                frames.send_nowait(frame)


@asynccontextmanager
async def open_live_session(device: Device, *, read_receipts: bool = False) -> AsyncIterator[LiveSession]:
    """``Device.live()``: the session runs in this block; leaving it closes the connection."""
    session = LiveSession(device, read_receipts=read_receipts)
    # The session's connection outlives a cancellation of a scope around this block (a
    # program's deadline, `sonet chat` quitting) until the goodbye below went out on it: the
    # block's end, whatever ended it, is what stops it.
    connection = trio.CancelScope(shield=True)

    async def run() -> None:
        with connection:
            await session.run()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            try:
                yield session
            finally:
                try:
                    await session._goodbye()
                finally:  # also when a Ctrl-C lands in the goodbye: nothing waits for ever
                    session._close()
                    connection.cancel()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the body's own error comes out as itself
        raise sole_exception(group) from None

