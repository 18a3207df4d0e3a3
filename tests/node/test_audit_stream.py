"""A running node's security events in its audit log (node/audit_stream.py): counted per
actor per interval, the stream itself capped (what is dropped is counted), the node's start
with its config digest and its stop, and a refused handshake of a real node recorded."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from sonet.core import limits
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.ratelimit import Rate
from sonet.node.app import Node
from sonet.node.audit import AuditLog, read_entries, verify
from sonet.node.audit_stream import AuditStream
from sonet.node.config import CONFIG_FILE, NodeConfig
from sonet.node.identity import create_node_key
from sonet.transport import events

from .conftest import HANG_S


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def _stream(tmp_path: Path, **kw: object) -> tuple[AuditStream, SigningKey, Clock]:
    key = create_node_key(tmp_path, CryptoMode.HYBRID)
    clock = Clock()
    return AuditStream(AuditLog(tmp_path, key), clock_ms=clock, **kw), key, clock  # type: ignore[arg-type]


def test_identical_events_are_one_entry_with_a_count(tmp_path: Path) -> None:
    stream, key, _ = _stream(tmp_path)
    for _ in range(1000):
        stream.hear("rate_limited", {"actor": "alice@alpha.example", "limit": "device_requests"})
    stream.hear("rate_limited", {"actor": "bob@alpha.example", "limit": "device_requests"})
    stream.write()
    entries = read_entries(tmp_path)
    assert [(e.kind, e.fields) for e in entries] == [
        ("rate_limited", {"actor": "alice@alpha.example", "limit": "device_requests", "count": 1000}),
        ("rate_limited", {"actor": "bob@alpha.example", "limit": "device_requests", "count": 1}),
    ]
    stream.write()  # nothing heard since: nothing written
    assert verify(tmp_path, key.public).count == 2


def test_a_flood_from_many_addresses_is_capped_and_the_drop_counted(tmp_path: Path) -> None:
    stream, key, _ = _stream(tmp_path, max_keys=10)
    for i in range(10_000):
        stream.hear("handshake_refused", {"address": f"10.0.{i // 256}.{i % 256}", "code": "malformed"})
    stream.write()
    entries = read_entries(tmp_path)
    assert len(entries) == 11
    assert all(e.kind == "handshake_refused" and e.fields["count"] == 1 for e in entries[:10])
    assert (entries[10].kind, entries[10].fields) == ("audit_dropped", {"events": 9990, "by_kind": {"handshake_refused": 9990}})


def test_the_entry_rate_holds_across_intervals(tmp_path: Path) -> None:
    stream, key, clock = _stream(tmp_path, rate=Rate(per_second=0.1, burst=3))
    for interval in range(3):
        for i in range(5):
            stream.hear("rate_limited", {"peer": f"p{i}.example", "limit": "peer_requests"})
        stream.write()
        clock.ms += 10_000  # one token back
    kinds = [e.kind for e in read_entries(tmp_path)]
    # 3 from the burst, then 1 per interval; every interval says how many were dropped
    assert kinds == ["rate_limited"] * 3 + ["audit_dropped"] + ["rate_limited", "audit_dropped"] * 2
    dropped = [e.fields["events"] for e in read_entries(tmp_path) if e.kind == "audit_dropped"]
    assert dropped == [2, 4, 4]


def test_fields_from_the_network_are_cut_and_made_text(tmp_path: Path) -> None:
    stream, key, _ = _stream(tmp_path)
    stream.hear("wrong_identity", {"peer": "x" * 5000, "weird": object(), "n": 3, "none": None})
    stream.note("node_started", name="alpha.example")
    stream.write()
    started, wrong = read_entries(tmp_path)
    assert started.kind == "node_started"  # the node's own entries first, never capped
    assert len(wrong.fields["peer"]) == 200 and isinstance(wrong.fields["weird"], str)
    assert wrong.fields["n"] == 3 and wrong.fields["none"] is None


def test_a_write_that_fails_is_logged_not_raised(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    stream, key, _ = _stream(tmp_path)
    (tmp_path / "audit.log").mkdir()  # cannot be opened as a file
    stream.note("node_started")
    stream.write()
    assert "cannot write 1 audit entries" in caplog.text


async def test_a_running_node_records_its_start_refused_handshakes_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "alpha"
    data.mkdir()
    key = create_node_key(data, CryptoMode.HYBRID)
    config = NodeConfig(name="alpha.example", listen="127.0.0.1:0")
    (data / CONFIG_FILE).write_text(config.to_toml())
    node = Node(data, config)
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(node.run)
            for size in (5, 50, 500):
                async with open_websocket_url(url + "/client", max_message_size=limits.MAX_RECORD_BYTES) as ws:
                    await ws.send_message(random.Random(size).randbytes(size))
                    try:
                        while True:
                            await ws.get_message()
                    except ConnectionClosed:
                        pass
            assert not events.listening()  # the node's subscription is its tasks', not this test's
            nursery.cancel_scope.cancel()
    entries = read_entries(data)
    kinds = [e.kind for e in entries]
    assert kinds[0] == "node_started" and kinds[-1] == "node_stopped", kinds
    started = entries[0].fields
    assert started["config_sha256"] == hashlib.sha256((data / CONFIG_FILE).read_bytes()).hexdigest()
    assert started["listen"] == ["127.0.0.1:0"] and started["fingerprint"] == key.public.fingerprint
    refused = [e.fields for e in entries if e.kind == "handshake_refused"]
    assert sum(f["count"] for f in refused) == 3 and {f["address"] for f in refused} == {"127.0.0.1"}
    assert verify(data, key.public).count == len(entries)
