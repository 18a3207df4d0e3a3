"""Who may hold a connection to the server, and for how long before it proves who it is.

Every accepted TCP connection is counted per source address and overall. A connection is
*pending* until its handshake has authenticated the other side: that is the cheapest thing an
attacker makes (no crypto at all), so pending connections have their own, smaller caps and a
deadline from the moment of accept. At a pending cap a pending connection is evicted rather
than the newcomer refused, as a SYN cache does: the newcomer may be a device on the same address
(the same NAT, the same host) as a flood, and the node cannot tell them apart. Which one goes
follows the stages of EVICTION_ORDER: first one that was answered and has said nothing since,
the longest answered first (a stalled socket: a legitimate client sends its first handshake
message as soon as it reads the answer); then one not answered yet, the oldest first; last one
that has started its handshake, the oldest first. So a flood of upgrade-then-nothing, even from
a device's own address, never pushes out a handshake under way, and an authenticated connection
is never evicted at all. At a cap on all connections a pending one (of that address, or
anywhere) goes the same way; only when none is pending is the newcomer refused. An evicted or
timed-out connection is cut at once (its task cancelled): nothing waits for an untrusted peer.

Bytes of incoming messages not yet whole (``Admitted.hold``; transport/websocket.py asks as soon
as a frame header announces them, before they are buffered) are budgeted per actor as well as
per connection: each connection may hold one message up to its cap, so without a budget a
device's 8 connections, an account's many devices or a peer's connections would hold that cap
times their count. A connection's bytes are charged to its source address from its
authentication until the node says who it is (``Admitted.charge_to``: the device and its
account, or the peer) and given back when the message is whole or the connection ends, however
it ends (``release``). A pending connection's are charged to nobody: its handshake messages are
bounded by the pending caps (max_pending_per_address x pending_message_bytes) and evicted
oldest-first as above; charged to the address, they would need room that an attacker behind the
same address (a NAT) holds with a few connections without an account, each announcing a
Register-sized message in a frame header, and no device there could connect at all.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import trio

from sonet.core import limits

from . import events
from .send_deadline import SEND_TIMEOUT_S

__all__ = ["ConnectionLimits", "Admission", "Admitted", "Refused", "EVICTION_ORDER", "ACTORS"]

#: who bytes of unfinished incoming messages are charged to (``ConnectionLimits.partial_bytes``)
ACTORS = ("address", "device", "account", "peer")
#: the defaults of those budgets. None binds an honest sender: a connection carries one message
#: at a time, a device's largest is a record (MAX_RECORD_BYTES: a full SendBatch; attachments
#: go in 1 MiB chunks), a registration well under MAX_UNREGISTERED_RECORD_BYTES, and a peer's
#: largest a Push (MAX_PUSH_BYTES) or a record of answers
PARTIAL_BYTES_PER_ADDRESS = 8 * 1024 * 1024
PARTIAL_BYTES_PER_DEVICE = 2 * limits.MAX_RECORD_BYTES
PARTIAL_BYTES_PER_ACCOUNT = 4 * limits.MAX_RECORD_BYTES
PARTIAL_BYTES_PER_PEER = 4 * limits.MAX_RECORD_BYTES


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
    send_timeout_s: float = SEND_TIMEOUT_S
    #: a WebSocket message, from its first byte to its last (idle time between messages is free)
    message_timeout_s: float = limits.MESSAGE_DEADLINE_S
    #: the largest WebSocket message of a connection not yet authenticated: a handshake message
    pending_message_bytes: int = limits.MAX_HANDSHAKE_MESSAGE_BYTES
    #: bytes of messages not yet whole held at once for one source address, of connections the
    #: node does not know as a device with an account or a peer yet: a few registrations at once
    partial_bytes_per_address: int = PARTIAL_BYTES_PER_ADDRESS
    #: ... for one device (a device sends one message at a time per connection: two largest
    #: messages at once on two connections)
    partial_bytes_per_device: int = PARTIAL_BYTES_PER_DEVICE
    #: ... for one account, all its devices together
    partial_bytes_per_account: int = PARTIAL_BYTES_PER_ACCOUNT
    #: ... for one peer node, all its connections together
    partial_bytes_per_peer: int = PARTIAL_BYTES_PER_PEER

    def check(self) -> None:
        if min(self.max_connections, self.max_connections_per_address, self.max_pending, self.max_pending_per_address) < 1:
            raise ValueError("connection caps must be at least 1")
        if min(self.partial_bytes(kind) for kind in ACTORS) < self.pending_message_bytes:
            raise ValueError(f"budgets of bytes of unfinished messages must be at least {self.pending_message_bytes} (a handshake message)")
        if min(self.upgrade_timeout_s, self.handshake_timeout_s, self.send_timeout_s, self.message_timeout_s) <= 0:
            raise ValueError("connection deadlines must be more than 0 s")

    def partial_bytes(self, kind: str) -> int:
        """The budget of bytes of unfinished messages of one actor of ``kind`` (ACTORS)."""
        value: int = getattr(self, f"partial_bytes_per_{kind}")
        return value


#: who an actor of each kind is, in a refusal
_WHOSE = {"address": "this address", "device": "this device", "account": "this account's devices", "peer": "a peer node"}


#: ``Admitted.charged`` of a connection not authenticated yet: its bytes are charged to nobody
_NOBODY: tuple[tuple[str, str], ...] = ()


def _actors(conn: Admitted) -> tuple[tuple[str, str], ...]:
    """Who ``conn``'s held bytes are charged to."""
    return conn.charged if conn.charged is not None else (("address", conn.address),)


class Refused(Exception):
    """A connection refused at accept; ``code`` is its refusal code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


#: the stages of a pending connection, in the order they are evicted: one answered (its 101
#: sent) that has said nothing since, the longest answered first; one not answered yet, the
#: oldest first; one that has spoken since its upgrade (its handshake began), the oldest first
EVICTION_ORDER = ("upgraded", "new", "talking")


class Admitted:
    """One connection the server holds. Its task runs inside ``scope``: cancelling the scope
    (eviction, a deadline) ends it at once."""

    def __init__(self, address: str, deadline: float, admission: Admission | None = None) -> None:
        self.address = address
        self._admission = admission
        #: bytes of an unfinished incoming message it holds (charged to ``charged``)
        self.held = 0
        #: the actors its held bytes are charged to, (kind, key) pairs; None: its address (no
        #: tuple made for each connection until it is charged to someone else); nobody
        #: (_NOBODY) until it is authenticated
        self.charged: tuple[tuple[str, str], ...] | None = _NOBODY
        #: its pre-authentication deadline (trio time), also once it is evicted
        self.deadline = deadline
        self.scope = trio.CancelScope(deadline=deadline)
        #: its stage while pending (EVICTION_ORDER), None once authenticated or evicted
        self.stage: str | None = "new"
        #: its upgrade request was answered
        self.answered = False
        #: it sent something after its upgrade request (a handshake message, presumably)
        self.spoke = False
        #: why the server ended it (for the log summary), None if it ended by itself
        self.ended_by: str | None = None
        #: how its handshake ended without a link, as the handler said (a refusal's code, the
        #: failure's): the log summary counts it under that rather than ``ended_unauthenticated``
        self.handshake_end: str | None = None
        #: the stage it was in when it was evicted (None: not evicted)
        self.evicted_from: str | None = None

    @property
    def pending(self) -> bool:
        return self.stage is not None

    def hold(self, total: int) -> str | None:
        """This connection now holds ``total`` bytes of an unfinished message (0: none): None if
        its actors' budgets have room for them (they are charged), else why not (nothing is
        charged; the caller refuses the message)."""
        return self._admission.hold(self, total) if self._admission is not None else None

    def charge_to(self, **actors: str) -> None:
        """Charge what it holds, from now on, to these actors (kind=key, kinds of ACTORS)
        instead of its source address: the node knows who it is now."""
        if self._admission is not None:
            self._admission.charge_to(self, actors)

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
        self._pending_by_address: dict[str, int] = defaultdict(int)
        # per stage, node-wide and per address; insertion order is the eviction order within
        # a stage (the first key goes first)
        self._stage: dict[str, dict[Admitted, None]] = {stage: {} for stage in EVICTION_ORDER}
        self._stage_by_address: dict[str, dict[str, dict[Admitted, None]]] = {stage: {} for stage in EVICTION_ORDER}
        #: bytes of unfinished messages held per actor, (kind, key): only actors holding some
        self._held: dict[tuple[str, str], int] = {}

    @property
    def held(self) -> int:
        return self._all

    @property
    def pending(self) -> int:
        return sum(len(conns) for conns in self._stage.values())

    def admit(self, address: str) -> Admitted:
        """Count a new connection from ``address``, evicting as the caps say; Refused when it
        cannot be held (the caps are full of authenticated connections)."""
        caps = self.caps
        if self._pending_by_address.get(address, 0) >= caps.max_pending_per_address:
            self._evict(self._victim(address), "pending_per_address")
        if self.pending >= caps.max_pending:
            self._evict(self._victim(None), "pending")
        if self._by_address.get(address, 0) >= caps.max_connections_per_address:
            if not self._pending_by_address.get(address):
                events.emit("connection_refused", address=address, code="too_many_connections")
                raise Refused("too_many_connections", f"too many connections from {address}; try again later")
            self._evict(self._victim(address), "per_address")
        if self._all >= caps.max_connections:
            if not self.pending:
                events.emit("connection_refused", address=address, code="too_many_connections")
                raise Refused("too_many_connections", "this node holds as many connections as it can; try again later")
            self._evict(self._victim(None), "overall")
        conn = Admitted(address, trio.current_time() + caps.handshake_timeout_s, self)
        self._all += 1
        self._by_address[address] += 1
        self._pending_by_address[address] += 1
        self._enter(conn, "new")
        return conn

    def evict_oldest(self, why: str) -> bool:
        """Free one connection (the process is out of file descriptors): the first pending one
        in eviction order."""
        if not self.pending:
            return False
        self._evict(self._victim(None), why)
        return True

    def answered(self, conn: Admitted) -> None:
        """``conn``'s upgrade request was answered: from now on, silence is stalling."""
        conn.answered = True
        if conn.stage == "new":
            self._leave(conn)
            self._enter(conn, "upgraded")

    def spoke(self, conn: Admitted) -> None:
        """``conn`` sent something after its upgrade request: evicted after the silent ones."""
        conn.spoke = True
        if conn.stage in ("new", "upgraded"):
            self._leave(conn)
            self._enter(conn, "talking")

    def _victim(self, address: str | None) -> Admitted:
        """The pending connection to evict (of ``address``, or anywhere): the first of the
        first non-empty stage in EVICTION_ORDER."""
        for stage in EVICTION_ORDER:
            conns = self._stage[stage] if address is None else self._stage_by_address[stage].get(address)
            if conns:
                return next(iter(conns))
        raise AssertionError(f"no pending connection of {address or 'any address'} to evict")

    def authenticated(self, conn: Admitted) -> None:
        """``conn`` passed its handshake: no deadline any more, no eviction; what it holds is
        charged to its address from now on (even past its budget: it was admitted)."""
        if conn.pending:
            self._unpend(conn)
            conn.scope.deadline = math.inf
        if conn.charged is _NOBODY:
            conn.charged = None
            self._charge(_actors(conn), conn.held)

    def held_by(self, kind: str, key: str) -> int:
        """Bytes of unfinished messages the actor holds right now."""
        return self._held.get((kind, key), 0)

    def hold(self, conn: Admitted, total: int) -> str | None:
        """``conn`` holds ``total`` bytes now (``Admitted.hold``): charged if every actor it is
        charged to has room, else why not (nothing changes)."""
        more = total - conn.held
        actors = _actors(conn)
        if more > 0:
            for actor in actors:
                budget = self.caps.partial_bytes(actor[0])
                if self._held.get(actor, 0) + more > budget:
                    if conn.ended_by is None:  # the WebSocket refuses the message and closes
                        conn.ended_by = f"partial_bytes_{actor[0]}"
                    events.emit("connection_refused", address=conn.address, code=f"partial_bytes_{actor[0]}")
                    return f"over the {budget} bytes of unfinished messages {_WHOSE[actor[0]]} may send at once; try again later"
        self._charge(actors, more)
        conn.held = total
        return None

    def charge_to(self, conn: Admitted, actors: dict[str, str]) -> None:
        unknown = set(actors) - set(ACTORS)
        if unknown or not actors:
            raise ValueError(f"bytes are charged to actors of {ACTORS}, not {sorted(unknown) or 'none'}")
        self._charge(_actors(conn), -conn.held)
        conn.charged = tuple(actors.items())
        # what it holds already moves along, even past the new actors' budgets: it was admitted
        # (the next bytes it asks for are refused until they have room again)
        self._charge(conn.charged, conn.held)

    def _charge(self, actors: tuple[tuple[str, str], ...], nbytes: int) -> None:
        if not nbytes:
            return
        for actor in actors:
            left = self._held.get(actor, 0) + nbytes
            if left:
                self._held[actor] = left
            else:
                del self._held[actor]

    def release(self, conn: Admitted) -> None:
        """``conn`` ended (every connection admitted is released exactly once): it holds
        nothing any more, whatever its WebSocket was in the middle of."""
        self.hold(conn, 0)
        if conn.pending:
            self._unpend(conn)
        self._all -= 1
        self._by_address[conn.address] -= 1
        if not self._by_address[conn.address]:
            del self._by_address[conn.address]

    def _enter(self, conn: Admitted, stage: str) -> None:
        conn.stage = stage
        self._stage[stage][conn] = None
        self._stage_by_address[stage].setdefault(conn.address, {})[conn] = None

    def _leave(self, conn: Admitted) -> None:
        assert conn.stage is not None
        del self._stage[conn.stage][conn]
        mine = self._stage_by_address[conn.stage]
        del mine[conn.address][conn]
        if not mine[conn.address]:
            del mine[conn.address]
        conn.stage = None

    def _unpend(self, conn: Admitted) -> None:
        self._leave(conn)
        self._pending_by_address[conn.address] -= 1
        if not self._pending_by_address[conn.address]:
            del self._pending_by_address[conn.address]

    def _evict(self, conn: Admitted, why: str) -> None:
        """End ``conn`` now; it stops counting as pending at once (its task releases the rest)."""
        conn.evicted_from = conn.stage
        self._unpend(conn)
        conn.end(f"evicted_{why}")
        events.emit("connection_refused", address=conn.address, code=f"evicted_{why}")
        self._on_evict(why)
