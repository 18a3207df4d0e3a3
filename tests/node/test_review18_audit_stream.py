"""Review of the audit stream (node/audit_stream.py): its counts are only touched on the trio
thread, and no event can make a batch unwritable or the writer raise into the node."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from sonet.core.crypto import CryptoMode
from sonet.node.audit import AuditLog, read_entries, verify
from sonet.node.audit_stream import AuditStream
from sonet.node.identity import create_node_key


class ThreadClock:
    """A clock that notes every thread it is read on (``take`` reads it)."""

    def __init__(self) -> None:
        self.ms = 1_000_000
        self.threads: set[threading.Thread] = set()

    def __call__(self) -> int:
        self.threads.add(threading.current_thread())
        return self.ms


async def test_events_are_taken_on_the_thread_that_hears_them(tmp_path: Path) -> None:
    # hear() runs on the trio thread with no lock: take() must too, only the file I/O may move
    key = create_node_key(tmp_path, CryptoMode.HYBRID)
    clock = ThreadClock()
    stream = AuditStream(AuditLog(tmp_path, key), clock_ms=clock, interval_s=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        for n in range(5):
            stream.hear("handshake_refused", {"address": f"192.0.2.{n}", "code": "bad_input"})
            await trio.sleep(0.02)
        while len(read_entries(tmp_path)) < 5:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert clock.threads == {threading.main_thread()}
    assert verify(tmp_path, key.public).count == 5


def test_text_utf8_cannot_carry_is_replaced_not_fatal(tmp_path: Path) -> None:
    key = create_node_key(tmp_path, CryptoMode.HYBRID)
    stream = AuditStream(AuditLog(tmp_path, key), clock_ms=lambda: 1_000_000)
    stream.hear("handshake_refused", {"address": "192.0.2.1\udc80", "code": "bad_input"})
    stream.hear("handshake_refused", {"address": "192.0.2.2", "code": "bad_input"})
    stream.write()
    first, second = read_entries(tmp_path)
    assert first.fields["address"] == "192.0.2.1?" and second.fields["address"] == "192.0.2.2"
    assert verify(tmp_path, key.public).count == 2


def test_an_entry_that_cannot_be_logged_is_logged_as_an_error_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = create_node_key(tmp_path, CryptoMode.HYBRID)
    stream = AuditStream(AuditLog(tmp_path, key), clock_ms=lambda: 1_000_000)
    stream.note("node_started", listen=["x" * 9000])  # larger than an entry may be
    stream.write()  # does not raise into the node
    assert "cannot write 1 audit entries" in caplog.text
    stream.note("node_stopped", pid=1)
    stream.write()
    assert [e.kind for e in read_entries(tmp_path)] == ["node_stopped"]


def test_any_failure_of_the_writer_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    key = create_node_key(tmp_path, CryptoMode.HYBRID)
    log = AuditLog(tmp_path, key)
    stream = AuditStream(log, clock_ms=lambda: 1_000_000)

    def broken(records: object) -> int:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(log, "append", broken)
    stream.note("node_started", pid=1)
    stream.write()  # does not raise into the node
    assert "cannot write 1 audit entries" in caplog.text and "a bug in the writer" in caplog.text
