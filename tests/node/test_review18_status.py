"""Review of ``sonet-node status`` in text: a peer's last error (its own words, from an
ErrorFrame it answered a push with) cannot drive the operator's terminal or add lines."""

from __future__ import annotations

from sonet.node.cli import _federation_lines


def test_a_peers_error_message_is_one_safe_line() -> None:
    federation = {
        "outbox": 1,
        "peers": [
            {
                "name": "beta.example",
                "route": ["beta.example"],
                "link": "backing off",
                "queued": 1,
                "last_error": {"message": "beta.example did not take the items: no\n  gamma.example: route ok\x1b]0;owned\x07\x1b[2J", "code": "rate\u2028limited\x9b"},
            }
        ],
    }
    lines = _federation_lines(federation)
    assert len(lines) == 2
    line = lines[1]
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line and "\x9b" not in line and "\u2028" not in line
    assert "last error: beta.example did not take the items: no gamma.example: route ok" in line
