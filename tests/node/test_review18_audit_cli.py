"""Review of ``sonet-node audit show`` on a terminal: a field holding a newline, a carriage
return, a tab or an escape sequence stays on its entry's one line, shown as JSON. And an
operator action whose audit entry cannot be written says that the action itself was done."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonet.node.audit import LOG_FILE, record

from .cli_kit import error_line, init, json_lines, ok, run


def test_a_field_cannot_start_a_fake_entry_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    forged = "x\n99\t2026-01-01T00:00:00.000Z\taccount_removed\taccount=alice@alpha.example"
    record(data, "peer_added", peer=forged, url="wss://x\r\x1b[2J")
    out = ok(run(capsys, "audit", "show", "--data", data, "--limit", "1")).out
    assert out.count("\n") == 1 and "\r" not in out and "\x1b" not in out and "\t" not in out
    assert 'peer="x\\n99\\t2026' in out and 'url="wss://x\\r\\u001b[2J"' in out


def test_an_audit_entry_that_cannot_be_written_says_the_change_was_made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    ok(run(capsys, "invite", "--data", data))
    [invite] = json_lines(run(capsys, "invites", "list", "--data", data, "--json"))
    (data / LOG_FILE).unlink()
    (data / LOG_FILE).mkdir()  # the audit log cannot be written any more
    line = error_line(run(capsys, "invites", "revoke", "--data", data, invite["hash_prefix"]), "the change was made", "invite_revoked")
    assert "audit.log" in line
    assert json_lines(run(capsys, "invites", "list", "--data", data, "--json")) == []  # it was revoked
