"""Who may hold a connection to the server, and for how long before it proves who it is.

Every accepted TCP connection is counted per source address and overall. A connection is
*pending* until its handshake has authenticated the other side: that is the cheapest thing an
attacker makes (no crypto at all), so pending connections have their own, smaller caps and a
deadline from the moment of accept. At a pending cap the OLDEST pending connection is evicted,
as a SYN cache does: a legitimate client finishes its handshake in milliseconds, a connection
that stalls is the likeliest attacker, and a newcomer always gets its chance. Silent ones go
first: a connection that has sent nothing since its upgrade request is evicted before one that
has started its handshake (a legitimate client sends its first handshake message at once, so a
flood of connections that only ask for the upgrade, even from the same address, never pushes a
handshake in progress out). At a cap on all connections the oldest pending one (of that
address, or anywhere) goes first; only when none is pending is the newcomer refused. An evicted or timed-out connection is aborted at once (its
task cancelled, the socket reset): nothing waits for an untrusted peer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import trio

from sonet.core import limits

__all__ = ["ConnectionLimits", "Admission", "Admitted", "Refused"]


@dataclass(frozen=True, kw_only=True)
class ConnectionLimits:
    """The server's connection caps and deadlines (node.toml ``[connections]``)."""

    #: connections at once, in every state (clamped below the process's file limit)
    max_connections: int = 4096
    #: connections at once from one source address, in every state
    max_connections_per_address: int = 256
    #: connections not yet authenticated, at once: the oldest is evicted beyond
    max_pending: int = 512
    #: of those, from one source address
    max_pending_per_address: int = 64
    #: from accept to a complete upgrade request
    upgrade_timeout_s: float = 5.0
    #: from accept to an authenticated handshake
    handshake_timeout_s: float = limits.HANDSHAKE_DEADLINE_S
    #: a send that makes no progress for this long disconnects the peer (it stopped reading)
    send_timeout_s: float = 30.0
    #: the largest WebSocket message of a connection not yet authenticated: a handshake message
    pending_message_bytes: int = limits.MAX_HANDSHAKE_MESSAGE_BYTES

    def check(self) -> None:
        if min(self.max_connections, self.max_connections_per_address, self.max_pending, self.max_pending_per_address) < 1:
            raise ValueError("connection caps must be at least 1")
        if min(self.upgrade_timeout_s, self.handshake_timeout_s, self.send_timeout_s) <= 0:
            raise ValueError("connection deadlines must be more than 0 s")


class Refused(Exception):
    """A connection refused at accept; ``code`` is its refusal code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Admitted:
    """One connection the server holds. Its task runs inside ``scope``: cancelling the scope
    (eviction, a deadline) ends it at once."""

    def __init__(self, address: str, deadline: float) -> None:
        self.address = address
        self.scope = trio.CancelScope(deadline=deadline)
        self.pending = True
        #: it sent something after its upgrade request (a handshake message, presumably)
        self.spoke = False
        #: why the server ended it (for the log summary), None if it ended by itself
        self.ended_by: str | None = None

    def end(self, why: str) -> None:
        if self.ended_by is None:
            self.ended_by = why
        self.scope.cancel()


class Admission:
    """The table of held connections and its caps; plain synchronous code on the trio thread,
    so each check-and-update is atomic. ``on_evict(why)`` is told about each eviction."""

    def __init__(self, caps: ConnectionLimits, *, on_evict: Callable[[str], None] = lambda why: None) -> None:
        caps.check()
        self.caps = caps
        self._on_evict = on_evict
        self._all = 0
        self._by_address: dict[str, int] = defaultdict(int)
        # insertion order is age: the first key is the oldest; the silent ones are also kept
        # apart, to be evicted first
        self._pending: dict[Admitted, None] = {}
        self._pending_by_address: dict[str, dict[Admitted, None]] = defaultdict(dict)
        self._silent: dict[Admitted, None] = {}
        self._silent_by_address: dict[str, dict[Admitted, None]] = defaultdict(dict)

    @property
    def held(self) -> int:
        return self._all

    @property
    def pending(self) -> int:
        return len(self._pending)

    def admit(self, address: str) -> Admitted:
        """Count a new connection from ``address``, evicting as the caps say; Refused when it
        cannot be held (the caps are full of authenticated connections)."""
        caps = self.caps
        if len(self._pending_by_address.get(address, ())) >= caps.max_pending_per_address:
            self._evict(self._victim(address), "pending_per_address")
        if len(self._pending) >= caps.max_pending:
            self._evict(self._victim(None), "pending")
        if self._by_address.get(address, 0) >= caps.max_connections_per_address:
            if address not in self._pending_by_address:
                raise Refused("too_many_connections", f"too many connections from {address}; try again later")
            self._evict(self._victim(address), "per_address")
        if self._all >= caps.max_connections:
            if not self._pending:
                raise Refused("too_many_connections", "this node holds as many connections as it can; try again later")
            self._evict(self._victim(None), "overall")
        conn = Admitted(address, trio.current_time() + caps.handshake_timeout_s)
        self._all += 1
        self._by_address[address] += 1
        self._pending[conn] = None
        self._pending_by_address[address][conn] = None
        self._silent[conn] = None
        self._silent_by_address[address][conn] = None
        return conn

    def evict_oldest(self, why: str) -> bool:
        """Free one connection (the process is out of file descriptors): the oldest pending."""
        if not self._pending:
            return False
        self._evict(self._victim(None), why)
        return True

    def spoke(self, conn: Admitted) -> None:
        """``conn`` sent something after its upgrade request: evicted after the silent ones."""
        if not conn.spoke:
            conn.spoke = True
            self._unsilence(conn)

    def _victim(self, address: str | None) -> Admitted:
        """The pending connection to evict (of ``address``, or anywhere): the oldest silent
        one, else the oldest."""
        silent = self._silent if address is None else self._silent_by_address.get(address, {})
        pending = self._pending if address is None else self._pending_by_address[address]
        return next(iter(silent or pending))

    def authenticated(self, conn: Admitted) -> None:
        """``conn`` passed its handshake: no deadline any more, no eviction."""
        if conn.pending:
            self._unpend(conn)
            conn.scope.deadline = math.inf

    def release(self, conn: Admitted) -> None:
        """``conn`` ended (every connection admitted is released exactly once)."""
        if conn.pending:
            self._unpend(conn)
        self._all -= 1
        self._by_address[conn.address] -= 1
        if not self._by_address[conn.address]:
            del self._by_address[conn.address]

    def _unpend(self, conn: Admitted) -> None:
        conn.pending = False
        del self._pending[conn]
        mine = self._pending_by_address[conn.address]
        del mine[conn]
        if not mine:
            del self._pending_by_address[conn.address]
        self._unsilence(conn)

    def _unsilence(self, conn: Admitted) -> None:
        if conn in self._silent:
            del self._silent[conn]
            quiet = self._silent_by_address[conn.address]
            del quiet[conn]
            if not quiet:
                del self._silent_by_address[conn.address]

    def _evict(self, conn: Admitted, why: str) -> None:
        """End ``conn`` now; it stops counting as pending at once (its task releases the rest)."""
        self._unpend(conn)
        conn.end(f"evicted_{why}")
        self._on_evict(why)
