"""Review of the operations surface: the live gauges stay valid exposition whatever the peers'
names (one series per label set; Prometheus drops a repeated one), and a scrape does not wait
for a store call that hangs in a worker thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from sonet.node.ops import NodeMetrics
from sonet.node.ops import metrics as metrics_module
from sonet.node.ops.metrics import MAX_LABEL_VALUES, LiveSources

NOW_MS = 1_000_000_000
#: a hung read's thread gives up after this long whatever happens (a guard, not a measure)
HANG_S = 60.0


@dataclass
class _Item:
    queued_at: int


class _Store:
    """What the gauges read: the oldest queued item per peer (its age: the peer's index, in
    seconds), and no key-directory head."""

    def __init__(self, ages: dict[str, int]) -> None:
        self.ages = ages

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[_Item]:
        return [_Item(now - self.ages[dest] * 1000)]

    async def latest_head(self) -> None:
        return None

    async def cosigned_head(self, *, min_size: int) -> None:
        return None


def _series(metrics: NodeMetrics, name: str) -> list[tuple[str, float]]:
    text = metrics.exposition().decode()
    return [
        (s.labels["peer"], s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def test_peers_whose_names_are_not_labels_share_one_other_series() -> None:
    # node names may be 253 characters; a label is at most 63: both become "other"
    long_a, long_b = "a" * 70 + ".example", "b" * 70 + ".example"
    queued = {long_a: 3, long_b: 4, "beta.example": 5}
    ages = {long_a: 30, long_b: 20, "beta.example": 10}
    metrics = NodeMetrics()
    metrics.live.sources = LiveSources(
        connections=dict, store=_Store(ages), outbox_counts=lambda: queued, clock_ms=lambda: NOW_MS
    )
    await metrics.live.refresh()
    depth = _series(metrics, "sonet_outbox_depth")
    assert sorted(depth) == [("beta.example", 5), ("other", 7)]  # summed, not repeated
    oldest = _series(metrics, "sonet_outbox_oldest_age_seconds")
    assert sorted(oldest) == [("beta.example", 10), ("other", 30)]  # the oldest of them


async def test_more_peers_than_label_values_give_one_series_each() -> None:
    names = [f"peer{n:03}.example" for n in range(MAX_LABEL_VALUES + 5)]
    queued = dict.fromkeys(names, 1)
    metrics = NodeMetrics()
    metrics.live.sources = LiveSources(
        connections=dict, store=_Store(dict.fromkeys(names, 1)), outbox_counts=lambda: queued, clock_ms=lambda: NOW_MS
    )
    await metrics.live.refresh()
    for name in ("sonet_outbox_depth", "sonet_outbox_oldest_age_seconds"):
        labels = [label for label, _ in _series(metrics, name)]
        assert len(labels) == len(set(labels)), f"{name} repeats a series"
        assert len(labels) <= MAX_LABEL_VALUES + 1


class _HungStore(_Store):
    """The oldest-item read hangs in a worker thread (not abandoned) until released."""

    def __init__(self, ages: dict[str, int], release: threading.Event, ended: list[int]) -> None:
        super().__init__(ages)
        self.release, self.ended, self.reads = release, ended, 0

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[_Item]:
        self.reads += 1

        def hang() -> None:
            self.release.wait(HANG_S)
            self.ended.append(1)

        await trio.to_thread.run_sync(hang)
        return await super().outbox(dest, limit=limit, max_bytes=max_bytes, now=now)


async def test_a_scrape_does_not_wait_for_a_hung_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "REFRESH_DEADLINE_S", 0.05)
    release, ended = threading.Event(), []
    store = _HungStore({"beta.example": 7}, release, ended)
    metrics = NodeMetrics()
    async with trio.open_nursery() as nursery:
        metrics.live.nursery = nursery
        metrics.live.sources = LiveSources(
            connections=dict, store=store, outbox_counts=lambda: {"beta.example": 2}, clock_ms=lambda: NOW_MS
        )
        await metrics.live.refresh()
        await metrics.live.refresh()  # while the first read hangs: waits on it, starts no other
        answered_while_hung = not ended
        exposition = metrics.exposition().decode()  # served with what is known
        release.set()
        while metrics.live._running is not None:
            await trio.sleep(0.01)
    assert answered_while_hung and store.reads == 1
    assert 'sonet_outbox_depth{peer="beta.example"} 2.0' in exposition
    assert _series(metrics, "sonet_outbox_oldest_age_seconds") == [("beta.example", 7)]  # the read landed after
