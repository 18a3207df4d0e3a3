"""A store seen through the metrics: every async operation timed, envelopes counted.

``ObservedStore(store, metrics)`` forwards every attribute to ``store``; its coroutine methods
come back wrapped (made once per name, then cached): the latency goes to
``sonet_store_operation_seconds{operation}``, and the few operations that move envelopes add
their counts (one increment each, nothing allocated per envelope):

- ``enqueue`` (a device's send: stored for local devices and queued for other nodes) and
  ``group_submit``: envelopes in from a device; ``receive``: in from a peer;
- ``ack``: out to a device (the count it acknowledged); ``outbox_done``: out to a peer, less
  the items that went because they expired (``expired_outbox`` counts those as expired);
- ``purge_expired``: expired in mailboxes.

Works for any store backend: it knows the operations by name only.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from .metrics import NodeMetrics

S = TypeVar("S")

__all__ = ["ObservedStore"]

#: most destinations whose expired-and-unsettled seqs are remembered (a settle follows at once)
_MAX_EXPIRING_DESTS = 1024


class ObservedStore:
    def __init__(self, store: Any, metrics: NodeMetrics) -> None:
        self._store = store
        self._metrics = metrics
        #: dest -> seqs read by expired_outbox and not settled yet
        self._expiring: dict[str, set[int]] = {}

    @classmethod
    def around(cls, store: S, metrics: NodeMetrics) -> S:
        """``store`` observed, typed as the store it wraps (it answers every one of its calls)."""
        return cast(S, cls(store, metrics))

    @property
    def inner(self) -> Any:
        """The store itself."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attr):
            return attr
        wrapped = self._timed(name, attr)
        self.__dict__[name] = wrapped  # the next lookup finds it without __getattr__
        return wrapped

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        timer = self._metrics.store_seconds.labels(name)
        count = getattr(self, f"_count_{name}", None)
        clock = time.perf_counter

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = await fn(*args, **kwargs)
            finally:
                timer.observe(clock() - start)
            if count is not None:
                count(result, *args, **kwargs)
            return result

        timed.__name__ = name
        return timed

    # What each envelope-moving operation counts (called after it succeeded) -----------------

    def _count_enqueue(self, result: Any, envelopes: Any, **kwargs: Any) -> None:
        self._metrics.in_device.inc(len(envelopes) + len(kwargs.get("outbound", ())))

    def _count_group_submit(self, result: Any, *args: Any, **kwargs: Any) -> None:
        self._metrics.in_device.inc()

    def _count_receive(self, result: Any, items: Any, **kwargs: Any) -> None:
        self._metrics.in_peer.inc(len(items))

    def _count_ack(self, result: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(result, int) and result > 0:
            self._metrics.out_device.inc(result)

    def _count_purge_expired(self, result: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(result, int) and result > 0:
            self._metrics.expired_mailbox.inc(result)

    def _count_expired_outbox(self, result: Any, dest: str, **kwargs: Any) -> None:
        if result:
            self._metrics.expired_outbox.inc(len(result))
            if dest in self._expiring or len(self._expiring) < _MAX_EXPIRING_DESTS:
                self._expiring.setdefault(dest, set()).update(item.seq for item in result)

    def _count_outbox_done(self, result: Any, dest: str, seqs: Any, **kwargs: Any) -> None:
        expiring = self._expiring.get(dest)
        if expiring:
            settled = len(seqs)
            gone = expiring.intersection(seqs)
            expiring.difference_update(gone)
            if not expiring:
                del self._expiring[dest]
            settled -= len(gone)
            if settled > 0:
                self._metrics.out_peer.inc(settled)
        elif seqs:
            self._metrics.out_peer.inc(len(seqs))
