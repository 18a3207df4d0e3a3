"""Several ``sonet-node run`` processes serving one node from one PostgreSQL database.

The database is the node's one truth; what the processes need among themselves is wake-ups and
who pushes which outbox (SQL in node/store/postgres_cluster.py):

- Wake-ups, at once and without polling: every ``MailboxRegistry.notify`` (an envelope stored
  for a mailbox) and every outbox wake for a destination this process does not push becomes a
  ``NOTIFY`` once its transaction committed (the store returns only then); each process
  ``LISTEN``s on a connection of its own and wakes its own waiting devices (``notify_local``)
  or outbox workers (``Outboxes.wake_held``). What is missed while that connection is down (or
  a process died between its commit and its NOTIFY) is caught by a re-check: on every
  (re)connection and every ``RECHECK_S`` every waiting device and held outbox looks again.
- Outbox leases: each destination's outbox is pushed by the one process holding its lease,
  renewed every ``RENEW_S``; one that expires (its holder was killed, or lost the database) is
  taken over ``LEASE_TTL_S`` after the last renewal by the next process to claim. A holder that
  cannot renew stops pushing ``LEASE_MARGIN_S`` before the server would let another take over.

- Device linking: a link slot approved on one process (node/linking.py, the slots are in the
  store) becomes a ``NOTIFY`` naming the slot; the process where the new device waits reads the
  offer from the store and pushes it (and looks again at every re-check).

- Live ephemeral pushes (typing indicators) are passed on too: the envelope is kept a moment in
  the database (too large for a notification), its id goes in a ``NOTIFY``, and a process with
  a device of that mailbox connected reads it and pushes it. Best-effort like the push itself:
  one not read within ``EPHEMERAL_TTL_S``, or written while the database is away, is dropped.

Administration changes need nothing here: every process polls the store's admin counter
(node/admin_watch.py).
"""

from __future__ import annotations

import logging
import socket
import os
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio

from sonet.core.envelope import Envelope
from sonet.core.wire import decode_struct, encode_struct
from sonet.federation.outbox import Outboxes

from .linking import LinkRegistry
from .mailbox import MailboxKey, MailboxRegistry
from .store import StoreError, redact_url
from .store.postgres_cluster import (
    EPHEMERAL_CHANNEL,
    LINK_CHANNEL,
    MAILBOX_CHANNEL,
    OUTBOX_CHANNEL,
    claim_leases,
    ensure_tables,
    notify,
    parse_payload,
    put_ephemerals,
    release_leases,
    sweep_ephemerals,
    take_ephemerals,
)

__all__ = ["Cluster", "LEASE_TTL_S", "RENEW_S", "RECHECK_S", "process_name"]

log = logging.getLogger("sonet.node.cluster")

T = TypeVar("T")

#: how long a lease lasts after its last renewal (how long a killed holder's outboxes wait)
LEASE_TTL_S = 10.0
#: how often a process renews its leases and claims free ones
RENEW_S = 2.0
#: a holder that could not renew stops pushing this long before its lease runs out
LEASE_MARGIN_S = 2.0
#: how often every waiting device and held outbox looks again anyway (missed notifications)
RECHECK_S = 30.0
#: ephemeral pushes waiting to be passed on at most (more are dropped: best-effort)
MAX_PENDING_EPHEMERALS = 1024
#: wait before connecting again after the database went away
RECONNECT_S = 1.0
#: a statement of the control connection that takes longer failed (the database is unwell)
_STATEMENT_TIMEOUT_MS = 5000
_CONNECT_TIMEOUT_S = 5


def process_name(rng: Callable[[int], bytes]) -> str:
    """This process among the node's: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}/{os.getpid()}/{rng(4).hex()}"


class Cluster:
    """This process's part in a node of several processes; ``run`` it beside the node."""

    def __init__(
        self,
        url: str,
        *,
        process: str,
        registry: MailboxRegistry,
        links: LinkRegistry | None = None,
        lease_ttl_s: float = LEASE_TTL_S,
        renew_s: float = RENEW_S,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.process = process
        self._url = url
        self._registry = registry
        self._links = links
        self._ttl = lease_ttl_s
        self._renew = renew_s
        self._recheck_s = recheck_s
        self._outboxes: Outboxes | None = None
        #: destinations whose lease this process holds, valid until ``_valid_until`` (trio clock)
        self._held: set[str] = set()
        self._valid_until = 0.0
        # what to tell the other processes, sent by ``_publish_loop``
        self._pending_mailboxes: set[MailboxKey] = set()
        self._pending_dests: set[str] = set()
        self._pending_links: set[bytes] = set()
        self._pending_ephemerals: list[tuple[MailboxKey, Envelope]] = []
        self._pending = trio.Event()
        #: runs the link offers heard of (they are read from the store), set by ``run``
        self._nursery: trio.Nursery | None = None
        # one connection for NOTIFY and the leases, used by one thread at a time
        self._control: psycopg.Connection[Any] | None = None
        self._control_pid = -1
        self._control_lock = trio.Lock()

    # What the node's parts call ------------------------------------------------------------

    def attach(self, outboxes: Outboxes) -> None:
        """Push only the destinations this process holds the lease of."""
        self._outboxes = outboxes
        outboxes.share(self)

    def holds(self, dest: str) -> bool:
        return dest in self._held and trio.current_time() < self._valid_until

    def elsewhere(self, dests: set[str]) -> None:
        self._pending_dests |= dests
        self._pending.set()

    def mailboxes_elsewhere(self, keys: set[MailboxKey]) -> None:
        self._pending_mailboxes |= keys
        self._pending.set()

    def ephemeral_elsewhere(self, key: MailboxKey, envelope: Envelope) -> None:
        if len(self._pending_ephemerals) < MAX_PENDING_EPHEMERALS:
            self._pending_ephemerals.append((key, envelope))
            self._pending.set()

    def links_elsewhere(self, slot: bytes) -> None:
        self._pending_links.add(slot)
        self._pending.set()

    def held(self) -> set[str]:
        """The destinations this process pushes now."""
        return {d for d in self._held if self.holds(d)}

    # Running -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled; started once the leases table exists (a database that cannot be
        reached fails the start: the store opened it a moment ago)."""
        try:
            await self._on_control(ensure_tables)
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None
        self._registry.elsewhere = self.mailboxes_elsewhere
        self._registry.ephemeral_elsewhere = self.ephemeral_elsewhere
        if self._links is not None:
            self._links.elsewhere = self.links_elsewhere
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                listening = trio.Event()
                nursery.start_soon(self._listen_loop, listening)
                await listening.wait()
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._lease_loop)
                nursery.start_soon(self._lease_watchdog)
                task_status.started()
        finally:
            self._nursery = None
            self._registry.elsewhere = None
            self._registry.ephemeral_elsewhere = None
            if self._links is not None:
                self._links.elsewhere = None
            self._revoke_all()
            with trio.CancelScope(shield=True):
                try:
                    await self._on_control(lambda conn: release_leases(conn, self.process))
                except psycopg.Error as exc:  # they expire on their own
                    log.warning("cannot give the outbox leases up (they expire in %g s): %s", self._ttl, _line(exc))
                if self._control is not None:
                    await trio.to_thread.run_sync(self._control.close)

    async def _on_control(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` on the control connection (connected again if it broke), on a thread."""
        async with self._control_lock:
            if self._control is None or self._control.closed:
                self._control = await trio.to_thread.run_sync(self._connect)
                self._control_pid = self._control.info.backend_pid
            try:
                return await trio.to_thread.run_sync(fn, self._control)
            except psycopg.OperationalError:
                conn, self._control = self._control, None
                await trio.to_thread.run_sync(conn.close)
                raise

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}",
            application_name="sonet-node cluster",
        )

    async def _publish_loop(self) -> None:
        while True:
            await self._pending.wait()
            self._pending = trio.Event()
            mailboxes, self._pending_mailboxes = self._pending_mailboxes, set()
            dests, self._pending_dests = self._pending_dests, set()
            links, self._pending_links = self._pending_links, set()
            # dropped if this fails: a typing indicator sent again later is worth more
            ephemerals, self._pending_ephemerals = self._pending_ephemerals, []

            def send(conn: psycopg.Connection[Any]) -> None:
                notify(conn, MAILBOX_CHANNEL, [[account, device] for account, device in sorted(mailboxes)])
                notify(conn, OUTBOX_CHANNEL, sorted(dests))
                notify(conn, LINK_CHANNEL, sorted(slot.hex() for slot in links))
                if ephemerals:
                    ids = put_ephemerals(conn, [encode_struct(envelope) for _, envelope in ephemerals])
                    notify(conn, EPHEMERAL_CHANNEL, [[i, a, d] for i, ((a, d), _) in zip(ids, ephemerals, strict=True)])

            try:
                await self._on_control(send)
            except psycopg.Error as exc:
                log.warning("cannot wake the node's other processes, trying again in %g s: %s", RECONNECT_S, _line(exc))
                self._pending_mailboxes |= mailboxes
                self._pending_dests |= dests
                self._pending_links |= links
                self._pending.set()
                await trio.sleep(RECONNECT_S)

    async def _listen_loop(self, listening: trio.Event) -> None:
        heard: deque[psycopg.Notify] = deque()
        while True:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = await trio.to_thread.run_sync(self._connect)
                # notifications a statement of ours reads along with its answer land here
                conn.add_notify_handler(heard.append)
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {MAILBOX_CHANNEL}")
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {OUTBOX_CHANNEL}")
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {LINK_CHANNEL}")
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {EPHEMERAL_CHANNEL}")
                listening.set()
                self._recheck()  # anything committed while nobody here listened
                while True:
                    with trio.move_on_after(self._recheck_s) as quiet:
                        await trio.lowlevel.wait_readable(conn.fileno())
                    if quiet.cancelled_caught:
                        await trio.to_thread.run_sync(conn.execute, "SELECT 1")  # still there?
                        self._recheck()
                    else:
                        conn.pgconn.consume_input()  # readable: does not block
                        while (raw := conn.pgconn.notifies()) is not None:
                            self._heard(raw.relname.decode(), raw.extra.decode(errors="replace"), raw.be_pid)
                    while heard:
                        n = heard.popleft()
                        self._heard(n.channel, n.payload, n.pid)
            except psycopg.Error as exc:
                log.warning("lost the database connection that hears the node's other processes, connecting again: %s", _line(exc))
                if not listening.is_set():
                    raise self._unreachable(exc) from None
            finally:
                if conn is not None:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(conn.close)
            await trio.sleep(RECONNECT_S)

    def _unreachable(self, exc: psycopg.Error) -> StoreError:
        """What stops the start: one line, the URL without its password."""
        return StoreError(f"cannot open database {redact_url(self._url)}: {_line(exc)}")

    def _heard(self, channel: str, payload: str, pid: int) -> None:
        if pid == self._control_pid:
            return  # this process's own: it woke its own devices and workers already
        items = parse_payload(payload)
        if channel == MAILBOX_CHANNEL:
            keys = {(a, d) for a, d in (i for i in items if isinstance(i, list) and len(i) == 2) if isinstance(a, str) and isinstance(d, int)}
            self._registry.notify_local(keys)
        elif channel == OUTBOX_CHANNEL and self._outboxes is not None:
            self._outboxes.wake_held(d for d in items if isinstance(d, str))
        elif channel == LINK_CHANNEL:
            self._deliver_links(_slots(items))
        elif channel == EPHEMERAL_CHANNEL:
            here = set(self._registry.keys())
            wanted = {
                i: (a, d) for i, a, d in (x for x in items if isinstance(x, list) and len(x) == 3)
                if isinstance(i, int) and isinstance(a, str) and isinstance(d, int) and (a, d) in here
            }  # fmt: skip
            if wanted and self._nursery is not None:
                self._nursery.start_soon(self._push_ephemerals, wanted)

    async def _push_ephemerals(self, wanted: dict[int, MailboxKey]) -> None:
        """Read the ephemeral pushes ``wanted`` for devices connected here and push them."""
        try:
            found = await self._on_control(lambda conn: take_ephemerals(conn, list(wanted)))
        except psycopg.Error as exc:  # best-effort: a typing indicator is not worth a retry
            log.info("cannot read an ephemeral push of another process: %s", _line(exc))
            return
        for i, raw in sorted(found.items()):
            try:
                envelope = decode_struct(Envelope, raw)
                envelope.check()
            except Exception:  # noqa: BLE001 - any role that may write the table could put anything
                continue
            self._registry.push_ephemeral_local(wanted[i], envelope)

    def _deliver_links(self, slots: list[bytes]) -> None:
        """Offers approved elsewhere for connections waiting here: read and pushed."""
        if self._links is None or self._nursery is None:
            return
        here = set(self._links.waiting())
        mine = [slot for slot in slots if slot in here]
        if mine:
            self._nursery.start_soon(self._links.deliver_all, mine)

    def _recheck(self) -> None:
        self._registry.notify_local(self._registry.keys())
        if self._links is not None:
            self._deliver_links(self._links.waiting())
        if self._outboxes is not None:
            self._outboxes.wake_held(self.held())

    async def _lease_loop(self) -> None:
        while True:
            started = trio.current_time()
            try:
                held = await self._on_control(lambda conn: claim_leases(conn, self.process, self._ttl))
            except psycopg.Error as exc:
                log.warning("cannot renew the outbox leases, trying again in %g s: %s", self._renew, _line(exc))
            else:
                # the server counts from when it ran the statement, after ``started``
                self._valid_until = started + self._ttl - LEASE_MARGIN_S
                lost, gained = self._held - held, held - self._held
                self._held = held
                if self._outboxes is not None:
                    for dest in lost:
                        self._outboxes.revoke(dest)
                    self._outboxes.wake_held(gained)
                if gained:
                    log.info("pushing the outboxes of %s", ", ".join(sorted(gained)))
                try:  # ephemeral pushes passed on a while ago: read by now or never
                    await self._on_control(sweep_ephemerals)
                except psycopg.Error as exc:
                    log.info("cannot sweep the passed-on ephemeral pushes: %s", _line(exc))
            await trio.sleep(self._renew)

    async def _lease_watchdog(self) -> None:
        """Stop pushing once the leases could not be renewed in time (the lease loop may be
        stuck on an unreachable database)."""
        while True:
            await trio.sleep(min(0.5, self._renew))
            if self._held and trio.current_time() >= self._valid_until:
                log.warning("outbox leases not renewed in time: no longer pushing %s", ", ".join(sorted(self._held)))
                self._revoke_all()

    def _revoke_all(self) -> None:
        held, self._held = self._held, set()
        if self._outboxes is not None:
            for dest in held:
                self._outboxes.revoke(dest)


def _slots(items: list[Any]) -> list[bytes]:
    """The slot keys a link notification names (anything else is ignored)."""
    slots = []
    for item in items:
        if isinstance(item, str):
            try:
                slots.append(bytes.fromhex(item))
            except ValueError:
                pass
    return slots


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
