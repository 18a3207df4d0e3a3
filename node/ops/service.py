"""The operations listener's answers: ``/metrics``, ``/health``, ``/ready``.

- ``/health``: 200 ``ok`` whenever the process's event loop runs (it answers at all).
- ``/ready``: 200 ``ready`` when the store answers a trivial read within READY_DEADLINE_S, the
  database file is still the one the node opened (SQLite: not removed or replaced under it) and
  the disk holds more than the storage reserve; otherwise 503 with one line saying which.
- ``/metrics``: the Prometheus text exposition of the node's own registry (gauges refreshed
  first, under their own deadline; rendered at most every 100 ms, shared by the scrapes that
  wait for it; see node/ops/metrics.py), at most METRICS_RATE per source address (429 past it).
- any other path 404; any other method 405 (node/ops/http.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from prometheus_client import CONTENT_TYPE_LATEST

from sonet.core.ratelimit import Rate

from .http import Handler, Response
from .metrics import NodeMetrics

__all__ = ["Readiness", "ops_handler", "READY_DEADLINE_S", "METRICS_RATE", "RATES"]

log = logging.getLogger("sonet.node.ops")

#: how long the store may take to answer the readiness probe
READY_DEADLINE_S = 2.0
#: /metrics per source address (node/ops/http.py ``rates``): Prometheus scrapes every few
#: seconds; past this a 429, which costs the node no render
METRICS_RATE = Rate(per_second=10, burst=20)
RATES = {"/metrics": METRICS_RATE}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Probe:
    """One run of the store probe: ``done`` once it ended, with its ``reason`` (None: it answered)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reason: str | None = None


class Readiness:
    """Whether the node can do its work now; ``check()`` is None or the reason it cannot."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        database: Path | None = None,
        disk_free: Callable[[], int] | None = None,
        reserve_bytes: int = 0,
        deadline_s: float = READY_DEADLINE_S,
        nursery: trio.Nursery | None = None,
    ) -> None:
        """``probe``: a trivial store read; ``database``: the SQLite file the store opened
        (None for a server database); ``disk_free``: free bytes where the data lives;
        ``nursery``: where the probe runs, so that the answer never waits for a store call that
        cannot be cancelled (a store call in a worker thread, e.g. PostgreSQL on a server that
        stopped answering): past the deadline /ready says so while that one probe goes on, and
        no second one is started beside it. Without it the probe runs in ``check``."""
        self._probe = probe
        self._database = database
        self._inode = os.stat(database).st_ino if database is not None else None
        self._disk_free = disk_free
        self._reserve = reserve_bytes
        self._deadline_s = deadline_s
        self._nursery = nursery
        self._running: _Probe | None = None

    async def _run_probe(self, run: _Probe) -> None:
        try:
            try:
                await self._probe()
            except Exception as exc:
                run.reason = f"database unreachable: {_one_line(exc)}"
            run.done.set()  # not when cancelled: that probe did not answer
        finally:
            if self._running is run:
                self._running = None

    async def _store_reason(self) -> str | None:
        if self._nursery is None:
            run = _Probe()
            with trio.move_on_after(self._deadline_s):
                await self._run_probe(run)
        else:
            run = self._running or _Probe()
            if self._running is None:
                self._running = run
                self._nursery.start_soon(self._run_probe, run)
            with trio.move_on_after(self._deadline_s):
                await run.done.wait()
        if not run.done.is_set():
            return f"database unreachable: no answer within {self._deadline_s:g} s"
        return run.reason

    async def check(self) -> str | None:
        if self._database is not None:
            try:
                inode = os.stat(self._database).st_ino
            except OSError as exc:
                return f"database unreachable: {self._database.name}: {exc.strerror or exc}"
            if inode != self._inode:
                return f"database unreachable: {self._database.name} was replaced since the node opened it (restart the node)"
        reason = await self._store_reason()
        if reason is not None:
            return reason
        if self._disk_free is not None:
            try:
                free = self._disk_free()
            except OSError as exc:
                return f"disk unreadable: {exc.strerror or exc}"
            if free < max(self._reserve, 1):
                return f"disk full: {free} bytes free, the reserve is {self._reserve} bytes"
        return None


def ops_handler(metrics: NodeMetrics, readiness: Readiness) -> Handler:
    """What the operations listener answers."""

    async def answer(path: str) -> Response:
        if path == "/health":
            return Response(200, b"ok\n")
        if path == "/ready":
            reason = await readiness.check()
            if reason is not None:
                log.debug("not ready: %s", reason)
                return Response(503, f"not ready: {reason}\n".encode())
            return Response(200, b"ready\n")
        if path == "/metrics":
            return Response(200, await metrics.scrape(), CONTENT_TYPE_LATEST)
        return Response(404, b"not found: /metrics, /health and /ready are served here\n")

    return answer
