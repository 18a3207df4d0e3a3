"""NodeMetrics and ObservedStore without a node: what security events and store calls count,
and that labels hold codes only (no actor, address or key; bounded cardinality)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sonet.node.ops import NodeMetrics, ObservedStore
from sonet.node.ops.metrics import MAX_LABEL_VALUES


def _samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_security_events_count_by_code_and_never_label_the_actor() -> None:
    metrics = NodeMetrics()
    metrics.on_security_event("rate_limited", {"actor": "alice@alpha.example", "limit": "device_requests"})
    metrics.on_security_event("rate_limited", {"actor": "203.0.113.9", "limit": "device_requests"})
    metrics.on_security_event("handshake_refused", {"address": "203.0.113.9", "code": "bad_input"})
    metrics.on_security_event("connection_refused", {"address": "203.0.113.9", "code": "too_many_connections"})
    metrics.on_security_event("wrong_identity", {"peer": "beta.example", "code": "wrong_identity"})
    metrics.on_security_event("directory_alarm", {"peer": "beta.example", "kind": "split_view"})
    samples = _samples(metrics)
    assert samples[("sonet_rate_limit_refusals_total", (("limit", "device_requests"),))] == 2
    assert samples[("sonet_handshake_failures_total", (("reason", "bad_input"),))] == 1
    assert samples[("sonet_handshake_failures_total", (("reason", "wrong_identity"),))] == 1
    assert samples[("sonet_connections_refused_total", (("reason", "too_many_connections"),))] == 1
    assert samples[("sonet_directory_alarms_total", (("kind", "split_view"),))] == 1
    text = metrics.exposition().decode()
    assert "alice" not in text and "203.0.113.9" not in text
    assert "_created" not in text  # (newbie11: one more series per counter, in no table)


def test_labels_that_are_not_codes_or_too_many_become_other() -> None:
    metrics = NodeMetrics()
    metrics.on_security_event("handshake_refused", {"code": "q83vEjRWeJA+/w=="})  # base64: not a code
    metrics.on_security_event("handshake_refused", {"code": None})
    for n in range(MAX_LABEL_VALUES + 10):
        metrics.on_security_event("handshake_refused", {"code": f"code_{n}"})
    reasons = {dict(labels)["reason"]: v for (name, labels), v in _samples(metrics).items() if name == "sonet_handshake_failures_total"}
    assert len(reasons) == MAX_LABEL_VALUES + 1
    assert reasons["other"] == 2 + 10


@dataclass
class _Item:
    seq: int


class _FakeStore:
    """Answers the envelope-moving operations as a store would."""

    async def enqueue(self, envelopes: list, *, now: int, outbound: list | tuple = ()) -> int:
        return len(envelopes)

    async def receive(self, items: list, *, now: int) -> list[str]:
        return ["ok"] * len(items)

    async def ack(self, account: str, device_id: int, ids: list, *, now: int) -> int:
        return len(ids) - 1  # one of them had expired already

    async def purge_expired(self, *, now: int) -> int:
        return 3

    async def expired_outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[_Item]:
        return [_Item(7), _Item(8)]

    async def outbox_done(self, dest: str, seqs: list[int], *, now: int) -> None:
        return None

    async def failing(self) -> None:
        raise RuntimeError("down")

    kind = "fake"


async def test_the_store_proxy_counts_envelopes_and_times_every_operation() -> None:
    metrics = NodeMetrics()
    store = ObservedStore.around(_FakeStore(), metrics)
    assert store.kind == "fake"
    await store.enqueue([1, 2], now=0, outbound=[3])
    await store.receive([1, 2, 3, 4], now=0)
    await store.ack("a", 1, [b"x", b"y"], now=0)
    await store.purge_expired(now=0)
    await store.outbox_done("beta.example", [1, 2, 3], now=0)  # pushed and accepted
    await store.expired_outbox("beta.example", limit=10, max_bytes=1, now=0)
    await store.outbox_done("beta.example", [7, 8], now=0)  # the expired ones settled: not out
    try:
        await store.failing()
    except RuntimeError:
        pass
    samples = _samples(metrics)
    assert samples[("sonet_envelopes_in_total", (("source", "device"),))] == 3
    assert samples[("sonet_envelopes_in_total", (("source", "peer"),))] == 4
    assert samples[("sonet_envelopes_out_total", (("destination", "device"),))] == 1
    assert samples[("sonet_envelopes_out_total", (("destination", "peer"),))] == 3
    assert samples[("sonet_envelopes_expired_total", (("where", "mailbox"),))] == 3
    assert samples[("sonet_envelopes_expired_total", (("where", "outbox"),))] == 2
    assert samples[("sonet_store_operation_seconds_count", (("operation", "outbox_done"),))] == 2
    assert samples[("sonet_store_operation_seconds_count", (("operation", "failing"),))] == 1  # timed when it fails too


async def test_scrapes_share_renders_each_made_after_it_came(monkeypatch: pytest.MonkeyPatch) -> None:
    import trio

    from sonet.node.ops.metrics import MIN_RENDER_INTERVAL_S

    metrics = NodeMetrics()
    renders: list[float] = []
    render = metrics.exposition

    def counted() -> bytes:
        renders.append(trio.current_time())
        return render()

    monkeypatch.setattr(metrics, "exposition", counted)
    answers: list[bytes] = []

    async def scrape() -> None:
        answers.append(await metrics.scrape())

    async with trio.open_nursery() as nursery:  # a flood at once: one render for all of them
        for _ in range(50):
            nursery.start_soon(scrape)
    assert len(renders) == 1 and len(set(answers)) == 1

    metrics.in_device.inc()  # a scrape right after a change waits for a render that shows it
    text = (await metrics.scrape()).decode()
    assert 'sonet_envelopes_in_total{source="device"} 1.0' in text
    assert len(renders) == 2 and renders[1] - renders[0] >= MIN_RENDER_INTERVAL_S

    async with trio.open_nursery() as nursery:  # a flood spread over time: a render per interval
        for _ in range(20):
            nursery.start_soon(scrape)
            await trio.sleep(MIN_RENDER_INTERVAL_S / 4)
    assert len(renders) - 2 < 20  # fewer renders than scrapes, each an interval after the last
    assert all(b - a >= MIN_RENDER_INTERVAL_S for a, b in zip(renders, renders[1:]))
