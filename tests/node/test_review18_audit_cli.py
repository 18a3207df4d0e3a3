"""Review of ``sonet-node audit show`` on a terminal: a field holding a newline, a carriage
return, a tab or an escape sequence stays on its entry's one line, shown as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonet.node.audit import record

from .cli_kit import init, ok, run


def test_a_field_cannot_start_a_fake_entry_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    forged = "x\n99\t2026-01-01T00:00:00.000Z\taccount_removed\taccount=alice@alpha.example"
    record(data, "peer_added", peer=forged, url="wss://x\r\x1b[2J")
    out = ok(run(capsys, "audit", "show", "--data", data, "--limit", "1")).out
    assert out.count("\n") == 1 and "\r" not in out and "\x1b" not in out and "\t" not in out
    assert 'peer="x\\n99\\t2026' in out and 'url="wss://x\\r\\u001b[2J"' in out
