"""The audit log on disk (node/audit.py, node/audit_chain.py): appends chain and are signed, and
every kind of tampering is named by verify with the first bad entry's seq and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.node.audit import HEAD_FILE, LOG_FILE, AuditLog, Broken, read_entries, record, verify
from sonet.node.audit_chain import entry_line, make_entry
from sonet.node.identity import create_node_key


@pytest.fixture
def data(tmp_path: Path) -> Path:
    create_node_key(tmp_path)
    return tmp_path


def _key(data: Path) -> SigningKey:
    from sonet.node.identity import load_node_key

    return load_node_key(data)


def _fill(data: Path, n: int = 5) -> None:
    for i in range(1, n + 1):
        assert record(data, "peer_added", peer=f"peer{i}.example") == i


def _lines(data: Path) -> list[bytes]:
    return (data / LOG_FILE).read_bytes().splitlines(keepends=True)


def _broken(data: Path) -> Broken:
    with pytest.raises(Broken) as caught:
        verify(data, _key(data).public)
    return caught.value


def test_entries_chain_and_the_head_is_signed(data: Path) -> None:
    _fill(data, 3)
    entries = read_entries(data)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev == "0" * 64 and entries[1].prev == entries[0].hash and entries[2].prev == entries[1].hash
    assert entries[2].fields == {"peer": "peer3.example"} and entries[2].kind == "peer_added"
    assert entries[0].at.endswith("Z")
    result = verify(data, _key(data).public)
    assert result.count == 3 and result.head is not None and result.head.seq == 3
    head = json.loads((data / HEAD_FILE).read_text())
    assert head["hash"] == entries[2].hash and head["fingerprint"] == _key(data).public.fingerprint
    assert oct((data / LOG_FILE).stat().st_mode & 0o777) == "0o600"


def test_an_empty_data_dir_verifies_with_no_entries(data: Path) -> None:
    assert verify(data, _key(data).public).count == 0


def test_a_batch_is_one_append_and_one_head(data: Path) -> None:
    log = AuditLog(data, _key(data))
    assert log.append([("config", {"digest": "ab"}), ("peer_removed", {"peer": "x.example"})]) == 2
    assert log.append([]) == 0
    assert verify(data, _key(data).public).count == 2


def test_every_single_byte_edit_is_caught(data: Path) -> None:
    _fill(data, 3)
    original = (data / LOG_FILE).read_bytes()
    for i in range(len(original)):
        (data / LOG_FILE).write_bytes(original[:i] + bytes([original[i] ^ 0x01]) + original[i + 1 :])
        broken = _broken(data)
        line = original[:i].count(b"\n") + 1
        assert broken.line is not None and broken.line <= line, (i, broken)
        assert broken.what in {"edited", "truncated", "removed", "reordered"}, (i, broken)


def test_an_edit_names_the_entry(data: Path) -> None:
    _fill(data)
    lines = _lines(data)
    lines[2] = lines[2].replace(b"peer3.example", b"peer9.example")
    (data / LOG_FILE).write_bytes(b"".join(lines))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("edited", 3, 3)
    assert "line 3 (seq 3)" in str(broken) and "edited" in str(broken)


def test_an_edit_with_its_hash_recomputed_is_caught_by_the_next_link(data: Path) -> None:
    _fill(data)
    entries = read_entries(data)
    forged = make_entry(3, entries[2].at, "peer_added", {"peer": "evil.example"}, entries[2].prev)
    lines = _lines(data)
    lines[2] = entry_line(forged)
    (data / LOG_FILE).write_bytes(b"".join(lines))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("edited", 3, 3)
    assert "rewritten" in str(broken)


def test_the_whole_chain_rewritten_without_the_key_fails_at_the_signed_head(data: Path) -> None:
    _fill(data, 2)
    first = make_entry(1, "2026-01-01T00:00:00.000Z", "peer_added", {"peer": "evil.example"}, "0" * 64)
    second = make_entry(2, "2026-01-01T00:00:00.000Z", "peer_added", {"peer": "evil2.example"}, first.hash)
    (data / LOG_FILE).write_bytes(entry_line(first) + entry_line(second))
    broken = _broken(data)
    assert (broken.what, broken.seq) == ("edited", 2) and "signed" in str(broken)


def test_a_removed_entry_is_named(data: Path) -> None:
    _fill(data)
    lines = _lines(data)
    del lines[1]
    (data / LOG_FILE).write_bytes(b"".join(lines))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("removed", 2, 2)
    assert "seq 2 missing before line 2" in str(broken)


def test_the_first_entries_removed_are_named(data: Path) -> None:
    _fill(data)
    (data / LOG_FILE).write_bytes(b"".join(_lines(data)[2:]))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("removed", 1, 1) and "seq 1 to 2" in str(broken)


def test_swapped_entries_are_reordered(data: Path) -> None:
    _fill(data)
    lines = _lines(data)
    lines[1], lines[3] = lines[3], lines[1]
    (data / LOG_FILE).write_bytes(b"".join(lines))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("reordered", 4, 2)


def test_a_repeated_entry_is_reordered(data: Path) -> None:
    _fill(data)
    lines = _lines(data)
    lines.insert(3, lines[1])
    (data / LOG_FILE).write_bytes(b"".join(lines))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("reordered", 2, 4)


def test_truncation_before_the_signed_head_is_named(data: Path) -> None:
    _fill(data)
    (data / LOG_FILE).write_bytes(b"".join(_lines(data)[:3]))
    broken = _broken(data)
    assert (broken.what, broken.seq) == ("truncated", 4) and "covers seq 1 to 5 but the log ends at seq 3" in str(broken)
    (data / LOG_FILE).unlink()
    assert _broken(data).what == "truncated"


def test_a_cut_last_line_is_named(data: Path) -> None:
    _fill(data, 2)
    raw = (data / LOG_FILE).read_bytes()
    (data / LOG_FILE).write_bytes(raw[:-10])
    broken = _broken(data)
    assert broken.what == "truncated" and broken.line == 2


def test_an_appended_forgery_without_the_key_is_named(data: Path) -> None:
    _fill(data, 2)
    last = read_entries(data)[-1]
    forged = make_entry(3, last.at, "peer_added", {"peer": "evil.example"}, last.hash)
    with open(data / LOG_FILE, "ab") as f:
        f.write(entry_line(forged))
    broken = _broken(data)
    assert (broken.what, broken.seq, broken.line) == ("appended", 3, 3)


def test_head_tampering_is_named(data: Path) -> None:
    _fill(data, 2)
    head = json.loads((data / HEAD_FILE).read_text())
    for field, value in (("seq", 1), ("hash", "00" * 32), ("signed_at", "2020-01-01T00:00:00.000Z"), ("signature", "00" * 10)):
        (data / HEAD_FILE).write_text(json.dumps({**head, field: value}))
        assert _broken(data).what == "head signature invalid", field
    (data / HEAD_FILE).write_text("not json")
    assert _broken(data).what == "head signature invalid"
    (data / HEAD_FILE).unlink()
    assert _broken(data).what == "head missing"


def test_a_head_signed_by_another_key_is_refused(data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    _fill(data, 1)
    other = tmp_path_factory.mktemp("other")
    create_node_key(other)
    with pytest.raises(Broken) as caught:
        verify(data, _key(other).public)
    assert caught.value.what == "head signature invalid" and "not signed by this node's key" in str(caught.value)


def test_a_torn_last_write_does_not_stop_the_next_append(data: Path) -> None:
    _fill(data, 2)
    with open(data / LOG_FILE, "ab") as f:
        f.write(b'{"seq":3,"at"')
    # the cut line (no signed head covers it) is dropped and recorded: the chain verifies again
    assert record(data, "peer_added", peer="after.example") == 4
    assert [e.kind for e in read_entries(data)][2:] == ["audit_torn_tail", "peer_added"]
    assert verify(data, _key(data).public).count == 4


def test_fields_that_cannot_round_trip_are_refused(data: Path) -> None:
    with pytest.raises(ValueError, match="without floats"):
        record(data, "x", ratio=0.5)
    with pytest.raises(ValueError, match="larger than"):
        record(data, "x", blob="a" * 9000)
    assert not (data / HEAD_FILE).exists()


def test_several_processes_append_to_one_chain(data: Path) -> None:
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # a writer process of its own: the lock keeps the chain whole
            try:
                for i in range(20):
                    record(data, "peer_added", peer=f"w{worker}-{i}.example")
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert verify(data, _key(data).public).count == 60
