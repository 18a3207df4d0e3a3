"""Review of the operations surface: the live gauges stay valid exposition whatever the peers'
names (one series per label set; Prometheus drops a repeated one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from sonet.node.ops import NodeMetrics
from sonet.node.ops.metrics import MAX_LABEL_VALUES, LiveSources

NOW_MS = 1_000_000_000


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
