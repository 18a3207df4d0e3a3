"""Review of the audit log after a crash mid-append (node/audit.py): the cut line is dropped by
the next append and recorded (bytes, SHA-256), so verify passes again instead of naming the
crash as an edit forever; a cut inside what the head signed is kept and still named. And a
line of any size in an edited log is named without being read into memory."""

from __future__ import annotations

import hashlib
import os
import signal
import tracemalloc
from pathlib import Path

import pytest

from sonet.node.audit import HEAD_FILE, LOG_FILE, AuditLog, read_entries, record, verify
from sonet.node.audit_chain import Broken
from sonet.node.identity import create_node_key, load_node_key


@pytest.fixture
def data(tmp_path: Path) -> Path:
    create_node_key(tmp_path)
    return tmp_path


def _verify(data: Path) -> int:
    return verify(data, load_node_key(data).public).count


def test_a_line_cut_by_a_crash_is_dropped_and_recorded_by_the_next_append(data: Path) -> None:
    for i in range(2):
        record(data, "peer_added", peer=f"peer{i}.example")
    torn = b'{"seq":3,"at":"2026-'
    with open(data / LOG_FILE, "ab") as f:
        f.write(torn)
    with pytest.raises(Broken) as caught:  # before the next append: named as cut
        verify(data, load_node_key(data).public)
    assert caught.value.what == "truncated"
    assert record(data, "peer_added", peer="after.example") == 4
    assert _verify(data) == 4
    entries = read_entries(data)
    assert [e.kind for e in entries] == ["peer_added", "peer_added", "audit_torn_tail", "peer_added"]
    assert entries[2].fields == {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()}


def test_a_writer_killed_mid_write_leaves_a_log_the_next_one_continues(data: Path) -> None:
    record(data, "node_started", pid=1)
    pid = os.fork()
    if pid == 0:  # a writer killed after writing part of its batch, before its head
        try:
            log = AuditLog(data, load_node_key(data))
            with open(data / LOG_FILE, "ab") as f:
                f.write(b'{"seq":2,"at":"2026-12-06T00:00:00.000Z","kind":"peer_')
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            log.append([("never", {})])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    record(data, "node_started", pid=2)
    assert _verify(data) == 3
    assert [e.kind for e in read_entries(data)] == ["node_started", "audit_torn_tail", "node_started"]


def test_a_first_write_cut_short_does_not_stop_the_log(data: Path) -> None:
    (data / LOG_FILE).write_bytes(b'{"seq":1,"at"')
    assert record(data, "node_started", pid=1) == 2
    assert [e.kind for e in read_entries(data)] == ["audit_torn_tail", "node_started"]
    assert _verify(data) == 2


def test_a_cut_inside_what_the_head_signed_is_kept_and_named(data: Path) -> None:
    for i in range(3):
        record(data, "peer_added", peer=f"peer{i}.example")
    log = (data / LOG_FILE).read_bytes()
    (data / LOG_FILE).write_bytes(log[:-20])  # the signed seq 3, cut
    record(data, "peer_added", peer="after.example")
    assert b"audit_torn_tail" not in (data / LOG_FILE).read_bytes()
    with pytest.raises(Broken) as caught:
        verify(data, load_node_key(data).public)
    assert (caught.value.what, caught.value.line) == ("edited", 3)


def test_a_whole_last_entry_without_its_newline_is_kept(data: Path) -> None:
    record(data, "peer_added", peer="one.example")
    (data / LOG_FILE).write_bytes((data / LOG_FILE).read_bytes()[:-1])
    assert record(data, "peer_added", peer="two.example") == 2
    assert _verify(data) == 2
    assert [e.kind for e in read_entries(data)] == ["peer_added", "peer_added"]  # nothing cut, nothing recorded


def test_a_huge_line_is_named_without_being_read_into_memory(data: Path) -> None:
    for i in range(2):
        record(data, "peer_added", peer=f"peer{i}.example")
    log = (data / LOG_FILE).read_bytes()
    first, second = log.splitlines(keepends=True)
    with open(data / LOG_FILE, "wb") as f:  # a line of 64 MiB between the two entries
        f.write(first)
        for _ in range(64):
            f.write(b"x" * (1 << 20))
        f.write(b"\n" + second)
    tracemalloc.start()
    try:
        with pytest.raises(Broken) as caught:
            verify(data, load_node_key(data).public)
        entries = read_entries(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (caught.value.what, caught.value.line) == ("edited", 2)
    assert [e.fields["peer"] for e in entries] == ["peer0.example", "peer1.example"]
    assert peak < 16 << 20  # never the whole line at once


def test_a_huge_head_file_is_refused_without_being_read_whole(data: Path) -> None:
    record(data, "peer_added", peer="one.example")
    with open(data / HEAD_FILE, "ab") as f:
        f.write(b"x" * (64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(Broken) as caught:
            verify(data, load_node_key(data).public)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.what == "head signature invalid"
    assert peak < 16 << 20


def test_deeply_nested_json_in_the_log_or_head_is_named_not_a_crash(data: Path) -> None:
    record(data, "peer_added", peer="one.example")
    with open(data / LOG_FILE, "ab") as f:
        f.write(b"[" * 8000 + b"\n")
    with pytest.raises(Broken) as caught:
        verify(data, load_node_key(data).public)
    assert (caught.value.what, caught.value.line) == ("edited", 2)
    assert [e.kind for e in read_entries(data)] == ["peer_added"]
    # the writer finds the last entry before it without tripping on it either
    with open(data / LOG_FILE, "ab") as f:
        f.write(b"[" * 8000)
    record(data, "peer_added", peer="two.example")
    (data / HEAD_FILE).write_bytes(b"[" * 60000)
    with pytest.raises(Broken) as caught:
        verify(data, load_node_key(data).public)
    assert caught.value.what in ("edited", "head signature invalid")
