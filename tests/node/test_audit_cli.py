"""sonet-node audit show|verify: the entries, and tampering named in one line with exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonet.node.audit import HEAD_FILE, LOG_FILE, record

from .cli_kit import error_line, init, json_error, json_lines, ok, run


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return init(capsys, tmp_path / "node")


def _fill(data: Path, n: int) -> None:
    for i in range(1, n + 1):
        record(data, "peer_added", peer=f"peer{i}.example", fingerprint=f"fp{i}")


def test_show_lists_entries_oldest_first_with_since_and_limit(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = [e["seq"] for e in json_lines(run(capsys, "audit", "show", "--data", data, "--json"))]
    _fill(data, 4)
    entries = json_lines(run(capsys, "audit", "show", "--data", data, "--json"))
    mine = [e for e in entries if e["kind"] == "peer_added"]
    assert [e["fields"]["peer"] for e in mine] == ["peer1.example", "peer2.example", "peer3.example", "peer4.example"]
    assert set(mine[0]) == {"seq", "at", "kind", "fields", "hash"} and mine[0]["at"].endswith("Z")
    last = entries[-1]["seq"]
    assert [e["seq"] for e in json_lines(run(capsys, "audit", "show", "--data", data, "--json", "--since", last - 3, "--limit", 2))] == [last - 2, last - 1]
    assert [e["seq"] for e in json_lines(run(capsys, "audit", "show", "--data", data, "--json", "--limit", 1))] == [last]
    assert json_lines(run(capsys, "audit", "show", "--data", data, "--json", "--since", last)) == []
    text = ok(run(capsys, "audit", "show", "--data", data, "--since", last - 1)).out
    assert text.startswith(f"{last} ") and "peer_added peer=peer4.example fingerprint=fp4" in text
    assert "no audit entries after seq" in ok(run(capsys, "audit", "show", "--data", data, "--since", last)).out
    assert before == [e["seq"] for e in entries[: len(before)]]


def test_show_makes_network_text_safe_for_a_terminal(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(data, "peer_added", peer="evil\x1b]0;title\x07.example")
    out = ok(run(capsys, "audit", "show", "--data", data, "--limit", 1)).out
    assert "\x1b" not in out and "\x07" not in out


def test_verify_ok_counts_entries(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(data, 3)
    [result] = json_lines(run(capsys, "audit", "verify", "--data", data, "--json"))
    assert result["ok"] is True and result["entries"] == result["head_seq"] >= 3
    assert result["signed_at"].endswith("Z") and len(result["fingerprint"]) > 10
    assert ok(run(capsys, "audit", "verify", "--data", data)).out.startswith(f"ok: {result['entries']} entries, chain intact")


def test_verify_names_an_edited_entry_and_exits_1(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(data, 3)
    log = data / LOG_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines, 1) if b"peer2.example" in line)
    log.write_bytes(log.read_bytes().replace(b"peer2.example", b"peer2.examplf"))
    error_line(run(capsys, "audit", "verify", "--data", data), f"line {n} (seq {n})", "edited", str(log))
    error = json_error(run(capsys, "audit", "verify", "--data", data, "--json"), f"line {n} (seq {n})", "edited")
    assert error["code"] == "audit_tampered"


def test_verify_names_a_removed_entry_and_a_bad_head(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(data, 3)
    log = data / LOG_FILE
    good = log.read_bytes()
    lines = good.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:1] + lines[2:]))
    error_line(run(capsys, "audit", "verify", "--data", data), "seq 2 missing before line 2", "removed")
    log.write_bytes(good)
    head = data / HEAD_FILE
    head.write_bytes(head.read_bytes().replace(b'"seq":', b'"seq":1'))
    error_line(run(capsys, "audit", "verify", "--data", data), "audit.head")


def test_usage_and_data_dir_errors_are_one_line(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error_line(run(capsys, "audit", "show", "--data", data, "--limit", 0), "--limit", code=2)
    error_line(run(capsys, "audit", "show", "--data", data, "--since", "x"), "--since", code=2)
    error_line(run(capsys, "audit", "verify", "--data", tmp_path / "nowhere"), "does not exist")
    (tmp_path / "empty").mkdir()
    error_line(run(capsys, "audit", "verify", "--data", tmp_path / "empty"), "node.key")


def test_operator_actions_are_recorded_without_secrets(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [invite] = json_lines(run(capsys, "invite", "--data", data, "--json"))
    fingerprint = ok(run(capsys, "fingerprint", "--data", data)).out.strip()
    ok(run(capsys, "peer", "add", "--data", data, "--name", "beta.example", "--url", "ws://127.0.0.1:9", "--fingerprint", fingerprint))
    ok(run(capsys, "peer", "remove", "--data", data, "--name", "beta.example"))
    entries = json_lines(run(capsys, "audit", "show", "--data", data, "--json"))
    kinds = [e["kind"] for e in entries]
    assert kinds[-3:] == ["invite_created", "peer_added", "peer_removed"]
    created, added, removed = entries[-3:]
    secret = invite["token"].split(".", 1)[1]
    assert set(created["fields"]) == {"hash_prefix", "expires_at"} and len(created["fields"]["hash_prefix"]) == 12
    assert created["fields"]["expires_at"] == invite["expires_at"]
    assert (added["fields"]["peer"], added["fields"]["url"]) == ("beta.example", "ws://127.0.0.1:9")
    assert removed["fields"] == {"peer": "beta.example"}
    raw = (data / LOG_FILE).read_text()
    assert secret not in raw and invite["token"] not in raw
    assert json_lines(run(capsys, "audit", "verify", "--data", data, "--json"))[0]["entries"] == len(entries)


def test_a_refused_operator_action_records_nothing(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (data / LOG_FILE).read_bytes() if (data / LOG_FILE).exists() else b""
    error_line(run(capsys, "peer", "remove", "--data", data, "--name", "nobody.example"), "no peer named")
    error_line(run(capsys, "invite", "--data", data, "--expires-days", 0), "--expires-days", code=2)
    after = (data / LOG_FILE).read_bytes() if (data / LOG_FILE).exists() else b""
    assert after == before
