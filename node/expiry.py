"""The node drops every envelope when it expires, wherever it is (issue 17 item 4).

A disappearing message's envelope carries an ``expires`` seconds away; a purge each minute would
keep it up to a minute too long. This loop sleeps until the earliest expiry the store holds
(``Store.next_expiry``: mailboxes, the outbox, relay queues; group items live in mailboxes),
looking again at least every ``CHECK_S`` for envelopes stored meanwhile that expire sooner, and
then purges the mailboxes and has the outbox workers settle their expired items (the worker of a
destination that is down too). Everything else that expires (dedup records, invites, link
slots) goes with the full purge every ``full_interval_s``, or with an envelope's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from sonet.core.timer import wake_delay_s

from .store.base import StoreFailure

__all__ = ["expiry_loop", "CHECK_S"]

log = logging.getLogger("sonet.node")

#: the longest the loop sleeps without looking for a sooner expiry: a message stored with a
#: 5-second timer is dropped within this of its expiry at worst (at its expiry when stored
#: more than this before it)
CHECK_S = 1.0


async def expiry_loop(
    *,
    clock_ms: Callable[[], int],
    next_expiry: Callable[[int], Awaitable[int | None]],
    purge: Callable[[int], Awaitable[None]],
    expire_outbox: Callable[[], Awaitable[None]],
    full_interval_s: float,
) -> None:
    """Run until cancelled. ``next_expiry(after)``: the earliest expiry above ``after`` (ms);
    ``purge(now)``: drop what expired by ``now``; ``expire_outbox()``: have the outbox
    workers settle theirs (they do it in their own time: an item whose push is in flight goes
    when its answer came, so it is asked for once, not again until a later expiry)."""
    settled = clock_ms()  # everything expiring up to here was asked to go
    next_full = settled  # a full purge at once
    while True:
        now = clock_ms()
        try:
            due = await next_expiry(settled)
            if now >= next_full or (due is not None and due <= now):
                await purge(now)
                if due is not None and due <= now:
                    await expire_outbox()
                settled = now
                if now >= next_full:
                    next_full = now + int(full_interval_s * 1000)
                continue
        except StoreFailure as exc:  # a busy or full disk: the next round tries again
            log.warning("expiry purge failed, trying again in %g s: %s", CHECK_S, exc)
            due = None
        await trio.sleep(wake_delay_s(now, [due, next_full], longest_s=CHECK_S))
