"""Wake-ups for connected devices when their mailbox changes, and live ephemeral pushes.

The store is the source of truth; this registry only tells a device's delivery task that
there may be something new. A notification that races with a query is never lost: the flag
is raised before the task looks again.

``DeviceConnections`` tracks live connections by device identity fingerprint so that removing
a device closes them. A connection is tracked before its session first reads the store, so a
removal either committed before that read (the device is then unknown) or signals it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import trio

from sonet.core.envelope import Envelope

__all__ = ["MailboxKey", "Wakeup", "MailboxRegistry", "DeviceConnections", "Signal"]

MailboxKey = tuple[str, int]  # (account, device id)
_EPHEMERAL_QUEUE = 64


class Signal(Protocol):
    """What tells a connection something happened: a ``trio.Event``, or an object whose
    ``set()`` starts the work itself (node/client_session.py: no task waits while idle)."""

    def set(self) -> None: ...


class Wakeup:
    """A level-triggered flag: set() before wait() makes wait() return at once; ``on_set``
    (if given) is called at each set(), for a subscriber that starts a task then instead of
    keeping one waiting."""

    def __init__(self, on_set: Callable[[], None] | None = None) -> None:
        self._event = trio.Event()
        self._on_set = on_set
        send, self.ephemeral = trio.open_memory_channel[Envelope](_EPHEMERAL_QUEUE)
        self._ephemeral_send = send

    def set(self) -> None:
        self._event.set()
        if self._on_set is not None:
            self._on_set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def push_ephemeral(self, envelope: Envelope) -> None:
        try:
            self._ephemeral_send.send_nowait(envelope)
        except trio.WouldBlock:
            pass  # ephemeral by definition: a slow device just misses a typing indicator
        self.set()


class MailboxRegistry:
    """Who waits for which mailbox in this process. ``elsewhere`` (node/cluster.py, when
    several processes share the database) hears every ``notify`` too, to wake the devices
    connected to the other processes; what they hear arrives through ``notify_local``. The same
    for ephemeral pushes: ``ephemeral_elsewhere`` and ``push_ephemeral_local``."""

    def __init__(self) -> None:
        self._subs: dict[MailboxKey, set[Wakeup]] = defaultdict(set)
        self.elsewhere: Callable[[set[MailboxKey]], None] | None = None
        self.ephemeral_elsewhere: Callable[[MailboxKey, Envelope], None] | None = None

    @contextmanager
    def subscribe(self, key: MailboxKey, on_set: Callable[[], None] | None = None) -> Iterator[Wakeup]:
        wake = Wakeup(on_set)
        self._subs[key].add(wake)
        try:
            yield wake
        finally:
            self._subs[key].discard(wake)
            if not self._subs[key]:
                del self._subs[key]

    def notify(self, keys: Iterable[MailboxKey]) -> None:
        """These mailboxes got something (committed): wake their devices, here and elsewhere."""
        keys = set(keys)
        self.notify_local(keys)
        if self.elsewhere is not None and keys:
            self.elsewhere(keys)

    def notify_local(self, keys: Iterable[MailboxKey]) -> None:
        """Wake the devices of these mailboxes connected to this process."""
        for key in set(keys):
            for wake in self._subs.get(key, ()):
                wake.set()

    def keys(self) -> list[MailboxKey]:
        """The mailboxes with a device waiting in this process."""
        return list(self._subs)

    def push_ephemeral(self, key: MailboxKey, envelope: Envelope) -> None:
        """A live push for the devices of ``key`` connected now, here and elsewhere."""
        self.push_ephemeral_local(key, envelope)
        if self.ephemeral_elsewhere is not None:
            self.ephemeral_elsewhere(key, envelope)

    def push_ephemeral_local(self, key: MailboxKey, envelope: Envelope) -> None:
        for wake in self._subs.get(key, ()):
            wake.push_ephemeral(envelope)

    def connected(self) -> int:
        return sum(len(s) for s in self._subs.values())


class DeviceConnections:
    """Live connections per device key. At most ``max_per_device`` are kept: a new one beyond
    that has the OLDEST told to close (``superseded``), so a device that moved networks gets in
    at once while its stale connections have not timed out yet, and a device cannot pile up
    connections (each holds buffers) for itself."""

    def __init__(self, max_per_device: int | None = None) -> None:
        #: connections kept per device (None: no cap)
        self.max_per_device = max_per_device
        # insertion order is age; the value is the connection's ``superseded`` event
        self._live: dict[str, dict[Signal, Signal]] = defaultdict(dict)

    @contextmanager
    def track(self, fingerprint: str, superseded: Signal | None = None, removed: Signal | None = None) -> Iterator[Signal]:
        """Track one connection of the device ``fingerprint``; ``removed`` (a new event if not
        given; yielded) is set when the device is removed; ``superseded`` is set when newer
        connections of the same device push this one over the cap."""
        removed = removed if removed is not None else trio.Event()
        live = self._live[fingerprint]
        live[removed] = superseded if superseded is not None else trio.Event()
        while self.max_per_device is not None and len(live) > self.max_per_device:
            oldest = next(iter(live))
            live.pop(oldest).set()
        try:
            yield removed
        finally:
            live.pop(removed, None)
            if not live and self._live.get(fingerprint) is live:
                del self._live[fingerprint]

    def fingerprints(self) -> list[str]:
        """The device keys with a live connection right now."""
        return list(self._live)

    def removed(self, fingerprint: str) -> int:
        """Signal every live connection of the device; return how many there were."""
        events = list(self._live.get(fingerprint, {}))
        for event in events:
            event.set()
        return len(events)
