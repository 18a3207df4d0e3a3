"""The node's Prometheus metrics, on a registry of its own (never the process-global one).

Counters move where things happen, at the cost of one increment: envelopes and store latency
through ``ObservedStore`` (node/ops/observed_store.py), handshakes where the node's router
completes one, refusals through the security-events seam (``sonet.transport.events``). Gauges
(connections open, outbox depth and oldest age per peer, key-directory size, witness state) are
read when scraped, by ``LiveState.refresh`` under a deadline and at most once per
``REFRESH_S``, so a scrape costs a bounded number of small store reads; and the exposition is
rendered at most once per ``MIN_RENDER_INTERVAL_S``, shared by the scrapes that wait for it
(``NodeMetrics.scrape``), so a flood of scrapes cannot keep the event loop rendering.

Labels are codes, endpoint kinds, operation names and node names (peers, witnesses): never a
user address, a device key or fingerprint, an envelope id or a sender.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sonet.core.errors import ProtocolError
from sonet.core.keydir import decode_cosignature

__all__ = ["NodeMetrics", "LiveState", "LiveSources", "label_value", "MAX_LABEL_VALUES", "MIN_RENDER_INTERVAL_S", "REFRESH_S"]

log = logging.getLogger("sonet.node.ops")

#: distinct values one label of one metric takes; the rest are counted as "other"
MAX_LABEL_VALUES = 64
#: /metrics renders the exposition at most this often (seconds; NodeMetrics.scrape)
MIN_RENDER_INTERVAL_S = 0.1
#: the store-derived gauges are read again after this long at most once
REFRESH_S = 2.0
#: how long one refresh may take; a slower store leaves the last values in place
REFRESH_DEADLINE_S = 2.0
#: destinations whose oldest queued item is looked up per refresh
MAX_OUTBOX_PEERS = 64
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,62}")
#: store latency buckets (seconds): a fast read is ~0.1 ms, a batched fsync some ms
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def label_value(value: object, seen: set[str]) -> str:
    """``value`` as a label when it looks like a code or a node name and fewer than
    MAX_LABEL_VALUES were seen; "other" otherwise (bounds cardinality and keeps anything
    that is not a short lower-case token, a key in base64 for instance, out of the labels)."""
    text = str(value) if isinstance(value, str) else ""
    if not _LABEL.fullmatch(text):
        return "other"
    if text not in seen:
        if len(seen) >= MAX_LABEL_VALUES:
            return "other"
        seen.add(text)
    return text


class NodeMetrics:
    """Every metric of one node, on ``self.registry``."""

    def __init__(self) -> None:
        # No `*_created` series (prometheus-client adds one per counter and histogram by
        # default: twice the series, none of them in docs/operations.md's table). Process-wide:
        # the node is this process's only user of prometheus-client.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.handshakes = Counter(
            "sonet_handshakes", "Handshakes completed on the node's port, by endpoint (device, peer)", ["endpoint"], registry=r
        )
        self.handshake_failures = Counter(
            "sonet_handshake_failures", "Handshakes that failed or were refused, by reason code", ["reason"], registry=r
        )
        self.connections_refused = Counter(
            "sonet_connections_refused", "Connections refused or cut before a handshake, by reason", ["reason"], registry=r
        )
        self.envelopes_in = Counter(
            "sonet_envelopes_in", "Envelopes accepted and stored, by source (device, peer)", ["source"], registry=r
        )
        self.envelopes_out = Counter(
            "sonet_envelopes_out",
            "Envelopes handed on: acknowledged by a device, or accepted by the next hop (peer)",
            ["destination"],
            registry=r,
        )
        self.envelopes_expired = Counter(
            "sonet_envelopes_expired", "Envelopes dropped at their expiry, by where they waited (mailbox, outbox)", ["where"], registry=r
        )
        self.rate_limited = Counter(
            "sonet_rate_limit_refusals", "Requests refused by a rate limit or budget, by limit", ["limit"], registry=r
        )
        self.directory_alarms = Counter(
            "sonet_directory_alarms", "Key-directory alarms (split views, disagreeing witnesses), by kind", ["kind"], registry=r
        )
        self.store_seconds = Histogram(
            "sonet_store_operation_seconds", "Latency of store operations, by operation", ["operation"], buckets=STORE_BUCKETS, registry=r
        )
        self._seen: dict[str, set[str]] = {}
        # the hot paths increment these children (no label lookup per envelope)
        self.in_device = self.envelopes_in.labels("device")
        self.in_peer = self.envelopes_in.labels("peer")
        self.out_device = self.envelopes_out.labels("device")
        self.out_peer = self.envelopes_out.labels("peer")
        self.expired_mailbox = self.envelopes_expired.labels("mailbox")
        self.expired_outbox = self.envelopes_expired.labels("outbox")
        self.handshake_device = self.handshakes.labels("device")
        self.handshake_peer = self.handshakes.labels("peer")
        self.live = LiveState()
        r.register(self.live)
        #: the last render for /metrics: (trio time it started, the exposition)
        self._rendered: tuple[float, bytes] | None = None
        self._render_due = float("-inf")
        #: set when the render under way ended
        self._rendering: trio.Event | None = None

    def _label(self, metric: str, value: object) -> str:
        return label_value(value, self._seen.setdefault(metric, set()))

    def on_security_event(self, kind: str, fields: Mapping[str, object]) -> None:
        """Subscriber of ``sonet.transport.events``: counts each event by its code (the
        fields naming an actor, an address or a peer's key are never read)."""
        if kind == "handshake_refused":
            self.handshake_failures.labels(self._label("hf", fields.get("code"))).inc()
        elif kind == "connection_refused":
            self.connections_refused.labels(self._label("cr", fields.get("code"))).inc()
        elif kind == "rate_limited":
            self.rate_limited.labels(self._label("rl", fields.get("limit", fields.get("code")))).inc()
        elif kind == "directory_alarm":
            self.directory_alarms.labels(self._label("da", fields.get("kind", fields.get("code")))).inc()
        elif kind == "wrong_identity":
            self.handshake_failures.labels("wrong_identity").inc()
        elif kind == "refused_by_initiator":  # (its code is the other side's)
            self.handshake_failures.labels("refused_by_initiator").inc()

    def exposition(self) -> bytes:
        """The text exposition format, rendered now."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """What /metrics answers: the gauges refreshed (``LiveState.refresh``), then the
        exposition, rendered after this call began (never an older one). A render costs the
        event loop some ms, so renders start at most every MIN_RENDER_INTERVAL_S: a scrape
        that comes sooner waits for the next one, which every scrape waiting then shares (a
        flood of scrapes costs one render per interval, not one each)."""
        arrived = trio.current_time()
        while True:
            last = self._rendered
            if last is not None and last[0] >= arrived:
                return last[1]
            if self._rendering is not None:
                await self._rendering.wait()
                continue  # (a render cancelled with its scrape leaves the next one to us)
            self._rendering = rendering = trio.Event()
            try:
                await trio.sleep_until(self._render_due)
                await self.live.refresh()
                started = trio.current_time()
                self._rendered = (started, self.exposition())
                self._render_due = started + MIN_RENDER_INTERVAL_S
            finally:
                self._rendering = None
                rendering.set()


@dataclass
class LiveSources:
    """Where the gauges come from: set by the node once it runs."""

    #: the running node's connection counts, {kind: open}
    connections: Callable[[], Mapping[str, int]]
    #: the store (``latest_head``, ``cosigned_head``, ``outbox``)
    store: object
    #: items queued per destination (the federation's in-memory counts)
    outbox_counts: Callable[[], Mapping[str, int]]
    clock_ms: Callable[[], int]


@dataclass
class _Snapshot:
    outbox_oldest_age_s: dict[str, float] = field(default_factory=dict)
    directory_size: int | None = None
    #: witness -> (cosigned size, cosigned at ms)
    witnesses: dict[str, tuple[int, int]] = field(default_factory=dict)
    taken_at: float = float("-inf")


class LiveState(Collector):
    """The gauges, read from the running node when scraped (``refresh`` first, then
    ``collect``, which only reads what ``refresh`` took)."""

    def __init__(self) -> None:
        self.sources: LiveSources | None = None
        #: where a refresh's store reads run (set by the running node): a scrape then waits for
        #: them at most REFRESH_DEADLINE_S even when a store call cannot be cancelled (a worker
        #: thread on a database server that stopped answering); without it they run in refresh
        self.nursery: trio.Nursery | None = None
        self._snapshot = _Snapshot()
        #: the refresh under way, which concurrent scrapes share (done when it ended)
        self._running: trio.Event | None = None

    async def refresh(self) -> None:
        """Read the store-derived values again unless they are younger than REFRESH_S; a store
        that fails or does not answer in time leaves the last values (and a log line)."""
        sources = self.sources
        if sources is None or trio.current_time() - self._snapshot.taken_at < REFRESH_S:
            return
        running, start = (self._running, False) if self._running is not None else (trio.Event(), True)
        with trio.move_on_after(REFRESH_DEADLINE_S):
            if start:
                self._running = running
                if self.nursery is None:
                    await self._refresh(sources, running)
                else:
                    self.nursery.start_soon(self._refresh, sources, running)
            await running.wait()
        if not running.is_set():
            log.warning("metrics: the store did not answer within %g s; gauges keep their last values", REFRESH_DEADLINE_S)

    async def _refresh(self, sources: LiveSources, running: trio.Event) -> None:
        try:
            try:
                self._snapshot = await self._read(sources)
            except Exception as exc:  # the store's trouble is /ready's to report
                log.warning("metrics: cannot read the store: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            running.set()  # not when cancelled: then it did not answer
        finally:
            if self._running is running:
                self._running = None

    async def _read(self, sources: LiveSources) -> _Snapshot:
        store: object = sources.store
        snap = _Snapshot(taken_at=trio.current_time())
        now = sources.clock_ms()
        queued = [dest for dest, n in sorted(sources.outbox_counts().items()) if n > 0][:MAX_OUTBOX_PEERS]
        for dest in queued:
            items = await store.outbox(dest, limit=1, max_bytes=1 << 30, now=now)  # type: ignore[attr-defined]
            if items:
                snap.outbox_oldest_age_s[dest] = max(0.0, (now - items[0].queued_at) / 1000)
        heads = [await store.latest_head(), await store.cosigned_head(min_size=0)]  # type: ignore[attr-defined]
        if heads[0] is not None:
            snap.directory_size = heads[0].size
        for head in heads:
            for raw in head.cosignatures if head is not None else ():
                try:
                    c = decode_cosignature(raw)
                except ProtocolError:
                    continue
                if c.size >= snap.witnesses.get(c.witness, (-1, 0))[0]:
                    snap.witnesses[c.witness] = (c.size, c.at)
        return snap

    def collect(self) -> Iterable[Metric]:
        sources = self.sources
        if sources is None:
            return []
        snap = self._snapshot
        now_s = sources.clock_ms() / 1000
        connections = GaugeMetricFamily(
            "sonet_connections_open", "Connections open now, by kind (device, peer_inbound, peer_outbound)", labels=["kind"]
        )
        for kind, n in sorted(sources.connections().items()):
            connections.add_metric([kind], n)
        depth = GaugeMetricFamily("sonet_outbox_depth", "Items queued for a peer (next hop)", labels=["peer"])
        _add_by_label(depth, sorted(sources.outbox_counts().items())[:MAX_OUTBOX_PEERS], sum)
        oldest = GaugeMetricFamily(
            "sonet_outbox_oldest_age_seconds", "Age of the oldest item queued for a peer (as of the last refresh)", labels=["peer"]
        )
        _add_by_label(oldest, sorted(snap.outbox_oldest_age_s.items()), max)
        metrics: list[Metric] = [connections, depth, oldest]
        if snap.directory_size is not None:
            metrics.append(GaugeMetricFamily("sonet_key_directory_size", "Leaves in this node's key directory (newest signed head)", value=snap.directory_size))
        size = GaugeMetricFamily("sonet_witness_cosigned_size", "Tree size of the newest head a witness cosigned", labels=["witness"])
        age = GaugeMetricFamily("sonet_witness_cosigned_age_seconds", "Time since that cosignature", labels=["witness"])
        witnesses = sorted(snap.witnesses.items())
        _add_by_label(size, [(w, cosigned) for w, (cosigned, _at) in witnesses], max)
        _add_by_label(age, [(w, max(0.0, now_s - at / 1000)) for w, (_size, at) in witnesses], max)
        return [*metrics, size, age]


def _add_by_label(family: GaugeMetricFamily, values: Iterable[tuple[str, float]], combine: Callable[[list[float]], float]) -> None:
    """One sample per label: names that are not labels (too long, too many) all become "other",
    and their values are combined into its one sample (a repeated series is invalid exposition)."""
    seen: set[str] = set()
    by_label: dict[str, list[float]] = {}
    for name, value in values:
        by_label.setdefault(label_value(name, seen), []).append(value)
    for label, found in by_label.items():
        family.add_metric([label], combine(found))
