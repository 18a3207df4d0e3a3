"""Outbox workers: one per destination node with queued items (ARCHITECTURE §6).

A worker pushes its destination's items oldest first to the next hop: the destination itself
or the relay its peer entry names, with up to ``pushes_in_flight`` (3) pushes on their way at
once when there is a backlog (a third push beside others must be at least half full; under
light load a second small push goes beside the one in flight, the hop taking it into the same
group commit, and what comes meanwhile gathers for the next), each reading past the items of
those before it. They go out in the order read and the hop
applies them in that order (the link's push sequence, federation/push_sequence.py); their
answers are taken in that order too. A push goes beside others only on the link the one before
it took (``follows``): on a new link, whose sequence starts again, the hop could apply it ahead
of a push lost with the old one. Nothing is deleted before the PushResult: then, in one
store transaction, the items go, their outcomes become delivery statuses (items this node
originated) or reports queued back to the origin (items it relays). Those transactions run one
at a time, in order, while the next pushes are on their way (the worker does not wait for
them unless two are queued); if one fails, those queued behind it do not run, and the items are pushed
again later and the receiver's deduplication answers "ok" without storing them twice. A push
that is not taken (refused as a whole, a lost link, no answer in time) makes the worker wait
for the answers of those behind it (the hop refuses them ``out_of_order``; one taken is
settled), then read again from the first item of that push, this time with every check()
of each item (they are read without them while pushes are taken: this node checked them
when it queued them), so that a row failing one (damaged, or queued by an older version
before a check was tightened) is dropped instead of refusing every push (a sending device's
envelope dropped so has its delivery row failed ``outbox_damaged`` in the same transaction:
it never went out, and nothing else would settle it). Only the push to the destination itself makes an envelope "accepted"; a
relay's "ok" only means it holds the item now. Any failure keeps the items and backs off
(federation/pool.py); a valid PushResult ends the hop's backoff (the peer is seen again).

A destination without a route (not a configured peer, or its relay is not: e.g. between
``peer remove`` and ``peer add`` when a pin changes) keeps its items queued; its worker waits
for the peer table to change and ``note()`` says why.

Expiry: every ``expire_interval_s`` each destination with queued items gets its worker going
(started, or woken from a wait), and the worker settles its own expired items in one store
transaction: they go, envelopes this node sent become "failed"/"expired", relayed ones are
reported "expired" to their origin. The worker is the only task pushing that destination's
items, so an item can never expire behind the back of its own push in flight.

A next hop that refuses a push for a storage budget ("relay_full": it holds as much as it may
for this origin; "outbox_full"; "disk_full") keeps nothing of it: the items stay queued here,
within this node's own outbox budget, and only this destination's worker waits (doubling from
``retry_base_s`` up to ``retry_max_s``, or until an expiry tick or a peer-table change). The hop
itself answered, so it is not backed off: the items for other destinations it carries go on.

A group item the destination refuses for now (an outcome of RETRY_LATER: a member device's
allowance of group items is full, the node awaits a hand-over to this hub, or a submission is
past the hub's rate for this node, ``rate_limited``: federation/inbound.py) stays queued
while the items around it are settled: the worker pushes past it, and every expiry tick (or a
restarted worker) pushes it again, until it is taken, refused for good or expires. It holds
back nothing else towards that node but the later submissions of its own group (SUBMIT items),
which wait with it so the hub orders a node's submissions in the order they were queued. A push
that carries a submission goes alone (nothing else of the worker in flight beside it), so that
the groups it makes wait are known before the next push is read.

Several processes of one node (a shared PostgreSQL database, node/cluster.py): each
destination's items are pushed by the one process holding its lease (``OutboxLeases``, given
with ``share``). ``wake`` starts workers only for held destinations and tells the holder of the
others (``leases.elsewhere``); a lease taken over starts its worker (``wake_held``), a lease
lost cancels it (``revoke``). The new holder reads the outbox from its oldest item on a link of
its own: what the old one pushed but did not settle is pushed again and the receiver's
deduplication answers "ok" without storing it twice, so the delivery statuses come out right.

A store error (e.g. "database is locked" after the busy timeout, a full disk) ends a worker
with one log line; the next expiry tick, or new items, start it again. Nothing is lost: items
are deleted only together with their outcomes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import trio

from sonet.core import limits
from sonet.core.client_api import ErrorFrame
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import OK, REFUSALS, RETRY_LATER, Push, PushResult, Transit
from sonet.core.groups.items import ItemKind
from sonet.core.wire import encoded

from .errors import FederationError
from .peers import Peer
from .pool import LinkPool
from .push_sequence import OUT_OF_ORDER
from .ports import FederationStore, Page, StoreFailure
from .records import BUDGET_CODES, OutboundItem, QueuedItem, StatusUpdate
from .routes import Routes
from .settings import FederationSettings
from .transit import decode_transit, read_queued, report_item

__all__ = ["Outboxes", "OutboxLeases", "unroutable_note"]

log = logging.getLogger("sonet.federation")


def _submission_of(transit: Transit) -> bytes | None:
    """The group of a group submission (SUBMIT item), else None."""
    item = transit.group
    return item.group if item is not None and item.kind == ItemKind.SUBMIT else None


async def _nothing() -> None:
    """The settle of a push that sent nothing (all its items wait behind their groups)."""


def _fills_half(items: list[QueuedItem]) -> bool:
    """At least half a push (by items or bytes): worth sending beside others in flight."""
    return 2 * len(items) >= limits.MAX_TRANSIT_PER_PUSH or 2 * sum(len(i.data) for i in items) >= limits.MAX_PUSH_BYTES


#: pushes on their way at once while the newest is less than half full: the hop takes the
#: second into the group commit of the first (federation/inbound.py), so under light load it
#: goes at once instead of waiting for the first one's round trip; a third waits and gathers
SMALL_IN_FLIGHT = 2


class _HeldBack:
    """What ``_deliver`` returns when the next hop refused a push for a storage budget."""


_HELD_BACK = _HeldBack()

#: the delivery state's code of a device's envelope whose outbox row no longer decodes
UNREADABLE = "outbox_damaged"


def unroutable_note(dest: str) -> tuple[str, str]:
    """What a sending device is told about items for ``dest`` while it has no route."""
    return "unroutable", f"{dest} is not a configured peer of this node (or its relay is not)"


class OutboxLeases(Protocol):
    """Which destinations this process pushes, when several processes share the node's store."""

    def holds(self, dest: str) -> bool:
        """This process holds ``dest``'s lease now."""
        ...

    def elsewhere(self, dests: set[str]) -> None:
        """New items for ``dests``, whose leases this process does not hold: tell the others."""
        ...


class _Worker:
    """What others tell a running worker."""

    __slots__ = ("woken", "expire_due", "nudged", "poked", "changed", "held_back", "waiting_groups", "scope", "recheck")

    def __init__(self) -> None:
        #: cancelled when the process loses the destination's lease
        self.scope = trio.CancelScope()
        #: pushes in a row the next hop refused for a storage budget (sets how long to wait)
        self.held_back = 0
        #: groups one of whose submissions the destination takes later (RETRY_LATER): their
        #: later submissions wait with it until the next expiry tick, so a group's order keeps
        #: the order a node's devices submitted in
        self.waiting_groups: set[bytes] = set()
        #: new items were committed since the worker last read its outbox
        self.woken = False
        #: an expiry tick asked it to settle its expired items
        self.expire_due = False
        #: set to end a wait: the peer table changed, or an expiry tick came
        self.nudged = trio.Event()
        #: set when new items came (ends only the wait for a settle, not a backoff)
        self.poked = trio.Event()
        #: set by whatever may end a wait in ``until``: a poke, a nudge, one of the worker's
        #: pushes answered, one of its settles done (a new event for each wait)
        self.changed = trio.Event()
        #: a push was not taken: items are read back with every check() until one is (a row
        #: that fails one it passed when queued, damaged or queued by an older version, is
        #: dropped; pushed as it is, the hop refuses every push that carries it)
        self.recheck = False

    def interrupted(self) -> bool:
        """New items came, or the peer table changed or an expiry tick came, since the worker
        last cleared them: what ends its hot waits besides what each waits for."""
        return self.poked.is_set() or self.nudged.is_set()

    def wake(self) -> None:
        """Something ``until`` may be waiting for changed: it looks again."""
        self.changed.set()

    def poke(self) -> None:
        """New items came for it."""
        self.poked.set()
        self.changed.set()

    def nudge(self) -> None:
        """The peer table changed, or an expiry tick came."""
        self.nudged.set()
        self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` holds, asked again at each ``wake``. One task waits on one event:
        the hot waits (a push's answer, a settle) spawned a task per thing waited for
        (``_first_of``), three tasks and a cancellation per wait, most of a light push's
        scheduling. A checkpoint, like any trio wait, even when ``done()`` holds at once."""
        if done():
            await trio.lowlevel.checkpoint()
            return
        while True:
            self.changed = trio.Event()
            await self.changed.wait()
            if done():
                return


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Until the first of ``waits`` returns."""
    async with trio.open_nursery() as nursery:

        async def first(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(first, wait)


class _Settling:
    """One settle (an ``outbox_done`` transaction) running beside the next pushes, once the
    settle ``before`` it is done (they run one at a time, in order); a store error it or one
    before it meets is raised where the worker waits for it (then it does not run)."""

    def __init__(self, before: _Settling | None = None) -> None:
        self.finished = trio.Event()
        self._error: BaseException | None = None
        #: the settle before it while that one is not done (None once it is)
        self.before = before

    @classmethod
    def idle(cls) -> _Settling:
        settled = cls()
        settled.finished.set()
        return settled

    async def run(self, settle: Callable[[], Awaitable[None]], wake: Callable[[], None]) -> None:
        """``wake``: told once it is done (the worker may be waiting for it)."""
        try:
            if self.before is not None:
                await self.before.finished.wait()
                self._error, self.before = self.before._error, None
            if self._error is None:
                await settle()
        except StoreFailure as exc:
            self._error = exc
        finally:
            self.finished.set()
            wake()

    async def wait(self) -> None:
        await self.finished.wait()
        self.raise_failure()

    def raise_failure(self) -> None:
        """Raise the store error it met, if it is done and met one."""
        if self._error is not None:
            raise self._error


#: what pushes one ``_InFlight`` (``Outboxes._deliver``)
_Deliver = Callable[
    [str, Peer, list[QueuedItem], list[Transit], set[bytes], Callable[[object], object], object | None],
    Awaitable[Callable[[], Awaitable[None]] | _HeldBack | None],
]


class _InFlight:
    """One push: its items, what it read past (``after``) and, once sent, its outcome."""

    __slots__ = ("items", "transits", "after", "alone", "handed_over", "sent", "link", "_done", "_result")

    def __init__(self, items: list[QueuedItem], transits: list[Transit], *, after: int) -> None:
        self.items = items
        self.transits = transits
        self.after = after
        #: it carries a group submission: no other push of the worker is on its way beside it
        #: (the hop may take one later, and its group's later ones must then wait behind it)
        self.alone = any(_submission_of(t) is not None for t in transits)
        #: set once it has its place on the link (or failed before): the next push may go
        self.handed_over = trio.Event()
        #: it has its place on a link: ``link`` (as the pool names it), which the next push
        #: beside it must take too
        self.sent = False
        self.link: object | None = None
        self._done = trio.Event()
        self._result: Callable[[], Awaitable[None]] | _HeldBack | None = None

    def _sent(self, link: object = None) -> None:
        self.sent, self.link = True, link
        self.handed_over.set()

    async def run(
        self, deliver: _Deliver, dest: str, hop: Peer, waiting: set[bytes], follows: object | None, wake: Callable[[], None]
    ) -> None:
        """``wake``: told once it is answered (the worker may be waiting for it)."""
        try:
            self._result = await deliver(dest, hop, self.items, self.transits, waiting, self._sent, follows)
        finally:
            self.handed_over.set()
            self._done.set()
            wake()

    @property
    def answered(self) -> bool:
        return self._done.is_set()

    async def answer(self) -> Callable[[], Awaitable[None]] | _HeldBack | None:
        """What ``_deliver`` made of it: what settles it, ``_HELD_BACK`` or None."""
        await self._done.wait()
        return self._result


class Outboxes:
    def __init__(
        self,
        *,
        name: str,
        store: FederationStore,
        pool: LinkPool,
        routes: Callable[[], Awaitable[Routes]],
        clock_ms: Callable[[], int],
        settings: FederationSettings,
    ) -> None:
        """``routes()`` gives the peer table (the one federation read last: a change is
        applied by a nudge); what a ``StoreFailure`` ends, a worker or an expiry tick, is
        tried again later."""
        self._name = name
        self._store = store
        self._pool = pool
        self._routes = routes
        self._clock_ms = clock_ms
        self._settings = settings
        self._workers: dict[str, _Worker] = {}
        self._early: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._notes: dict[str, tuple[str, str]] = {}
        #: None: this process pushes every destination (it is the node's only one)
        self._leases: OutboxLeases | None = None

    def share(self, leases: OutboxLeases) -> None:
        """From now on push only the destinations whose lease ``leases`` says this process holds."""
        self._leases = leases

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the workers; start one for every destination with queued items now and at
        every expiry tick (when each settles its expired items), until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.wake(self._early)
            self._early.clear()
            task_status.started()
            while True:
                await self.expire()
                await trio.sleep(self._settings.expire_interval_s)

    def wake(self, dests: Iterable[str]) -> None:
        """New items were committed for these destinations."""
        if self._leases is None:
            self._start(dests)
            return
        dests = set(dests)
        held = {d for d in dests if self._leases.holds(d)}
        if dests - held:
            self._leases.elsewhere(dests - held)
        self._start(held)

    def wake_held(self, dests: Iterable[str]) -> None:
        """Items may wait for these destinations (another process queued them, or this one
        just took their leases): start or wake the workers of those this process holds."""
        leases = self._leases
        self._start(d for d in dests if leases is None or leases.holds(d))

    def revoke(self, dest: str) -> None:
        """This process lost ``dest``'s lease: its worker stops (a push in flight is
        abandoned; its items stay queued for the new holder)."""
        worker = self._workers.pop(dest, None)
        if worker is not None:
            worker.scope.cancel()
        self._notes.pop(dest, None)

    def _start(self, dests: Iterable[str]) -> None:
        for dest in dests:
            worker = self._workers.get(dest)
            if worker is not None:
                worker.woken = True
                worker.poke()  # ends its wait for a settle in flight: it reads again
            elif self._nursery is None:
                self._early.add(dest)
            else:
                worker = self._workers[dest] = _Worker()
                self._nursery.start_soon(self._work, dest, worker)

    def nudge(self) -> None:
        """The peer table changed: every waiting worker looks at its route again."""
        for worker in self._workers.values():
            worker.nudge()

    def note(self, dest: str) -> tuple[str, str] | None:
        """(code, message) of why items for ``dest`` wait: the last failed attempt, or no route."""
        return self._notes.get(dest)

    async def expire(self) -> None:
        """One expiry tick: every destination with queued items gets its worker going, which
        settles its expired items first; expired dedup keys and old delivery rows go."""
        try:
            self.wake_held(await self._store.outbox_destinations())
            for worker in self._workers.values():
                worker.expire_due = True
                worker.nudge()
            await self._store.expire_outbox(now=self._clock_ms())
        except StoreFailure as exc:
            log.warning("outbox expiry failed, retrying in %g s: %s", self._settings.expire_interval_s, exc)

    async def _work(self, dest: str, worker: _Worker) -> None:
        try:
            with worker.scope:
                async with trio.open_nursery() as nursery:  # (a settle in flight is awaited)
                    try:
                        await self._push_loop(dest, worker, nursery)
                    except StoreFailure as exc:
                        log.warning("outbox worker for %s stopped, it starts again with the next expiry tick: %s", dest, exc)
        finally:
            ended = self._workers.get(dest) is worker  # (a revoked one is gone already)
            if ended:
                del self._workers[dest]
                self._notes.pop(dest, None)
        if ended and worker.woken:
            # items committed while it was ending (past its last look at ``woken``): they do
            # not wait for the next expiry tick
            self.wake_held([dest])
            again = self._workers.get(dest)
            if again is not None and worker.expire_due:
                again.expire_due = True  # what the tick asked of the one that ended

    async def _push_loop(self, dest: str, worker: _Worker, nursery: trio.Nursery) -> None:
        # Up to ``pushes_in_flight`` pushes are on their way at once (``in_flight``, oldest
        # first); their answers are taken in the order sent. ``read_from`` is the last seq
        # handed over, so the next push reads past the items in flight and being settled. The
        # settles (outbox_done transactions) run one at a time, in order, beside the pushes.
        # ``read_all_to``: a complete read (Page.complete) ended at this seq and nothing was
        # queued since (every commit that queues wakes the worker): reading past it again
        # would find nothing, so the worker does not ask the store until it is woken.
        in_flight: deque[_InFlight] = deque()
        read_from = 0
        read_all_to: int | None = None
        settling = _Settling.idle()
        while True:
            if in_flight and (len(in_flight) >= self._settings.pushes_in_flight or in_flight[-1].alone):
                settling, failed = await self._answered(in_flight, settling, worker, nursery)
                if failed is not None:
                    read_from, read_all_to = failed, None
                continue
            # (asked before ``woken`` is cleared: a wake-up since the last read is not lost)
            nothing_new = read_all_to == read_from and not worker.woken
            # Before the reads: a wake-up or a nudge during them is not lost.
            worker.woken = False
            worker.nudged = trio.Event()
            worker.poked = trio.Event()
            if worker.expire_due:
                while in_flight:  # nothing expires behind the back of its own push
                    settling, _ = await self._answered(in_flight, settling, worker, nursery)
                await settling.wait()
                read_from, read_all_to = 0, None  # the items kept for a later try (RETRY_LATER) are read again
                worker.waiting_groups.clear()
                # Due until a call found none (True: there may be more). A store error leaves
                # it due: a worker started again by a wake-up settles the expired items first.
                if not await self._expire(dest):
                    worker.expire_due = False
                continue
            if nothing_new:
                items: list[QueuedItem] = []
            else:
                page = await self._store.outbox(
                    dest, limit=limits.MAX_TRANSIT_PER_PUSH, max_bytes=limits.MAX_PUSH_BYTES, now=self._clock_ms(), after=read_from
                )
                items = page
                # (a plain list, from a test double, is never known complete)
                read_all_to = (page[-1].seq if page else read_from) if isinstance(page, Page) and page.complete else None
            if not items and in_flight:
                if not worker.woken and self._may_go_beside(in_flight):
                    # New items end this wait too: a small push may go beside the one in
                    # flight rather than wait for its whole round trip.
                    oldest = in_flight[0]
                    await worker.until(lambda: oldest.answered or worker.interrupted())
                    if not in_flight[0].answered:
                        continue
                settling, failed = await self._answered(in_flight, settling, worker, nursery)
                if failed is not None:
                    read_from, read_all_to = failed, None
                continue
            if not items:
                if not worker.woken:  # new items end the wait for the settle in flight
                    finished = settling.finished
                    await worker.until(lambda: finished.is_set() or worker.interrupted())
                if worker.woken or not settling.finished.is_set():
                    continue
                await settling.wait()  # its store error, if any, ends the worker
                return
            hop = (await self._routes()).next_hop(dest)
            if hop is None or self._pool.backing_off(hop.name):
                if in_flight:  # their answers first: they may change the picture
                    settling, failed = await self._answered(in_flight, settling, worker, nursery)
                    if failed is not None:
                        read_from, read_all_to = failed, None
                    continue
            if hop is None:
                # Kept, not failed: the operator may be re-adding the peer (a changed pin).
                # A peer-table change or an expiry tick nudges the worker; expiry fails them.
                self._notes[dest] = unroutable_note(dest)
                await worker.nudged.wait()
                continue
            if self._pool.backing_off(hop.name):
                await self._wait_ready(worker, hop.name)
                continue  # the route may have changed meanwhile
            push = await self._prepare(dest, items, worker.waiting_groups, after=read_from, recheck=worker.recheck)
            if push is None:
                continue  # an unreadable item was dropped: read again
            if in_flight and (
                push.alone or not in_flight[-1].sent or (len(in_flight) >= SMALL_IN_FLIGHT and not _fills_half(items))
            ):
                # A group submission waits for the answers before it. So does a small push
                # behind SMALL_IN_FLIGHT: more small pushes cost both nodes per-push work for
                # few envelopes, while those waiting gather into the next one; a backlog
                # (half-full pushes and more) is worth all pushes_in_flight. And any push after
                # one that failed before it went out: it must not overtake it.
                settling, failed = await self._answered(in_flight, settling, worker, nursery)
                if failed is not None:
                    read_from, read_all_to = failed, None
                continue
            read_from = items[-1].seq
            if push.transits:
                follows = in_flight[-1].link if in_flight else None  # the link those before it took
                in_flight.append(push)
                nursery.start_soon(push.run, self._deliver, dest, hop, worker.waiting_groups, follows, worker.wake)
                await push.handed_over.wait()  # the worker's pushes go out in the order read

    def _may_go_beside(self, in_flight: deque[_InFlight]) -> bool:
        """Whether a small push read now could go beside those in flight (the rule below)."""
        last = in_flight[-1]
        return last.sent and not last.alone and len(in_flight) < min(SMALL_IN_FLIGHT, self._settings.pushes_in_flight)

    async def _answered(
        self, in_flight: deque[_InFlight], settling: _Settling, worker: _Worker, nursery: trio.Nursery
    ) -> tuple[_Settling, int | None]:
        """Take the answer of the oldest push in flight: once taken, its settle starts (after
        the one before it). If it was not taken, the pushes after it are answered too (those
        taken are settled: the receiver refuses every push after one it did not take, so that
        happens only after a lost link or a timeout) and, once every settle is done, the
        worker reads again from where that push read (returned; None while all goes well)."""
        first = in_flight.popleft()
        result = await first.answer()
        if callable(result):
            worker.held_back, worker.recheck = 0, False
            return await self._settle_next(settling, result, nursery, worker.wake), None
        worker.recheck = result is None
        while in_flight:
            later = await in_flight.popleft().answer()
            if callable(later):
                settling = await self._settle_next(settling, later, nursery, worker.wake)
        await settling.wait()
        if isinstance(result, _HeldBack):  # the hop has no room for them now: this worker waits
            worker.held_back += 1
            await self._hold_back(worker)
        return settling, first.after

    @staticmethod
    async def _settle_next(
        settling: _Settling, settle: Callable[[], Awaitable[None]], nursery: trio.Nursery, wake: Callable[[], None]
    ) -> _Settling:
        """Queue ``settle`` to run after ``settling`` (at most one runs at a time, in order).
        The worker goes on pushing meanwhile: the next push does not wait for the store to
        delete what the last one delivered (it did: under light load each push waited for
        the settle of the one before, tens of ms on a loaded machine). It waits only when two settles are still queued, so
        the settles keep pace with the pushes."""
        if settling.before is not None:
            await settling.before.wait()
        settling.raise_failure()
        following = _Settling(before=None if settling.finished.is_set() else settling)
        nursery.start_soon(following.run, settle, wake)
        return following

    async def _hold_back(self, worker: _Worker) -> None:
        """After a storage-budget refusal: until the doubling delay is over or a nudge comes
        (an expiry tick, a peer-table change). New items do not end it: a flood towards a full
        relay would otherwise be pushed at it as fast as it comes."""
        settings = self._settings
        delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** min(worker.held_back - 1, 32))
        await _first_of(worker.nudged.wait, lambda: trio.sleep(delay))

    async def _wait_ready(self, worker: _Worker, hop: str) -> None:
        """Until ``hop``'s backoff is over (or reset) or the worker is nudged."""
        await _first_of(worker.nudged.wait, lambda: self._pool.wait_ready(hop))

    async def _expire(self, dest: str) -> bool:
        """Settle a batch of ``dest``'s expired items in one store transaction (those that do
        not decode are dropped in one of their own first); False if it had none."""
        now = self._clock_ms()
        items = await self._store.expired_outbox(
            dest, limit=limits.MAX_TRANSIT_PER_PUSH, max_bytes=limits.MAX_PUSH_BYTES, now=now
        )
        if not items:
            return False
        transits: list[Transit] = []  # the envelopes: an expired report just goes
        unreadable: list[int] = []
        for item in items:
            try:  # every check(): a report is made of it (rare enough to check again)
                transit = decode_transit(item.data)
            except RemoteProtocolError as exc:  # it goes too (a damaged row, a check tightened since)
                log.error("dropping an unreadable outbox item for %s: %s", dest, exc)
                unreadable.append(item.seq)
                continue
            if transit.envelope is not None:
                transits.append(transit)
        if unreadable:
            await self._drop_unreadable(dest, unreadable)
        readable = [i.seq for i in items if i.seq not in unreadable]
        if readable:
            await self._settle(dest, readable, transits, ["expired"] * len(transits), final=True, now=now)
        log.info("%d outbox items for %s expired", len(items), dest)
        return True

    async def _prepare(
        self, dest: str, items: list[QueuedItem], waiting_groups: set[bytes], *, after: int, recheck: bool = False
    ) -> _InFlight | None:
        """The push of ``items`` (read after seq ``after``), without the submissions of
        ``waiting_groups`` (they stay queued unpushed); None if an unreadable item was
        dropped instead (a damaged database; with ``recheck`` also an item that fails a
        check(), e.g. one tightened since it was queued)."""
        transits: list[Transit] = []
        pushing: list[QueuedItem] = []
        read = decode_transit if recheck else read_queued
        for item in items:
            try:
                transit = read(item.data)
            except RemoteProtocolError as exc:
                log.error("dropping an unreadable outbox item for %s: %s", dest, exc)
                await self._drop_unreadable(dest, [item.seq])
                return None
            if _submission_of(transit) in waiting_groups:
                continue  # behind an earlier one of its group: both go at the next expiry tick
            transits.append(transit)
            pushing.append(item)
        return _InFlight(pushing, transits, after=after)

    async def _drop_unreadable(self, dest: str, seqs: list[int]) -> None:
        """Delete the items ``seqs`` whose bytes do not decode; a sending device's envelope
        among them has its delivery row failed ``UNREADABLE`` in the same transaction (it
        never went out: no outcome or report will ever settle it)."""
        await self._store.outbox_done(dest, seqs, now=self._clock_ms(), failed=dict.fromkeys(seqs, UNREADABLE))

    async def _deliver(
        self,
        dest: str,
        hop: Peer,
        items: list[QueuedItem],
        transits: list[Transit],
        waiting_groups: set[bytes],
        sent: Callable[[object], object],
        follows: object | None,
    ) -> Callable[[], Awaitable[None]] | _HeldBack | None:
        """Push ``transits`` (of ``items``) to ``hop``; once taken, what settles them (the
        caller runs it), else None (nothing changed, the failure is noted and, unless the hop
        only refused it behind an earlier push, the hop backs off) or ``_HELD_BACK`` (the hop
        refused them for a storage budget; noted, no backoff). The groups whose submissions
        the hop takes later are added to ``waiting_groups``. ``follows``: the link the push
        before it went on, which it must take too (LinkPool.request)."""
        # the stored bytes go out as they are (decoded above only to read them; wire.encoded)
        push = Push(request=0, items=tuple(encoded(Transit, item.data) for item in items))
        try:
            if follows is None:  # (the pool's test fakes know no ``follows``)
                answer = await self._pool.request(hop, push, sent=sent)
            else:
                answer = await self._pool.request(hop, push, sent=sent, follows=follows)  # type: ignore[arg-type]
        except FederationError as exc:  # the pool recorded it and backs off
            self._notes[dest] = (exc.code, str(exc))
            return None
        if isinstance(answer, ErrorFrame) and answer.code == OUT_OF_ORDER:
            return None  # behind a push the hop did not take: pushed again after it
        if isinstance(answer, ErrorFrame) and answer.code in BUDGET_CODES:
            self._pool.seen(hop.name)  # it answered: the link is fine, other items may go
            self._notes[dest] = (answer.code, f"{hop.name} has no room for them now: {answer.message}")
            return _HELD_BACK
        if isinstance(answer, ErrorFrame):  # e.g. rate_limited: try again later
            self._failed(dest, hop, answer.code, f"{hop.name} did not take the items: {answer.message}")
            return None
        if not (
            isinstance(answer, PushResult)
            and len(answer.outcomes) == len(transits)
            and all(o == OK or o in REFUSALS or o in RETRY_LATER for o in answer.outcomes)
        ):
            self._failed(dest, hop, "invalid", f"{hop.name} answered a push with an invalid {type(answer).__name__}")
            return None
        self._pool.seen(hop.name)  # it answered: its backoff starts from the beginning again
        later = next((o for o in answer.outcomes if o in RETRY_LATER), None)
        if later is None:
            self._notes.pop(dest, None)
        else:
            self._notes[dest] = (later, f"{hop.name} takes some group items later: {RETRY_LATER[later]}")
        # items refused for now are not settled: they stay queued (pushed again at the next expiry tick)
        waiting_groups.update(g for t, o in zip(transits, answer.outcomes) if o in RETRY_LATER and (g := _submission_of(t)) is not None)
        settled = [(i, t, o) for i, t, o in zip(items, transits, answer.outcomes) if o not in RETRY_LATER]
        seqs, transits, outcomes, now = [i.seq for i, _, _ in settled], [t for _, t, _ in settled], tuple(o for _, _, o in settled), self._clock_ms()
        return lambda: self._settle(dest, seqs, transits, outcomes, final=hop.name == dest, now=now)

    def _failed(self, dest: str, hop: Peer, code: str, message: str) -> None:
        self._notes[dest] = (code, message)
        self._pool.setback(hop.name, code, message)

    async def _settle(
        self, dest: str, seqs: list[int], transits: list[Transit], outcomes: Iterable[str], *, final: bool, now: int
    ) -> None:
        """Delete the items ``seqs``; the final outcomes of ``transits`` (of those items)
        become statuses or reports, in the same store transaction."""
        statuses: list[StatusUpdate] = []
        reports: list[OutboundItem] = []
        for item, outcome in zip(transits, outcomes):
            env = item.envelope
            if env is None:
                if outcome != OK:  # nobody to tell about a report or group item that went astray
                    log.info("a %s for %s was refused by the next hop: %s", "report" if item.report else "group item", dest, outcome)
                continue
            if outcome == OK and not final:
                continue  # a relay holds it now; the node that delivers it reports
            if item.origin == self._name:
                accepted = outcome == OK
                statuses.append(
                    StatusUpdate(
                        id=env.id,
                        account=env.to,
                        device=env.device,
                        state="accepted" if accepted else "failed",
                        code="" if accepted else outcome,
                        at=now,
                    )
                )
            else:
                try:
                    reports.append(report_item(item, outcome=outcome, reporter=self._name, now=now))
                except LocalProtocolError as exc:  # read without its check()s: it fails one now
                    log.error("no report of an outbox item for %s to %s: %s", dest, item.origin, exc)
        await self._store.outbox_done(dest, seqs, now=now, statuses=statuses, reports=reports)
        self.wake({r.dest for r in reports})
