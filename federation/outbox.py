"""Outbox workers: one per destination node with queued items (ARCHITECTURE §6).

A worker pushes its destination's items oldest first, one Push in flight (so their order is
kept), to the next hop: the destination itself or the relay its peer entry names. Nothing is
deleted before the PushResult: then, in one store transaction, the items go, their outcomes
become delivery statuses (items this node originated) or reports queued back to the origin
(items it relays). Only the push to the destination itself makes an envelope "accepted"; a
relay's "ok" only means it holds the item now. Any failure keeps the items and backs off
(federation/pool.py). A destination that is no longer configured fails its items as
"unroutable". Expired items are dropped periodically; relayed ones are reported "expired".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from core import limits
from core.client_api import ErrorFrame
from core.errors import RemoteProtocolError
from core.federation_api import OK, REFUSALS, Push, PushResult, Transit

from .errors import FederationError
from .peers import Peer
from .pool import LinkPool
from .records import OutboundItem, QueuedItem, StatusUpdate
from .routes import Routes
from .settings import FederationSettings
from .transit import decode_transit, report_item

__all__ = ["Outboxes"]

log = logging.getLogger("sonet.federation")


class Outboxes:
    def __init__(
        self,
        *,
        name: str,
        store: Any,
        pool: LinkPool,
        routes: Callable[[], Awaitable[Routes]],
        quota: Any,
        clock_ms: Callable[[], int],
        settings: FederationSettings,
    ) -> None:
        """``routes()`` reads the current peer table; ``quota`` is what the store's enqueue
        wants (reports are queued through it; they never count towards a mailbox)."""
        self._name = name
        self._store = store
        self._pool = pool
        self._routes = routes
        self._quota = quota
        self._clock_ms = clock_ms
        self._settings = settings
        #: running workers: destination -> woken since the worker last read its outbox
        self._woken: dict[str, bool] = {}
        self._early: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._notes: dict[str, tuple[str, str]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start a worker for every destination with queued items, then expire items
        periodically, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.wake(await self._store.outbox_destinations())
            self.wake(self._early)
            self._early.clear()
            task_status.started()
            while True:
                await self.expire()
                await trio.sleep(self._settings.expire_interval_s)

    def wake(self, dests: Iterable[str]) -> None:
        """New items were committed for these destinations."""
        for dest in dests:
            if dest in self._woken:
                self._woken[dest] = True
            elif self._nursery is None:
                self._early.add(dest)
            else:
                self._woken[dest] = False
                self._nursery.start_soon(self._work, dest)

    def note(self, dest: str) -> tuple[str, str] | None:
        """(code, message) of the last failed attempt towards ``dest`` while items wait."""
        return self._notes.get(dest)

    async def _work(self, dest: str) -> None:
        try:
            while True:
                self._woken[dest] = False  # before the read: a wake-up during it is not lost
                items = await self._store.outbox(
                    dest, limit=limits.MAX_TRANSIT_PER_PUSH, max_bytes=limits.MAX_PUSH_BYTES, now=self._clock_ms()
                )
                if not items:
                    if self._woken[dest]:
                        continue
                    return
                hop = (await self._routes()).next_hop(dest)
                if hop is not None and self._pool.backing_off(hop.name):
                    await self._pool.wait_ready(hop.name)
                    continue  # the route may have changed meanwhile
                await self._deliver(dest, hop, items)
        finally:
            del self._woken[dest]
            self._notes.pop(dest, None)

    async def _deliver(self, dest: str, hop: Peer | None, items: list[QueuedItem]) -> None:
        transits: list[Transit] = []
        for item in items:
            try:
                transits.append(decode_transit(item.data))
            except RemoteProtocolError as exc:  # only a damaged database could hold one
                log.error("dropping an unreadable outbox item for %s: %s", dest, exc)
                await self._store.outbox_done(dest, [item.seq], now=self._clock_ms())
                return
        if hop is None:
            await self._settle(dest, items, transits, ["unroutable"] * len(items), final=True)
            return
        try:
            answer = await self._pool.request(hop, Push(request=0, items=tuple(transits)))
        except FederationError as exc:  # the pool recorded it and backs off
            self._notes[dest] = (exc.code, str(exc))
            return
        if isinstance(answer, ErrorFrame):  # e.g. rate_limited: try again later
            self._failed(dest, hop, answer.code, f"{hop.name} did not take the items: {answer.message}")
            return
        if not (
            isinstance(answer, PushResult)
            and len(answer.outcomes) == len(transits)
            and all(o == OK or o in REFUSALS for o in answer.outcomes)
        ):
            self._failed(dest, hop, "invalid", f"{hop.name} answered a push with an invalid {type(answer).__name__}")
            return
        await self._settle(dest, items, transits, answer.outcomes, final=hop.name == dest)
        self._notes.pop(dest, None)

    def _failed(self, dest: str, hop: Peer, code: str, message: str) -> None:
        self._notes[dest] = (code, message)
        self._pool.setback(hop.name, code, message)

    async def _settle(
        self, dest: str, items: list[QueuedItem], transits: list[Transit], outcomes: Iterable[str], *, final: bool
    ) -> None:
        """Delete the pushed items; their final outcomes become statuses or reports."""
        now = self._clock_ms()
        statuses: list[StatusUpdate] = []
        reports: list[OutboundItem] = []
        for item, outcome in zip(transits, outcomes):
            env = item.envelope
            if env is None:
                if outcome != OK:  # nobody to tell about a report that went astray
                    log.info("a report for %s was refused by the next hop: %s", dest, outcome)
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
                reports.append(report_item(item, outcome=outcome, reporter=self._name, now=now))
        await self._store.outbox_done(dest, [i.seq for i in items], now=now, statuses=statuses, reports=reports)
        self.wake({r.dest for r in reports})

    async def expire(self) -> None:
        """Drop expired items; tell the origins of relayed envelopes that they expired here."""
        now = self._clock_ms()
        dropped = await self._store.expire_outbox(now=now)
        reports = []
        for item in dropped:
            try:
                transit = decode_transit(item.data)
            except RemoteProtocolError:
                continue
            if transit.envelope is not None and transit.origin != self._name:
                reports.append(report_item(transit, outcome="expired", reporter=self._name, now=now))
        if reports:
            await self._store.enqueue([], now=now, quota=self._quota, outbound=reports)
            self.wake({r.dest for r in reports})
        if dropped:
            log.info("dropped %d expired outbox items", len(dropped))
